package host

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// Synthetic events a libvirt transport (package host/libvirt) puts into
// the QMP event stream of a domain, beside the QEMU monitor events libvirt
// forwards. Keeping them in one stream keeps their order.
const (
	// EventLibvirtLifecycle is a libvirt domain lifecycle event:
	// Data["event"] and Data["detail"] are libvirt's names in lower case
	// ("started"/"booted", "stopped"/"saved", ...).
	EventLibvirtLifecycle = "HVMON_LIBVIRT_LIFECYCLE"
	// CommandLibvirtSnapshots is a command the libvirt transport answers
	// itself (QEMU never sees it): the domain's snapshots as a list of
	// {"name", "creation_time"} (Unix seconds).
	CommandLibvirtSnapshots = "x-hvmon-libvirt-snapshots"
	// EventLibvirtDomain describes the domain's current QEMU instance: sent
	// on every (re)connection once the events queued before it are
	// delivered (it tells what happened since, unobserved), and before
	// every "started" lifecycle event. Data: "id" (libvirt domain id, a number; -1 when shut off),
	// "state" (libvirt state name), "agent_path" and "agent_alias" (the
	// agent channel's unix socket and its device alias), and "facts" (a
	// map of observations: domain XML digest, launch security, ...).
	EventLibvirtDomain = "HVMON_LIBVIRT_DOMAIN"
)

// SourceLibvirt marks a VMConfig whose QMP stream comes from libvirt.
const SourceLibvirt = "libvirt"

// libvirtLifecycle is the lifecycle machine of a libvirt domain. libvirt's
// lifecycle events classify what happened (a save, a restore, a snapshot
// revert) where QEMU's own events are ambiguous: a save, an internal
// snapshot and a live migration all start as MIGRATION events. The mapping
// (docs/ARCHITECTURE.md, "Lifecycle mapping (libvirt, as implemented)"):
//
//	boot         started/booted, reported when the agent's port opens
//	migrate-out  MIGRATION setup/active while the guest runs
//	migrate-in   started/migrated, reported at resumed
//	snapshot     state saved while paused (savevm) then resumed in the same
//	             QEMU; or stopped/saved (the guest is gone: no evidence)
//	restore      started/restored or started/from_snapshot, reported at
//	             resumed
//	shutdown     stopped/* other than migrated, saved and from_snapshot
//
// Unlike qmpLifecycle, it keeps what it knows across reconnections (a
// libvirtd restart does not restart QEMU): the domain's descriptions tell
// it what changed meanwhile.
type libvirtLifecycle struct {
	agent      string            // the agent channel's socket, from the domain XML (libvirt may pick a new one per start)
	port       string            // the channel's device alias
	remembered map[string]string // the domain's facts, and the last migration's
	inst       libvirtInstance
	// deferred is a description of a new QEMU instance, paused with its
	// agent closed, that arrived while the old one was still followed:
	// the new instance of a snapshot revert, a restore or an incoming
	// start whose libvirt events are still on their way (libvirt delivers
	// them after the job that made them; a description taken meanwhile is
	// ahead of them). The next event decides: the old instance's
	// "stopped" confirms it; anything else means the change happened
	// unobserved, and is reported as such first.
	deferred *deferredChange
}

// deferredChange is a description held back by libvirtLifecycle.deferred;
// when the change proves unobserved it is reported at the time of the
// event that showed it.
type deferredChange struct {
	d map[string]any
}

// libvirtInstance is what the machine knows of the domain's current QEMU
// instance.
type libvirtInstance struct {
	id          int64 // libvirt domain id of the QEMU instance; -1 when none
	running     bool
	booted      bool      // the agent's port opened in this instance
	incoming    bool      // started/migrated, not yet resumed
	restore     string    // "restored" or "from_snapshot" until resumed
	pausedSave  bool      // a state transfer started while paused (savevm or save)
	migrating   bool      // a live migration out is under way
	migratedOut bool      // the live migration out completed
	pausedAt    time.Time // when the guest was last paused
	// stopReported: a stop seen only in a description after reconnecting
	// was reported; libvirt's "stopped" event for it may still come.
	stopReported bool
}

// noInstance is the instance of a domain that runs no QEMU.
func noInstance() libvirtInstance { return libvirtInstance{id: -1} }

func newLibvirtLifecycle(agent, port string) *libvirtLifecycle {
	return &libvirtLifecycle{agent: agent, port: port, remembered: map[string]string{}, inst: noInstance()}
}

func (lc *libvirtLifecycle) facts() map[string]string { return lc.remembered }

func (lc *libvirtLifecycle) agentSocket() string { return lc.agent }

// periodicDue is false while an outgoing migration is under way (see
// qmpLifecycle.periodicDue).
func (lc *libvirtLifecycle) periodicDue() bool {
	in := &lc.inst
	return in.running && (in.booted || lc.agent == "") && !in.migrating && !in.migratedOut && lc.deferred == nil
}

func (lc *libvirtLifecycle) step(ctx context.Context, q lifecycleQueries, e qmp.Event, at time.Time) transition {
	if d := lc.deferred; d != nil {
		lc.deferred = nil
		if !(e.Event == EventLibvirtLifecycle && dataString(e, "event") == "stopped") && e.Event != EventLibvirtDomain {
			// Not the old instance's stop: the change happened while
			// hvmon could not see it.
			first := lc.describeNow(d.d, at)
			return first.then(lc.stepNow(ctx, q, e, at))
		}
	}
	return lc.stepNow(ctx, q, e, at)
}

// stepNow takes in one event (step, once a deferred description is
// settled).
func (lc *libvirtLifecycle) stepNow(ctx context.Context, q lifecycleQueries, e qmp.Event, at time.Time) transition {
	in := &lc.inst
	switch e.Event {
	case EventLibvirtDomain:
		return lc.describe(e.Data, at)
	case EventLibvirtLifecycle:
		return lc.lifecycle(ctx, q, dataString(e, "event"), dataString(e, "detail"), at)
	case "VSERPORT_CHANGE":
		if portOpened(e, lc.port) && !in.booted {
			in.booted = true
			if !in.incoming && in.restore == "" && in.running {
				return emit(attest.EventBoot, at, nil)
			}
		}
	case "MIGRATION":
		switch status := dataString(e, "status"); {
		case in.incoming || in.restore != "":
			// The incoming side of a migration or restore.
		case migrationStarts(status) && !in.running:
			in.pausedSave = true
		case migrationStarts(status) && !in.migrating:
			in.migrating = true
			return emit(attest.EventMigrateOut, at, map[string]string{"migration_status": status})
		case status == "completed" && in.migrating:
			in.migrating, in.migratedOut = false, true
			rememberMigrationEnd(ctx, q, lc.remembered, status)
		case status == "failed" || status == "cancelled":
			in.migrating, in.pausedSave = false, false
			rememberMigrationEnd(ctx, q, lc.remembered, status)
		}
	}
	return transition{}
}

// lifecycle takes in a libvirt lifecycle event. Every report it gives
// carries the event as fact libvirt_event.
func (lc *libvirtLifecycle) lifecycle(ctx context.Context, q lifecycleQueries, event, detail string, at time.Time) transition {
	facts := map[string]string{"libvirt_event": event + "/" + detail}
	in := &lc.inst
	switch event {
	case "started":
		// A new QEMU instance, with a new agent socket.
		lc.inst = libvirtInstance{id: in.id, running: true}
		t := transition{state: "running", closeAgent: true}
		switch detail {
		case "migrated":
			in.incoming = true
		case "restored", "from_snapshot":
			in.restore = detail
		default:
			if lc.agent == "" {
				in.booted = true
				t.events = []lifecycleEvent{{event: attest.EventBoot, at: at, facts: facts}}
			}
		}
		return t
	case "resumed":
		in.running = true
		var t transition
		switch {
		case in.incoming:
			in.incoming, in.booted = false, true
			t = emit(attest.EventMigrateIn, at, facts)
		case in.restore != "":
			facts["restore_from"] = in.restore
			in.restore, in.booted = "", true
			t = emit(attest.EventRestore, at, facts)
		case in.pausedSave:
			// A state transfer while paused, then resumed in the same
			// QEMU: an internal snapshot (savevm).
			in.pausedSave = false
			if name := newestSnapshot(ctx, q, in.pausedAt); name != "" {
				facts["snapshot"] = name
			}
			t = emit(attest.EventSnapshot, at, facts)
		}
		t.state = "running"
		return t
	case "suspended":
		in.running, in.pausedAt = false, at
		return transition{state: "paused"}
	case "stopped":
		if in.stopReported {
			// The stop was already reported from the description sent
			// on reconnecting; libvirt's own event came after it.
			in.stopReported = false
			return transition{}
		}
		reportedOut := in.migrating || in.migratedOut
		lc.inst = noInstance()
		t := transition{state: "shutoff", closeAgent: true}
		switch detail {
		case "migrated":
			// Handed over to the destination, which reports from now on.
			// A migration of a paused guest gave no migrate-out yet.
			if !reportedOut {
				t.events = []lifecycleEvent{{event: attest.EventMigrateOut, at: at, facts: facts,
					noAgent: "the guest was paused during the migration; no agent to ask"}}
			}
		case "from_snapshot":
			// A snapshot revert: the new instance reports the restore.
		case "saved":
			t.events = []lifecycleEvent{{event: attest.EventSnapshot, at: at, facts: facts,
				noAgent: "the guest was saved to a file and stopped; no agent to ask"}}
		default:
			facts["shutdown_reason"] = detail
			t.events = []lifecycleEvent{{event: attest.EventShutdown, at: at, facts: facts}}
		}
		return t
	}
	return transition{}
}

// launchFactsMark is the fact every description of a domain's launch inputs
// has (libvirt.FactLaunchVCPUs; host does not import the libvirt binding).
const launchFactsMark = "launch_vcpus"

// describe takes in the transport's description of the domain's current
// QEMU instance (EventLibvirtDomain). After a reconnection it reports what
// happened while hvmon could not see the domain (libvirtd restarting): a
// domain that stopped, or one that runs another QEMU instance than before.
func (lc *libvirtLifecycle) describe(d map[string]any, at time.Time) transition {
	id := int64(-1)
	if n, ok := d["id"].(float64); ok {
		id = int64(n)
	}
	state, _ := d["state"].(string)
	agentOpen, _ := d["agent_open"].(bool)
	if in := &lc.inst; in.id >= 0 && id >= 0 && id != in.id && state == "paused" && !agentOpen {
		// A new instance, starting, described before the old one's stop
		// reached hvmon: the next event decides (deferred).
		lc.deferred = &deferredChange{d: d}
		return transition{}
	}
	return lc.describeNow(d, at)
}

// describeNow applies a description of the domain's current instance.
func (lc *libvirtLifecycle) describeNow(d map[string]any, at time.Time) transition {
	var t transition
	if p, ok := d["agent_path"].(string); ok && p != "" {
		t.closeAgent = p != lc.agent
		lc.agent = p
	}
	if a, ok := d["agent_alias"].(string); ok && a != "" {
		lc.port = a
	}
	if f, ok := d["facts"].(map[string]any); ok {
		if _, ok := f[launchFactsMark]; ok {
			// The launch inputs are described whole each time: none of
			// the previous description's (a kernel since removed, an
			// error since fixed) outlives it.
			for k := range lc.remembered {
				if strings.HasPrefix(k, "launch_") && k != "launch_security" {
					delete(lc.remembered, k)
				}
			}
		}
		for k, val := range f {
			if s, ok := val.(string); ok {
				lc.remembered[k] = s
			}
		}
	}
	id := int64(-1)
	if n, ok := d["id"].(float64); ok {
		id = int64(n)
	}
	state, _ := d["state"].(string)
	agentOpen, _ := d["agent_open"].(bool)
	unobserved := func(event attest.Event, facts map[string]string) {
		facts["observed"] = "after reconnecting to libvirt"
		t.events = append(t.events, lifecycleEvent{event: event, at: at, facts: facts})
	}
	in := &lc.inst
	if in.id >= 0 && id != in.id {
		// Not the QEMU instance followed so far: the domain stopped, or
		// stopped and started again, while hvmon could not see it.
		t.note = &note{hclog.Warn, "domain changed while unobserved", []any{"old_id", in.id, "new_id", id, "state", state}}
		unobserved(attest.EventShutdown, map[string]string{"shutdown_reason": "unobserved"})
		lc.inst = noInstance()
		in.stopReported = id < 0
		t.closeAgent = true
		if id >= 0 && (agentOpen || lc.agent == "") {
			unobserved(attest.EventBoot, map[string]string{})
		}
	}
	if in.id >= 0 && id == in.id && agentOpen && !in.booted && !in.incoming && in.restore == "" {
		// The same instance, whose agent came up while hvmon could not see
		// its port open.
		unobserved(attest.EventBoot, map[string]string{})
	}
	in.id = id
	in.running = state == "running"
	if state != "" {
		t.state = state
	}
	if agentOpen || (id >= 0 && lc.agent == "") {
		in.booted = true
	}
	return t
}

// newestSnapshot names the snapshot libvirt made for a snapshot event: the
// newest whose creation time is not before the pause that began it
// (libvirt stamps the time when the request starts; 2 s allow for its
// clock's whole seconds). It returns "" when libvirt lists none: a name is
// never guessed.
func newestSnapshot(ctx context.Context, q lifecycleQueries, paused time.Time) string {
	list, err := q.LibvirtSnapshots(ctx, paused.Add(-2*time.Second))
	if err != nil {
		return ""
	}
	best, bestAt := "", int64(0)
	for _, s := range list {
		if s.CreationTime >= bestAt {
			best, bestAt = s.Name, s.CreationTime
		}
	}
	return best
}
