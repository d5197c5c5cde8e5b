package host

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// qmpLifecycle is the lifecycle machine of a VM followed over a QMP socket
// of its own: what the worker knows about the QEMU instance on the other
// end (docs/ARCHITECTURE.md, "Lifecycle mapping (QMP, as implemented)"):
//
//	boot         VSERPORT_CHANGE open for the agent's port, first time in this QEMU
//	migrate-out  MIGRATION setup/active on a source (the guest still runs)
//	migrate-in   RESUME on a destination (QEMU sends it just before its
//	             MIGRATION completed)
//	snapshot     JOB_STATUS_CHANGE concluded for a snapshot-save job
//	restore      snapshot-load concluded (reported at once when running,
//	             else at the next RESUME)
//	shutdown     SHUTDOWN
//
// Every (re)connection may reach another QEMU instance: the machine then
// forgets what it knew, remembered facts included.
type qmpLifecycle struct {
	agent string // the agent's socket; empty for a VM without an agent
	port  string // the QEMU device id of the agent's virtserialport

	running        bool
	booted         bool
	incoming       bool // this QEMU was started to receive a migration and has not resumed yet
	trailingDone   bool // migrate-in was reported; the destination's own "completed" follows
	migratingOut   bool
	migratedOut    bool // an outgoing migration completed: this QEMU no longer runs the VM
	restorePending bool
	jobs           map[string]string // job id -> type
	snapshotJobs   int               // snapshot jobs running: their state transfer emits MIGRATION events too
	remembered     map[string]string // the last migration's facts, the SEV launch values
}

// maxJobs bounds the job types a VM's lifecycle remembers.
const maxJobs = 256

func newQMPLifecycle(agent, port string) *qmpLifecycle {
	lc := &qmpLifecycle{agent: agent, port: port}
	lc.reset()
	return lc
}

// reset forgets the QEMU instance.
func (lc *qmpLifecycle) reset() {
	*lc = qmpLifecycle{agent: lc.agent, port: lc.port, jobs: map[string]string{}, remembered: map[string]string{}}
}

func (lc *qmpLifecycle) facts() map[string]string { return lc.remembered }

func (lc *qmpLifecycle) agentSocket() string { return lc.agent }

// periodicDue is false while an outgoing migration is under way: the
// migrate-out evidence is the guest's last before the final copy, and
// evidence the agent signed after it would travel to the destination in
// the guest's memory without a report on the source (a guest-chain gap).
func (lc *qmpLifecycle) periodicDue() bool {
	return lc.running && (lc.booted || lc.agent == "") && !lc.migratingOut && !lc.migratedOut
}

func (lc *qmpLifecycle) step(ctx context.Context, q lifecycleQueries, e qmp.Event, at time.Time) transition {
	switch e.Event {
	case qmp.EventConnected:
		return lc.connected(ctx, q)
	case qmp.EventDisconnected:
		lc.reset()
		return transition{closeAgent: true}
	case "VSERPORT_CHANGE":
		if portOpened(e, lc.port) && !lc.booted {
			lc.booted = true
			if !lc.incoming {
				return emit(attest.EventBoot, at, nil)
			}
		}
	case "MIGRATION":
		return lc.migration(ctx, q, dataString(e, "status"), at)
	case "STOP":
		lc.running = false
		return transition{state: "paused"}
	case "RESUME":
		lc.running = true
		var t transition
		switch {
		case lc.incoming:
			lc.incoming, lc.booted, lc.trailingDone = false, true, true
			t = emit(attest.EventMigrateIn, at, nil)
		case lc.restorePending:
			lc.restorePending = false
			t = emit(attest.EventRestore, at, nil)
		}
		t.state = "running"
		return t
	case "SHUTDOWN":
		lc.running = false
		var t transition
		if lc.migratedOut {
			// The source QEMU exits after handing the VM over: the VM did
			// not shut down; its destination reports from now on.
			t.note = &note{hclog.Info, "source QEMU ended after an outgoing migration", []any{"reason", dataString(e, "reason")}}
		} else {
			t = emit(attest.EventShutdown, at, map[string]string{"shutdown_reason": dataString(e, "reason")})
		}
		t.state = "shutdown"
		return t
	case "JOB_STATUS_CHANGE":
		return lc.job(ctx, q, dataString(e, "id"), dataString(e, "status"), at)
	}
	return transition{}
}

// connected starts over with the QEMU instance just reached: its run
// state, whether it is a migration destination, whether its guest's agent
// is up already (attached to a VM that booted before hvmon: no boot
// report), and for SEV and SEV-ES guests the launch state and measurement
// QEMU knows (SEV-SNP and TDX evidence comes from the guest).
func (lc *qmpLifecycle) connected(ctx context.Context, q lifecycleQueries) transition {
	lc.reset()
	var t transition
	if st, err := q.QueryStatus(ctx); err == nil {
		lc.running = st.Running
		lc.incoming = st.Status == "inmigrate"
		t.state = st.Status
	}
	if lc.agent != "" && !lc.incoming {
		if cds, err := q.QueryChardev(ctx); err == nil && chardevOpen(cds, lc.agent) {
			lc.booted = true
		}
	}
	if sev, err := q.QuerySEV(ctx); err == nil && sev.Enabled {
		lc.remembered["sev_state"] = sev.State
		lc.remembered["sev_policy"] = strconv.FormatUint(uint64(sev.Policy), 16)
		if m, err := q.QuerySEVLaunchMeasure(ctx); err == nil {
			lc.remembered["sev_launch_measure"] = m
		}
	}
	return t
}

// migration takes in a MIGRATION event.
func (lc *qmpLifecycle) migration(ctx context.Context, q lifecycleQueries, status string, at time.Time) transition {
	switch {
	case lc.incoming, lc.snapshotJobs > 0:
		// The incoming side of a migration, or a snapshot job's state
		// transfer.
	case lc.trailingDone && status == "completed":
		lc.trailingDone = false
	case migrationStarts(status) && !lc.migratingOut:
		lc.migratingOut = true
		return emit(attest.EventMigrateOut, at, map[string]string{"migration_status": status})
	case status == "completed":
		lc.migratingOut, lc.migratedOut = false, true
		rememberMigrationEnd(ctx, q, lc.remembered, status)
	case status == "failed" || status == "cancelled":
		lc.migratingOut = false
		rememberMigrationEnd(ctx, q, lc.remembered, status)
	}
	return transition{}
}

// job takes in a JOB_STATUS_CHANGE event. The event does not say the job's
// type: query-jobs does, asked for a job not seen before and again when
// one concludes.
func (lc *qmpLifecycle) job(ctx context.Context, q lifecycleQueries, id, status string, at time.Time) transition {
	if _, known := lc.jobs[id]; !known || status == "concluded" {
		if jobs, err := q.QueryJobs(ctx); err == nil {
			if len(lc.jobs) >= maxJobs {
				clear(lc.jobs) // a QEMU listing endless jobs costs re-queries, not memory
			}
			for _, j := range jobs {
				if j.Type != "" && (len(lc.jobs) < maxJobs || j.ID == id) {
					lc.jobs[j.ID] = j.Type
				}
			}
		}
	}
	typ := lc.jobs[id]
	snap := typ == "snapshot-save" || typ == "snapshot-load"
	if status == "created" && snap {
		lc.snapshotJobs++
	}
	if status != "concluded" {
		return transition{}
	}
	delete(lc.jobs, id)
	if snap && lc.snapshotJobs > 0 {
		lc.snapshotJobs--
	}
	facts := map[string]string{"job_id": id, "job_type": typ}
	switch typ {
	case "snapshot-save":
		return emit(attest.EventSnapshot, at, facts)
	case "snapshot-load":
		if lc.running {
			return emit(attest.EventRestore, at, facts)
		}
		lc.restorePending = true
	}
	return transition{}
}
