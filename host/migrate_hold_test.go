package host

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// agentPace slows the rig's fake agent down: it sees each request only
// after delay, and not at all while frozen (a guest whose vCPUs stopped).
type agentPace struct {
	mu     sync.Mutex
	delay  time.Duration
	frozen bool
	thaw   chan struct{}
}

func pace(r *rig) *agentPace {
	p := &agentPace{thaw: make(chan struct{})}
	r.agent.mu.Lock()
	r.agent.wrap = func(c net.Conn) net.Conn { return pacedConn{c, p} }
	r.agent.mu.Unlock()
	r.t.Cleanup(func() { p.setFrozen(false) })
	return p
}

func (p *agentPace) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

func (p *agentPace) setFrozen(f bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen && !f {
		close(p.thaw)
		p.thaw = make(chan struct{})
	}
	p.frozen = f
}

func (p *agentPace) wait() {
	p.mu.Lock()
	d := p.delay
	p.mu.Unlock()
	time.Sleep(d)
	for {
		p.mu.Lock()
		frozen, thaw := p.frozen, p.thaw
		p.mu.Unlock()
		if !frozen {
			return
		}
		<-thaw
	}
}

type pacedConn struct {
	net.Conn
	p *agentPace
}

func (c pacedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.p.wait()
	}
	return n, err
}

// migrationRig is a rig whose VM has booted (its agent answered once) and
// whose fake QEMU can migrate: 256 MiB at QEMU's default 128 MiB/s, two
// seconds unless held. At the switchover the agent freezes, as the
// guest's vCPUs stop. Then the agent is made slow: it answers after
// agentDelay, longer than the whole migration.
type migrationRig struct {
	*rig
	m    *qmptest.Migration
	pace *agentPace
}

const agentDelay = 3 * time.Second

func newMigrationRig(t *testing.T, opts func(*Options)) *migrationRig {
	t.Parallel()
	r := newRigOpts(t, nil, opts)
	mr := &migrationRig{rig: r, pace: pace(r)}
	mr.m = r.qemu.EnableMigration(qmptest.MigrationOptions{Switchover: func() { mr.pace.setFrozen(true) }})
	// As QEMU says once the guest opened the agent's port (a supervisor
	// started later finds the agent up).
	r.qemu.Handle("query-chardev", func(json.RawMessage) (any, string, string) {
		return []map[string]any{{"label": "agent0", "filename": "unix:" + r.agent.Path + ",server=on", "frontend-open": true}}, "", ""
	})
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	if res := r.verify(r.waitReports(1)[0]); res.Guest == nil {
		t.Fatalf("boot report without guest evidence: %q", res.Report.Host.Agent)
	}
	mr.pace.setDelay(agentDelay)
	return mr
}

// migrateOut runs the migration and returns the migrate-out report, once
// the migration completed.
func (r *migrationRig) migrateOut(n int) *attest.Result {
	r.t.Helper()
	r.m.Start()
	select {
	case <-r.m.Done():
	case <-time.After(30 * time.Second):
		r.t.Fatalf("the migration did not complete (max-bandwidth %d, sets %v)", r.m.MaxBandwidth(), r.m.Sets())
	}
	es := r.waitReports(n)
	if es[n-1].Event != attest.EventMigrateOut {
		r.t.Fatalf("report %d is %s, want migrate-out", n, es[n-1].Event)
	}
	return r.verify(es[n-1])
}

// restored checks that max-bandwidth was held and put back.
func (r *migrationRig) restored() {
	r.t.Helper()
	if sets := r.m.Sets(); !slices.Equal(sets, []uint64{HoldBandwidth, qmptest.DefaultMaxBandwidth}) {
		r.t.Fatalf("max-bandwidth set to %v, want the hold (%d) then the old value (%d)", sets, HoldBandwidth, qmptest.DefaultMaxBandwidth)
	}
}

// TestMigrationHoldKeepsEvidence: the agent is slower than the whole
// migration, and the migrate-out report still carries its evidence: the
// migration is held until the agent answered, then max-bandwidth goes
// back and the migration completes.
func TestMigrationHoldKeepsEvidence(t *testing.T) {
	r := newMigrationRig(t, nil)
	out := r.migrateOut(2)
	if out.Guest == nil || out.Report.Host.Agent != "ok" {
		t.Fatalf("migrate-out: agent %q (%s), no guest evidence", out.Report.Host.Agent, out.Report.Host.Detail)
	}
	if f := out.Report.Host.Facts; f["migration_hold"] != "held" || f["migration_hold_ms"] == "" || f["migration_hold_lag_ms"] == "" || f["qmp_status"] == "" {
		t.Errorf("migrate-out facts %v", f)
	}
	r.restored()
}

// TestMigrationWithoutHoldLosesEvidence is the failure the hold exists
// for, and what a host that skips the hold gets: the same slow agent, no
// hold, and the source stops for the switchover before the agent
// answered. The report says so, at once, and carries no evidence.
func TestMigrationWithoutHoldLosesEvidence(t *testing.T) {
	r := newMigrationRig(t, func(o *Options) { o.MigrationHold = -1 })
	out := r.migrateOut(2)
	if out.Guest != nil || out.Report.Host.Agent != "unavailable" || out.Report.Host.Detail != errSourceStopped.Error() {
		t.Fatalf("migrate-out without a hold: agent %q (%s), evidence %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Guest != nil)
	}
	if f := out.Report.Host.Facts; f["migration_hold"] != "off" {
		t.Errorf("migrate-out facts %v", f)
	}
	if sets := r.m.Sets(); len(sets) != 0 {
		t.Errorf("max-bandwidth set to %v with the hold off", sets)
	}
}

// TestMigrationHoldBusyWorker: the VM's worker is busy with another report
// (a slow agent) when the migration starts. The gate holds the migration
// at once, not when the worker gets to it (by then the migration would be
// over), and the migrate-out report still carries evidence.
func TestMigrationHoldBusyWorker(t *testing.T) {
	r := newMigrationRig(t, nil)
	busy := make(chan error, 1)
	go func() {
		_, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
		busy <- err
	}()
	time.Sleep(200 * time.Millisecond) // the on-demand request is with the agent
	out := r.migrateOut(3)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	if out.Guest == nil {
		t.Fatalf("migrate-out behind a busy worker: agent %q (%s)", out.Report.Host.Agent, out.Report.Host.Detail)
	}
	r.restored()
}

// TestMigrationHoldReleased: whatever ends the agent request, the hold
// ends and max-bandwidth goes back.
func TestMigrationHoldReleased(t *testing.T) {
	t.Run("agent error", func(t *testing.T) {
		r := newMigrationRig(t, nil)
		r.pace.setDelay(0)
		r.sup.Close()
		r.cfg = func(c *VMConfig) { c.Regions = []string{"no-such-region"} }
		r.start()
		out := r.migrateOut(2)
		if out.Report.Host.Agent != "error" || out.Report.Host.Facts["migration_hold"] != "held" {
			t.Fatalf("migrate-out: agent %q (%s), facts %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts)
		}
		r.restored()
	})
	t.Run("agent timeout", func(t *testing.T) {
		r := newMigrationRig(t, func(o *Options) { o.AgentTimeout, o.MigrationHold = 300*time.Millisecond, time.Minute })
		out := r.migrateOut(2)
		if out.Report.Host.Agent != "timeout" {
			t.Fatalf("migrate-out: agent %q (%s)", out.Report.Host.Agent, out.Report.Host.Detail)
		}
		r.restored()
	})
	t.Run("hold bound", func(t *testing.T) {
		// The agent hangs; the hold ends at its bound, the migration
		// completes, and the request ends as the source stops.
		r := newMigrationRig(t, func(o *Options) { o.AgentTimeout, o.MigrationHold = time.Minute, 300*time.Millisecond })
		r.pace.setFrozen(true)
		out := r.migrateOut(2)
		if out.Guest != nil || out.Report.Host.Detail != errSourceStopped.Error() {
			t.Fatalf("migrate-out: agent %q (%s)", out.Report.Host.Agent, out.Report.Host.Detail)
		}
		r.restored()
	})
	t.Run("worker stop", func(t *testing.T) {
		r := newMigrationRig(t, nil)
		r.pace.setFrozen(true)
		r.m.Start()
		waitFor(t, func() bool { return r.m.MaxBandwidth() == HoldBandwidth })
		r.sup.Close()
		r.restored()
		<-r.m.Done()
	})
	t.Run("reconnect", func(t *testing.T) {
		// hvmon's QMP connection drops during the hold: the hold is
		// released once it is back.
		r := newMigrationRig(t, func(o *Options) { o.AgentTimeout = time.Minute })
		r.pace.setFrozen(true)
		r.m.Start()
		waitFor(t, func() bool { return r.m.MaxBandwidth() == HoldBandwidth })
		r.qemu.DropConnections()
		waitFor(t, func() bool { return r.m.MaxBandwidth() == qmptest.DefaultMaxBandwidth })
		r.restored()
		<-r.m.Done()
	})
	t.Run("changed meanwhile", func(t *testing.T) {
		// Someone sets max-bandwidth during the hold: theirs stays.
		r := newMigrationRig(t, nil)
		r.m.Start()
		waitFor(t, func() bool { return r.m.MaxBandwidth() == HoldBandwidth })
		c := qmp.New(r.qemu.Path, qmp.Options{})
		defer c.Disconnect()
		if err := c.Connect(); err != nil {
			t.Fatal(err)
		}
		theirs := uint64(1 << 30)
		if err := c.MigrateSetParameters(context.Background(), qmp.MigrationParameters{MaxBandwidth: &theirs}); err != nil {
			t.Fatal(err)
		}
		r.migrateOutStarted(2)
		if sets := r.m.Sets(); !slices.Equal(sets, []uint64{HoldBandwidth, theirs}) {
			t.Fatalf("max-bandwidth set to %v, want the hold then only the operator's %d", sets, theirs)
		}
	})
}

// migrateOutStarted is migrateOut for a migration already started.
func (r *migrationRig) migrateOutStarted(n int) *attest.Result {
	r.t.Helper()
	select {
	case <-r.m.Done():
	case <-time.After(30 * time.Second):
		r.t.Fatalf("the migration did not complete (max-bandwidth %d, sets %v)", r.m.MaxBandwidth(), r.m.Sets())
	}
	es := r.waitReports(n)
	return r.verify(es[n-1])
}

// TestMigrationHoldTooLate: QEMU applies the hold only after the bulk
// transfer is over (a slow monitor): the report says the evidence was not
// obtained, and why, at once; max-bandwidth still goes back.
func TestMigrationHoldTooLate(t *testing.T) {
	r := newMigrationRig(t, func(o *Options) { o.AgentTimeout = time.Minute })
	r.qemu.Delay("migrate-set-parameters", 3*time.Second) // longer than the whole migration
	out := r.migrateOut(2)
	if out.Guest != nil || out.Report.Host.Detail != errSourceStopped.Error() ||
		!strings.HasPrefix(out.Report.Host.Facts["migration_hold"], "too late") {
		t.Fatalf("migrate-out: agent %q (%s), facts %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts)
	}
	waitFor(t, func() bool { return len(r.m.Sets()) == 2 })
	r.restored()
}

// TestMigrationHoldUnanswered: QEMU applies the hold but answers only
// after the hold's command timeout. The hold counts as in force: the
// migration waits for the agent, and max-bandwidth goes back after it.
func TestMigrationHoldUnanswered(t *testing.T) {
	r := newMigrationRig(t, nil)
	r.pace.setDelay(0) // the hold, not the agent, is what this is about
	first := true
	r.qemu.Handle("migrate-set-parameters", func(args json.RawMessage) (any, string, string) {
		var p struct {
			MaxBandwidth uint64 `json:"max-bandwidth"`
		}
		json.Unmarshal(args, &p)
		r.m.SetMaxBandwidth(p.MaxBandwidth)
		if first {
			first = false
			time.Sleep(holdCommandTimeout + time.Second) // QEMU stuck after applying it
		}
		return nil, "", ""
	})
	out := r.migrateOut(2)
	if out.Guest == nil || !strings.HasPrefix(out.Report.Host.Facts["migration_hold"], "unanswered") {
		t.Fatalf("migrate-out: agent %q (%s), facts %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts)
	}
	r.restored()
}

// TestMigrationLeftoverHold: a daemon that died holding a migration left
// max-bandwidth at HoldBandwidth; the next one releases it when it
// connects.
func TestMigrationLeftoverHold(t *testing.T) {
	r := newRig(t)
	r.sup.Close()
	m := r.qemu.EnableMigration(qmptest.MigrationOptions{MaxBandwidth: HoldBandwidth})
	r.qemu.DropConnections()
	r.start()
	waitFor(t, func() bool { return m.MaxBandwidth() == leftoverBandwidth })
}

// TestMigrationNotHeld: a migration of a paused guest, or of a guest whose
// agent's port is not open, is not held (nobody could answer), and its
// report does not wait for the agent.
func TestMigrationNotHeld(t *testing.T) {
	t.Run("paused", func(t *testing.T) {
		r := newMigrationRig(t, func(o *Options) { o.AgentTimeout = time.Minute })
		r.qemu.Inject("STOP", nil)
		out := r.migrateOut(2)
		if out.Guest != nil || out.Report.Host.Detail != errSourceStopped.Error() || out.Report.Host.Facts["migration_hold"] != "not held: the guest is not running" {
			t.Fatalf("migrate-out of a paused guest: agent %q (%s), facts %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts)
		}
		if sets := r.m.Sets(); len(sets) != 0 {
			t.Errorf("max-bandwidth set to %v", sets)
		}
	})
	t.Run("port closed", func(t *testing.T) {
		r := newMigrationRig(t, func(o *Options) { o.AgentTimeout = 500 * time.Millisecond })
		r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": false})
		out := r.migrateOut(2)
		if out.Guest != nil || out.Report.Host.Facts["migration_hold"] != "not held: the agent's port is not open" {
			t.Fatalf("migrate-out with the port closed: agent %q (%s), facts %v", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts)
		}
		if sets := r.m.Sets(); len(sets) != 0 {
			t.Errorf("max-bandwidth set to %v", sets)
		}
	})
}
