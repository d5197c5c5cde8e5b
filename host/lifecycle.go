package host

import (
	"context"
	"strconv"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// lifecycle is what the worker remembers about one QEMU instance to turn
// QMP events into hvmon events (docs/ARCHITECTURE.md, "Lifecycle"):
//
//	boot         VSERPORT_CHANGE open for the agent's port, first time in this QEMU
//	migrate-out  MIGRATION setup/active on a source (the guest still runs)
//	migrate-in   RESUME on a destination (QEMU sends it just before its
//	             MIGRATION completed)
//	snapshot     JOB_STATUS_CHANGE concluded for a snapshot-save job
//	restore      snapshot-load concluded (reported at once when running,
//	             else at the next RESUME)
//	shutdown     SHUTDOWN
type lifecycle struct {
	connected      bool
	running        bool
	booted         bool
	incoming       bool // this QEMU was started to receive a migration and has not resumed yet
	trailingDone   bool // migrate-in was reported; the destination's own "completed" follows
	migratingOut   bool
	migratedOut    bool // an outgoing migration completed: this QEMU no longer runs the VM
	restorePending bool
	jobs           map[string]string // job id -> type
	snapshotJobs   int               // snapshot jobs running: their state transfer emits MIGRATION events too
	facts          map[string]string // remembered observations (last migration, snapshot job)
}

// onEvent advances the state machine and returns the reports to make.
func (v *vm) onEvent(ctx context.Context, e qmp.Event) []request {
	lc := &v.lc
	if lc.jobs == nil {
		lc.jobs, lc.facts = map[string]string{}, map[string]string{}
	}
	at := v.s.opts.Now()
	if e.Timestamp.Seconds > 0 {
		at = timeOf(e)
	}
	if m := v.s.opts.Metrics; m != nil && e.Event != "" {
		m.event(v.cfg.Name, e.Event)
	}
	req := func(ev attest.Event, facts map[string]string) []request {
		return []request{{event: ev, at: at, facts: facts}}
	}
	str := func(k string) string { s, _ := e.Data[k].(string); return s }
	v.log.Trace("qmp event", "event", e.Event, "data", e.Data)
	switch e.Event {
	case qmp.EventConnected:
		*lc = lifecycle{connected: true, jobs: map[string]string{}, facts: map[string]string{}}
		v.qemu = v.qmp.Greeting().QMP.Version.String()
		st, err := v.qmp.QueryStatus(ctx)
		if err == nil {
			lc.running = st.Running
			lc.incoming = st.Status == "inmigrate"
			v.setState(st.Status)
		}
		// Attached to a VM whose agent is already up: it booted before us.
		if v.cfg.Agent != "" && !lc.incoming {
			if cds, err := v.qmp.QueryChardev(ctx); err == nil {
				for _, cd := range cds {
					if cd.FrontendOpen && strings.Contains(cd.Filename, v.cfg.Agent) {
						lc.booted = true
					}
				}
			}
		}
		// SEV and SEV-ES guests: record the launch state and measurement
		// QEMU knows (SEV-SNP and TDX evidence comes from the guest).
		if sev, err := v.qmp.QuerySEV(ctx); err == nil && sev.Enabled {
			lc.facts["sev_state"] = sev.State
			lc.facts["sev_policy"] = strconv.FormatUint(uint64(sev.Policy), 16)
			if m, err := v.qmp.QuerySEVLaunchMeasure(ctx); err == nil {
				lc.facts["sev_launch_measure"] = m
			}
		}
		// Without MIGRATION events, hvmon would not see migrations.
		if err := v.qmp.MigrateSetCapabilities(ctx, qmp.MigrationCapability{Capability: "events", State: true}); err != nil {
			v.log.Warn("cannot enable migration events", "error", err)
		}
		v.setConnected(true)
	case qmp.EventDisconnected:
		v.setConnected(false)
		v.closeAgent()
		*lc = lifecycle{jobs: map[string]string{}, facts: map[string]string{}}
	case "VSERPORT_CHANGE":
		if str("id") == v.cfg.AgentPortID {
			if open, _ := e.Data["open"].(bool); open && !lc.booted {
				lc.booted = true
				if !lc.incoming {
					return req(attest.EventBoot, nil)
				}
			}
		}
	case "MIGRATION":
		switch status := str("status"); {
		case lc.incoming, lc.snapshotJobs > 0:
		case lc.trailingDone && status == "completed":
			lc.trailingDone = false
		case (status == "setup" || status == "active") && !lc.migratingOut:
			lc.migratingOut = true
			return req(attest.EventMigrateOut, map[string]string{"migration_status": status})
		case status == "completed":
			lc.migratingOut, lc.migratedOut = false, true
			if mi, err := v.qmp.QueryMigrate(ctx); err == nil {
				lc.facts["last_migration_total_ms"] = strconv.FormatInt(mi.TotalTime, 10)
				lc.facts["last_migration_downtime_ms"] = strconv.FormatInt(mi.Downtime, 10)
			}
		case status == "failed" || status == "cancelled":
			lc.migratingOut = false
			lc.facts["last_migration_status"] = status
		}
		// Not a migrate-out: a hold the gate set is not needed.
		v.hold.release("not a migrate-out")
	case "STOP":
		lc.running = false
		v.setState("paused")
	case "RESUME":
		lc.running = true
		v.setState("running")
		switch {
		case lc.incoming:
			lc.incoming, lc.booted, lc.trailingDone = false, true, true
			return req(attest.EventMigrateIn, nil)
		case lc.restorePending:
			lc.restorePending = false
			return req(attest.EventRestore, nil)
		}
	case "SHUTDOWN":
		lc.running = false
		v.setState("shutdown")
		if lc.migratedOut {
			// The source QEMU exits after handing the VM over: the VM did
			// not shut down; its destination reports from now on.
			v.log.Info("source QEMU ended after an outgoing migration", "reason", str("reason"))
			return nil
		}
		return req(attest.EventShutdown, map[string]string{"shutdown_reason": str("reason")})
	case "JOB_STATUS_CHANGE":
		id, status := str("id"), str("status")
		if _, known := lc.jobs[id]; !known || status == "concluded" {
			if jobs, err := v.qmp.QueryJobs(ctx); err == nil {
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
			return nil
		}
		delete(lc.jobs, id)
		if snap && lc.snapshotJobs > 0 {
			lc.snapshotJobs--
		}
		facts := map[string]string{"job_id": id, "job_type": typ}
		switch typ {
		case "snapshot-save":
			return req(attest.EventSnapshot, facts)
		case "snapshot-load":
			if lc.running {
				return req(attest.EventRestore, facts)
			}
			lc.restorePending = true
		}
	}
	return nil
}

// maxJobs bounds the job types a VM's lifecycle remembers.
const maxJobs = 256

// timeOf is when QEMU says the event happened.
func timeOf(e qmp.Event) time.Time {
	return time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000)
}

func (v *vm) setConnected(c bool) {
	v.mu.Lock()
	v.connected = c
	v.mu.Unlock()
}

func (v *vm) setState(s string) {
	v.mu.Lock()
	v.state = s
	v.mu.Unlock()
}
