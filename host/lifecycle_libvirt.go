package host

import (
	"context"
	"strconv"
	"time"

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
	// after every (re)connection and before every "started" lifecycle
	// event. Data: "id" (libvirt domain id, a number; -1 when shut off),
	// "state" (libvirt state name), "agent_path" and "agent_alias" (the
	// agent channel's unix socket and its device alias), and "facts" (a
	// map of observations: domain XML digest, launch security, ...).
	EventLibvirtDomain = "HVMON_LIBVIRT_DOMAIN"
)

// SourceLibvirt marks a VMConfig whose QMP stream comes from libvirt.
const SourceLibvirt = "libvirt"

// libvirtLifecycle is the state a libvirt domain's worker keeps between
// events. libvirt's lifecycle events classify what happened (a save, a
// restore, a snapshot revert) where QEMU's own events are ambiguous: a
// save, an internal snapshot and a live migration all start as MIGRATION
// events. The mapping (docs/ARCHITECTURE.md, "libvirt"):
//
//	boot         started/booted, reported when the agent's port opens
//	migrate-out  MIGRATION setup/active while the guest runs
//	migrate-in   started/migrated, reported at resumed
//	snapshot     state saved while paused (savevm) then resumed in the same
//	             QEMU; or stopped/saved (the guest is gone: no evidence)
//	restore      started/restored or started/from_snapshot, reported at
//	             resumed
//	shutdown     stopped/* other than migrated, saved and from_snapshot
type libvirtLifecycle struct {
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

func newLibvirtLifecycle() libvirtLifecycle { return libvirtLifecycle{id: -1} }

// onLibvirtEvent advances a libvirt domain's state machine and returns the
// reports to make.
func (v *vm) onLibvirtEvent(ctx context.Context, e qmp.Event) []request {
	lc := &v.llc
	if v.lc.facts == nil {
		v.lc.facts = map[string]string{}
	}
	at := v.s.opts.Now()
	if e.Timestamp.Seconds > 0 {
		at = timeOf(e)
	}
	if m := v.s.opts.Metrics; m != nil && e.Event != "" {
		m.event(v.cfg.Name, e.Event)
	}
	str := func(k string) string { s, _ := e.Data[k].(string); return s }
	req := func(ev attest.Event, facts map[string]string) []request {
		return []request{{event: ev, at: at, facts: facts}}
	}
	v.log.Trace("libvirt event", "event", e.Event, "data", e.Data)
	switch e.Event {
	case qmp.EventConnected:
		v.qemu = v.qmp.Greeting().QMP.Version.String()
		v.setConnected(true)
	case qmp.EventDisconnected:
		v.setConnected(false)
	case EventLibvirtDomain:
		return v.libvirtDomain(e.Data, at)
	case EventLibvirtLifecycle:
		event, detail := str("event"), str("detail")
		facts := map[string]string{"libvirt_event": event + "/" + detail}
		switch event {
		case "started":
			id := lc.id
			*lc = newLibvirtLifecycle()
			lc.id, lc.running = id, true
			v.closeAgent() // a new QEMU instance: a new agent socket
			v.setState("running")
			switch detail {
			case "migrated":
				lc.incoming = true
			case "restored", "from_snapshot":
				lc.restore = detail
			default:
				if v.cfg.Agent == "" {
					lc.booted = true
					return req(attest.EventBoot, facts)
				}
			}
		case "resumed":
			lc.running = true
			v.setState("running")
			switch {
			case lc.incoming:
				lc.incoming, lc.booted = false, true
				return req(attest.EventMigrateIn, facts)
			case lc.restore != "":
				facts["restore_from"] = lc.restore
				lc.restore, lc.booted = "", true
				return req(attest.EventRestore, facts)
			case lc.pausedSave:
				// A state transfer while paused, then resumed in the same
				// QEMU: an internal snapshot (savevm).
				lc.pausedSave = false
				if name := v.libvirtSnapshotSince(ctx, lc.pausedAt); name != "" {
					facts["snapshot"] = name
				}
				return req(attest.EventSnapshot, facts)
			}
		case "suspended":
			lc.running, lc.pausedAt = false, at
			v.setState("paused")
		case "stopped":
			if lc.stopReported {
				// The stop was already reported from the description sent
				// on reconnecting; libvirt's own event came after it.
				lc.stopReported = false
				return nil
			}
			reportedOut := lc.migrating || lc.migratedOut
			*lc = newLibvirtLifecycle()
			v.closeAgent()
			v.setState("shutoff")
			switch detail {
			case "migrated":
				// Handed over to the destination, which reports from now on.
				// A migration of a paused guest gave no migrate-out yet.
				if !reportedOut {
					return []request{{event: attest.EventMigrateOut, at: at, facts: facts,
						noAgent: "the guest was paused during the migration; no agent to ask"}}
				}
				return nil
			case "from_snapshot":
				return nil // a snapshot revert: the new instance reports the restore
			case "saved":
				return []request{{event: attest.EventSnapshot, at: at, facts: facts,
					noAgent: "the guest was saved to a file and stopped; no agent to ask"}}
			}
			facts["shutdown_reason"] = detail
			return req(attest.EventShutdown, facts)
		}
	case "VSERPORT_CHANGE":
		if str("id") == v.cfg.AgentPortID {
			if open, _ := e.Data["open"].(bool); open && !lc.booted {
				lc.booted = true
				if !lc.incoming && lc.restore == "" && lc.running {
					return req(attest.EventBoot, nil)
				}
			}
		}
	case "MIGRATION":
		switch status := str("status"); {
		case lc.incoming || lc.restore != "":
			// the incoming side of a migration or restore
		case (status == "setup" || status == "active") && !lc.running:
			lc.pausedSave = true
		case (status == "setup" || status == "active") && !lc.migrating:
			lc.migrating = true
			return req(attest.EventMigrateOut, map[string]string{"migration_status": status})
		case status == "completed" && lc.migrating:
			lc.migrating, lc.migratedOut = false, true
			if mi, err := v.qmp.QueryMigrate(ctx); err == nil {
				v.lc.facts["last_migration_total_ms"] = strconv.FormatInt(mi.TotalTime, 10)
				v.lc.facts["last_migration_downtime_ms"] = strconv.FormatInt(mi.Downtime, 10)
			}
		case status == "failed" || status == "cancelled":
			lc.migrating, lc.pausedSave = false, false
			v.lc.facts["last_migration_status"] = status
		}
		// Not a migrate-out: a hold the gate set is not needed.
		v.hold.release("not a migrate-out")
	}
	return nil
}

// libvirtDomain takes in the transport's description of the domain's
// current QEMU instance. After a reconnection it reports what happened
// while hvmon could not see the domain (libvirtd restarting): a domain that
// stopped, or one that runs another QEMU instance than before.
func (v *vm) libvirtDomain(d map[string]any, at time.Time) []request {
	lc := &v.llc
	if p, ok := d["agent_path"].(string); ok && p != "" {
		if p != v.cfg.Agent {
			v.closeAgent()
		}
		v.cfg.Agent = p
	}
	if a, ok := d["agent_alias"].(string); ok && a != "" {
		v.cfg.AgentPortID = a
	}
	if f, ok := d["facts"].(map[string]any); ok {
		for k, val := range f {
			if s, ok := val.(string); ok {
				v.lc.facts[k] = s
			}
		}
	}
	id := int64(-1)
	if n, ok := d["id"].(float64); ok {
		id = int64(n)
	}
	state, _ := d["state"].(string)
	agentOpen, _ := d["agent_open"].(bool)
	var out []request
	if lc.id >= 0 && id != lc.id {
		// Not the QEMU instance followed so far: the domain stopped, or
		// stopped and started again, while hvmon could not see it.
		v.log.Warn("domain changed while unobserved", "old_id", lc.id, "new_id", id, "state", state)
		out = append(out, request{event: attest.EventShutdown, at: at, facts: map[string]string{
			"shutdown_reason": "unobserved", "observed": "after reconnecting to libvirt"}})
		*lc = newLibvirtLifecycle()
		lc.stopReported = id < 0
		v.closeAgent()
		if id >= 0 && (agentOpen || v.cfg.Agent == "") {
			out = append(out, request{event: attest.EventBoot, at: at, facts: map[string]string{
				"observed": "after reconnecting to libvirt"}})
		}
	}
	if lc.id >= 0 && id == lc.id && agentOpen && !lc.booted && !lc.incoming && lc.restore == "" {
		// The same instance, whose agent came up while hvmon could not see
		// its port open.
		out = append(out, request{event: attest.EventBoot, at: at, facts: map[string]string{
			"observed": "after reconnecting to libvirt"}})
	}
	lc.id = id
	lc.running = state == "running"
	if state != "" {
		v.setState(state)
	}
	if agentOpen || (id >= 0 && v.cfg.Agent == "") {
		lc.booted = true
	}
	return out
}

// libvirtSnapshotSince names the snapshot libvirt made for a snapshot
// event: the newest whose creation time is not before the pause that began
// it (libvirt stamps the time when the request starts, and lists the
// snapshot only once the guest has resumed, so it is asked a few times).
// It returns "" when libvirt lists none: a name is never guessed.
func (v *vm) libvirtSnapshotSince(ctx context.Context, paused time.Time) string {
	since := paused.Add(-2 * time.Second).Unix()
	for try := 0; try < 10; try++ {
		var list []struct {
			Name         string `json:"name"`
			CreationTime int64  `json:"creation_time"`
		}
		if err := v.qmp.Execute(ctx, CommandLibvirtSnapshots, nil, &list); err != nil {
			v.log.Debug("cannot list snapshots", "error", err)
			return ""
		}
		best, bestAt := "", int64(0)
		for _, s := range list {
			if s.CreationTime >= since && s.CreationTime >= bestAt {
				best, bestAt = s.Name, s.CreationTime
			}
		}
		if best != "" {
			return best
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ""
}
