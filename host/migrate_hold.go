package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"hvmon.dev/hvmon/internal/dropq"
	"hvmon.dev/hvmon/qmp"
)

// The migrate-out hold (docs/THREAT-MODEL.md, "Migrate-out evidence").
//
// A migrate-out report is asked for when a migration starts on a source
// whose guest runs. With both host cores busy, the agent of a small guest
// can take longer than the whole migration; once the source stops for the
// switchover, the agent cannot answer and the report carries no guest
// evidence. So hvmon holds the migration while it asks the agent: when a
// migration starts, it lowers the migration's max-bandwidth to
// HoldBandwidth, which stops the bulk transfer (and with it the
// switchover, which QEMU makes only once the state left to send fits in
// its downtime limit) while the guest keeps running; after the agent has
// answered (or failed, or timed out) it puts the old value back. The
// stop-and-copy is not affected: QEMU lifts the cap for it, and the hold
// is over before it. The migration takes longer by the agent's time.
//
// QEMU's pause-before-switchover capability cannot do this: QEMU stops the
// guest's vCPUs before it enters pre-switchover, so no agent runs there.
//
// The hold needs no agent to win a race, but it must be in place before
// the bulk transfer ends. The worker of a VM handles one report at a time
// and can be busy when a migration starts, so the hold is set by the
// worker's gate (vm.gate): the goroutine that takes every QMP event first,
// in order, and passes it to the worker through a queue that never blocks
// the gate. Because the gate sees each event before the worker does, the
// worker's release always comes after the gate's hold for the same
// migration.

// HoldBandwidth is the max-bandwidth, in bytes per second, that holds a
// migration. QEMU spends max-bandwidth in 100 ms windows of
// max-bandwidth/10 bytes: 1 byte here, less than the header of one
// iteration, so no page moves until the hold ends (measured with QEMU 7.2:
// 8 bytes per window, no pages). 0 would mean no cap.
const HoldBandwidth = 10

// leftoverBandwidth is what a hold left by an earlier run of the daemon
// (one that died holding) is released to, since the value it replaced is
// lost with that run: QEMU's default max-bandwidth (128 MiB/s). libvirt
// sets its own value again at the start of each migration.
const leftoverBandwidth = 128 << 20

// holdCommandTimeout bounds each QMP command of the hold.
const holdCommandTimeout = 5 * time.Second

// errSourceStopped ends the migrate-out agent request once the source's
// vCPUs stop (the switchover, or a pause): the agent cannot answer then.
var errSourceStopped = errors.New("the source's vCPUs stopped (paused, or stopped for the switchover) before the agent answered")

// migrationHold is a VM's outgoing migration as the gate sees it, and the
// hold on it. The gate starts and ends it; the worker's migrate-out report
// asks the agent under agentContext and releases the hold.
type migrationHold struct {
	v     *vm
	bound time.Duration // the longest hold; negative: no hold

	mu       sync.Mutex
	closed   bool                    // the worker stopped: no more holds
	inFlight bool                    // a migration is under way
	stopped  bool                    // the source's vCPUs are stopped
	cancel   context.CancelCauseFunc // the migrate-out agent request, while it runs
	held     bool                    // max-bandwidth is HoldBandwidth, set by this hold
	saved    uint64                  // the max-bandwidth the hold replaced
	since    time.Time
	lag      time.Duration // from QEMU's MIGRATION event to the hold in force
	heldFor  time.Duration // how long the last hold lasted
	timer    *time.Timer
	note     string // what the migrate-out report says about the hold
}

func newMigrationHold(v *vm, bound time.Duration) *migrationHold {
	return &migrationHold{v: v, bound: bound}
}

// start records a migration that begins (QEMU's event at at), and holds
// it when hold is set (the guest runs and its agent's port is open);
// otherwise why says why not. paused says the guest's vCPUs are stopped
// already.
func (h *migrationHold) start(at time.Time, hold, paused bool, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight, h.stopped, h.heldFor, h.lag = true, paused, 0, 0
	switch {
	case h.closed:
		return
	case h.bound < 0:
		h.note = "off"
		return
	case !hold:
		h.note = "not held: " + why
		return
	case h.held:
		// A hold not yet released (its release failed): it holds this
		// migration too.
		h.note, h.since = "held", time.Now()
		h.armTimer()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), holdCommandTimeout)
	defer cancel()
	p, err := h.v.qmp.QueryMigrateParameters(ctx)
	if err == nil && p.MaxBandwidth == nil {
		err = errors.New("query-migrate-parameters has no max-bandwidth")
	}
	if err != nil {
		h.note = "not applied: " + shorten(err.Error())
		h.v.log.Warn("cannot hold the migration for the agent; migrate-out evidence depends on the agent's speed", "error", err)
		return
	}
	h.saved = *p.MaxBandwidth
	if h.saved == HoldBandwidth {
		// Left by an earlier run of the daemon that died holding.
		h.saved = leftoverBandwidth
	}
	hb := uint64(HoldBandwidth)
	if err := h.v.qmp.MigrateSetParameters(ctx, qmp.MigrationParameters{MaxBandwidth: &hb}); err != nil {
		h.note = "not applied: " + shorten(err.Error())
		h.v.log.Warn("cannot hold the migration for the agent; migrate-out evidence depends on the agent's speed", "error", err)
		var refused *qmp.Error
		if !errors.As(err, &refused) {
			// No answer: the command may still have reached QEMU. Held
			// as far as the release is concerned, which puts the old
			// value back only where it finds the hold's.
			h.held, h.since = true, time.Now()
			h.note = "unanswered: " + shorten(err.Error())
			h.armTimer()
		}
		return
	}
	h.held, h.since, h.note = true, time.Now(), "held"
	h.lag = h.since.Sub(at)
	h.armTimer()
	h.v.log.Info("migration held for the migrate-out evidence", "max_bandwidth", h.saved, "bound", h.bound)
}

// armTimer (under mu) bounds the hold.
func (h *migrationHold) armTimer() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = time.AfterFunc(h.bound, func() {
		h.v.log.Warn("migration hold reached its bound before the agent answered; released", "bound", h.bound)
		h.release("bound reached")
	})
}

// release ends the hold, if any: max-bandwidth goes back to the value the
// hold replaced, unless someone changed it meanwhile. A release that
// cannot reach QEMU keeps the hold, and the next release (the gate's, on
// reconnecting; or a retry a second later) tries again.
func (h *migrationHold) release(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return
	}
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), holdCommandTimeout)
	defer cancel()
	p, err := h.v.qmp.QueryMigrateParameters(ctx)
	switch {
	case err != nil:
	case p.MaxBandwidth == nil || *p.MaxBandwidth != HoldBandwidth:
		// Someone else set max-bandwidth during the hold (or QEMU
		// restarted): theirs stays.
		h.v.log.Info("max-bandwidth changed during the migration hold; left as it is", "max_bandwidth", p.MaxBandwidth)
	default:
		err = h.v.qmp.MigrateSetParameters(ctx, qmp.MigrationParameters{MaxBandwidth: &h.saved})
	}
	if err != nil {
		h.v.log.Warn("cannot release the migration hold yet", "error", err, "why", why)
		if !errors.Is(err, qmp.ErrClosed) {
			h.timer = time.AfterFunc(time.Second, func() { h.release(why) })
		}
		return
	}
	h.held = false
	h.heldFor = time.Since(h.since)
	h.v.log.Info("migration released", "held", h.heldFor.Round(time.Millisecond), "why", why, "max_bandwidth", h.saved)
}

// close ends the hold for good, when the worker stops.
func (h *migrationHold) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.release("the worker stopped")
}

// releaseLeftover, on a (re)connection: a hold this process still has is
// released; otherwise a max-bandwidth of HoldBandwidth is a hold an
// earlier run of the daemon left (it died holding), and goes back to
// leftoverBandwidth.
func (h *migrationHold) releaseLeftover() {
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	if held {
		h.release("reconnected")
		return
	}
	if h.bound < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), holdCommandTimeout)
	defer cancel()
	p, err := h.v.qmp.QueryMigrateParameters(ctx)
	if err != nil || p.MaxBandwidth == nil || *p.MaxBandwidth != HoldBandwidth {
		return
	}
	lb := uint64(leftoverBandwidth)
	if err := h.v.qmp.MigrateSetParameters(ctx, qmp.MigrationParameters{MaxBandwidth: &lb}); err != nil {
		h.v.log.Warn("cannot release a migration hold left by an earlier run", "error", err)
		return
	}
	h.v.log.Warn("released a migration hold left by an earlier run of the daemon; the max-bandwidth it replaced is lost", "max_bandwidth", lb)
}

// sourceStopped: the guest's vCPUs stopped during the migration. A
// migrate-out agent request in flight cannot be answered any more.
func (h *migrationHold) sourceStopped() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.inFlight {
		return
	}
	h.stopped = true
	if h.cancel != nil {
		h.cancel(errSourceStopped)
	}
}

// sourceResumed: the guest runs again.
func (h *migrationHold) sourceResumed() {
	h.mu.Lock()
	h.stopped = false
	h.mu.Unlock()
}

// switchover: the migration reached its switchover (or completed). A hold
// still in force then came too late: the bulk transfer had ended before
// QEMU applied it. The report says so.
func (h *migrationHold) switchover() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held {
		h.note = "too late: the migration reached its switchover before the hold took effect"
	}
}

// ended: the migration completed, failed or was cancelled.
func (h *migrationHold) ended() {
	h.mu.Lock()
	h.inFlight = false
	h.mu.Unlock()
}

// agentContext is the context of a migrate-out agent request: cancelled
// with errSourceStopped once the source's vCPUs stop (at once when they
// stopped already: a late request after the migration completed). done
// must be called when the request is over.
func (h *migrationHold) agentContext(ctx context.Context) (actx context.Context, done func()) {
	actx, cancel := context.WithCancelCause(ctx)
	h.mu.Lock()
	if h.stopped {
		cancel(errSourceStopped)
	} else {
		h.cancel = cancel
	}
	h.mu.Unlock()
	return actx, func() {
		h.mu.Lock()
		h.cancel = nil
		h.mu.Unlock()
		cancel(context.Canceled)
	}
}

// facts are what the migrate-out report says about the hold.
func (h *migrationHold) facts() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := map[string]string{}
	if h.note != "" {
		f["migration_hold"] = h.note
	}
	if h.heldFor > 0 {
		f["migration_hold_ms"] = fmt.Sprint(h.heldFor.Milliseconds())
	}
	if h.lag > 0 {
		f["migration_hold_lag_ms"] = fmt.Sprint(h.lag.Milliseconds())
	}
	return f
}

// shorten bounds an error text recorded as a fact.
func shorten(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

// gateState is what the gate knows of the VM, from the events in order.
type gateState struct {
	paused    bool   // the guest's vCPUs are stopped
	portOpen  bool   // the agent's port is open in the guest
	portID    string // the agent's port: QEMU device id (libvirt: channel alias)
	hasAgent  bool
	migrating bool // a migration is under way
}

// gate takes every QMP event first, in order: it holds a migration that
// starts while the guest runs with its agent up, tells the hold when the
// source's vCPUs stop or run, and passes each event on to the worker
// through out, which never blocks it.
func (v *vm) gate(ctx context.Context, in <-chan qmp.Event, out *dropq.Queue[qmp.Event]) {
	g := gateState{paused: true, portID: v.cfg.AgentPortID, hasAgent: v.cfg.Agent != ""}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-in:
			if !ok {
				return
			}
			v.gateEvent(ctx, &g, e)
			out.Push(e)
		}
	}
}

func (v *vm) gateEvent(ctx context.Context, g *gateState, e qmp.Event) {
	str := func(k string) string { return dataString(e, k) }
	// The guest stops and resumes under QMP (STOP, RESUME) and under
	// libvirt (suspended, resumed) alike.
	stopped := func() {
		g.paused = true
		if g.migrating {
			v.hold.sourceStopped()
		}
	}
	resumed := func() {
		g.paused = false
		v.hold.sourceResumed()
	}
	libvirt := v.cfg.Source == SourceLibvirt
	switch e.Event {
	case qmp.EventConnected:
		g.migrating = false
		if !libvirt {
			// The worker asks the same at its own pace; the gate must
			// know before the next event.
			cctx, cancel := context.WithTimeout(ctx, holdCommandTimeout)
			g.paused, g.portOpen = true, false
			if st, err := v.qmp.QueryStatus(cctx); err == nil {
				g.paused = !st.Running
			}
			if g.hasAgent && !g.paused {
				if cds, err := v.qmp.QueryChardev(cctx); err == nil {
					g.portOpen = chardevOpen(cds, v.cfg.Agent)
				}
			}
			cancel()
		}
		v.hold.releaseLeftover()
	case EventLibvirtDomain:
		p, _ := e.Data["agent_path"].(string)
		g.hasAgent = p != ""
		if a, _ := e.Data["agent_alias"].(string); a != "" {
			g.portID = a
		}
		g.portOpen, _ = e.Data["agent_open"].(bool)
		g.paused = str("state") != "running"
	case EventLibvirtLifecycle:
		switch str("event") {
		case "suspended":
			stopped()
		case "resumed":
			resumed()
		case "started":
			g.portOpen = false // a new QEMU instance: its port opens later
		case "stopped":
			g.paused, g.portOpen, g.migrating = true, false, false
			v.hold.ended()
		}
	case "STOP":
		stopped()
	case "RESUME":
		resumed()
	case "VSERPORT_CHANGE":
		if str("id") == g.portID {
			g.portOpen, _ = e.Data["open"].(bool)
		}
	case "MIGRATION":
		switch str("status") {
		case "setup", "active":
			if g.migrating {
				return
			}
			g.migrating = true
			why := ""
			switch {
			case g.paused:
				why = "the guest is not running"
			case !g.hasAgent:
				why = "no agent"
			case !g.portOpen:
				why = "the agent's port is not open"
			}
			v.hold.start(eventTime(e, time.Now()), why == "", g.paused, why)
		case "pre-switchover", "device", "postcopy-active":
			v.hold.switchover()
		case "completed":
			v.hold.switchover()
			g.migrating = false
			v.hold.ended()
		case "failed", "cancelled":
			g.migrating = false
			v.hold.ended()
		}
	}
}
