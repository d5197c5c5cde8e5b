package host

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// The lifecycle machines (docs/ARCHITECTURE.md, "Lifecycle mapping").
//
// A VM's worker runs every event of the VM's QMP stream through one
// lifecycle machine: qmpLifecycle (lifecycle_qmp.go) for a QEMU followed
// over a QMP socket of its own, libvirtLifecycle (lifecycle_libvirt.go) for
// a libvirt domain, whose stream carries libvirt's lifecycle events too. A
// machine is a pure value: an event and the answers to the few QMP queries
// the event alone does not settle go in, the hvmon events to report come
// out (a transition). It opens no socket, signs nothing and starts no
// goroutine. The worker (vm.onEvent) does what a transition asks and turns
// each hvmon event into a report (report.go). lifecycle_test.go runs the
// recorded event sequences of testdata/lifecycle through both machines.

// lifecycle is a lifecycle machine: what the worker knows of the VM
// between events.
type lifecycle interface {
	// step takes in e, which happened at at, and asks q what e alone does
	// not say.
	step(ctx context.Context, q lifecycleQueries, e qmp.Event, at time.Time) transition
	// facts are the observations the machine remembers for every later
	// report of the VM: the last migration, the SEV launch values, the
	// libvirt domain's facts. The caller must not change them.
	facts() map[string]string
	// agentSocket is the path of the agent's unix socket as the machine
	// knows it (the configured one, or the one libvirt's domain XML
	// names); empty for a VM without an agent.
	agentSocket() string
	// periodicDue says whether the guest runs with its agent up (or has
	// no agent) and is not migrating out, so that a periodic report is
	// worth making.
	periodicDue() bool
}

// newLifecycle returns the lifecycle machine for a VM of cfg's source.
func newLifecycle(cfg VMConfig) lifecycle {
	if cfg.Source == SourceLibvirt {
		return newLibvirtLifecycle(cfg.Agent, cfg.AgentPortID)
	}
	return newQMPLifecycle(cfg.Agent, cfg.AgentPortID)
}

// transition is what a lifecycle machine makes of one event.
type transition struct {
	// events are the hvmon events the event gave, in order: one report
	// each.
	events []lifecycleEvent
	// state is the VM's run state as the event shows it ("running",
	// "paused", "shutoff", ...); empty when the event does not tell.
	state string
	// closeAgent says that the agent connection belongs to a QEMU instance
	// that is gone, or to another socket: the next request dials anew.
	closeAgent bool
	// note, when set, is what the machine saw that no report says, for
	// the worker's log.
	note *note
}

// then is t followed by u: both transitions' events in order, the later
// state and note when u has them, and the agent closed when either says so.
func (t transition) then(u transition) transition {
	t.events = append(t.events, u.events...)
	if u.state != "" {
		t.state = u.state
	}
	t.closeAgent = t.closeAgent || u.closeAgent
	if u.note != nil {
		t.note = u.note
	}
	return t
}

// lifecycleEvent is an hvmon event a lifecycle machine found: one report
// to make.
type lifecycleEvent struct {
	event attest.Event
	at    time.Time         // when it happened (QEMU's timestamp, or the host's clock)
	facts map[string]string // the event's own facts
	// noAgent, when set, says why the agent is not asked: the guest is
	// gone or cannot run. The report's agent status is "none".
	noAgent string
}

// note is a line for the worker's log.
type note struct {
	level hclog.Level
	msg   string
	args  []any
}

// emit is the transition that reports one hvmon event.
func emit(event attest.Event, at time.Time, facts map[string]string) transition {
	return transition{events: []lifecycleEvent{{event: event, at: at, facts: facts}}}
}

// lifecycleQueries are the QMP queries a lifecycle machine asks while it
// takes in an event. The worker answers them over its QMP client
// (clientQueries); the table tests answer them from recorded replies. An
// error is an answer too: the machine goes on without what it asked for.
type lifecycleQueries interface {
	QueryStatus(context.Context) (qmp.Status, error)
	QueryChardev(context.Context) ([]qmp.ChardevInfo, error)
	QuerySEV(context.Context) (qmp.SEVInfo, error)
	QuerySEVLaunchMeasure(context.Context) (string, error)
	QueryMigrate(context.Context) (qmp.MigrationInfo, error)
	QueryJobs(context.Context) ([]qmp.JobInfo, error)
	// LibvirtSnapshots lists the libvirt domain's snapshots created at
	// since or later (CommandLibvirtSnapshots, filtered by
	// snapshotsSince). libvirt lists a snapshot only once the guest has
	// resumed, so over libvirt an empty list is asked for again, for up
	// to 2 s.
	LibvirtSnapshots(ctx context.Context, since time.Time) ([]libvirtSnapshot, error)
}

// libvirtSnapshot is one entry of the answer to CommandLibvirtSnapshots.
type libvirtSnapshot struct {
	Name         string `json:"name"`
	CreationTime int64  `json:"creation_time"` // Unix seconds
}

// snapshotsSince returns the snapshots of list created at since or later,
// in list's order.
func snapshotsSince(list []libvirtSnapshot, since time.Time) []libvirtSnapshot {
	var out []libvirtSnapshot
	for _, s := range list {
		if s.CreationTime >= since.Unix() {
			out = append(out, s)
		}
	}
	return out
}

// eventTime is when e happened: QEMU's timestamp (or the libvirt
// transport's), else now, for the QMP client's own events.
func eventTime(e qmp.Event, now time.Time) time.Time {
	if e.Timestamp.Seconds > 0 {
		return time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000)
	}
	return now
}

// dataString is e's datum key when it is a string, else "".
func dataString(e qmp.Event, key string) string {
	s, _ := e.Data[key].(string)
	return s
}

// portOpened says whether e is a VSERPORT_CHANGE by which the guest opens
// the virtserialport with QEMU device id port.
func portOpened(e qmp.Event, port string) bool {
	open, _ := e.Data["open"].(bool)
	return e.Event == "VSERPORT_CHANGE" && open && dataString(e, "id") == port
}

// chardevOpen says whether query-chardev shows the guest side of the
// agent's port open: the frontend of the chardev on the agent's socket.
func chardevOpen(cds []qmp.ChardevInfo, agent string) bool {
	for _, cd := range cds {
		if cd.FrontendOpen && strings.Contains(cd.Filename, agent) {
			return true
		}
	}
	return false
}

// migrationStarts says whether a MIGRATION status is the start of a
// migration.
func migrationStarts(status string) bool { return status == "setup" || status == "active" }

// rememberMigrationEnd records in facts how an outgoing migration ended:
// for "completed", its total time and downtime (query-migrate); for
// "failed" or "cancelled", the status.
func rememberMigrationEnd(ctx context.Context, q lifecycleQueries, facts map[string]string, status string) {
	if status != "completed" {
		facts["last_migration_status"] = status
		return
	}
	if mi, err := q.QueryMigrate(ctx); err == nil {
		facts["last_migration_total_ms"] = strconv.FormatInt(mi.TotalTime, 10)
		facts["last_migration_downtime_ms"] = strconv.FormatInt(mi.Downtime, 10)
	}
}
