package host

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// The sequences below are the events libvirt 9.0 delivered on this
// project's test machine (lifecycle events from the Go binding, QEMU
// monitor events from DomainQemuMonitorEventRegister) for each operation,
// in order; the migration sequences follow libvirt's documented order for
// a live migration's source and destination.

type step struct {
	event string
	data  map[string]any
}

func lcEv(event, detail string, extra ...string) step {
	d := map[string]any{"event": event, "detail": detail}
	for i := 0; i+1 < len(extra); i += 2 {
		d[extra[i]] = extra[i+1]
	}
	return step{EventLibvirtLifecycle, d}
}

func qmpEv(name string, kv ...any) step {
	d := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i].(string)] = kv[i+1]
	}
	return step{name, d}
}

func libvirtRig(t *testing.T) *rig {
	t.Helper()
	r := newRigWith(t, func(c *VMConfig) {
		c.Source, c.Agent, c.AgentPortID = SourceLibvirt, "", ""
	})
	// libvirt lists a snapshot once the guest resumed; an older one
	// must not be taken for it.
	old := time.Now().Add(-time.Hour).Unix()
	r.qemu.Handle(CommandLibvirtSnapshots, func(json.RawMessage) (any, string, string) {
		return []map[string]any{{"name": "s0", "creation_time": old}, {"name": "s1", "creation_time": time.Now().Unix()}}, "", ""
	})
	return r
}

// domain is the transport's description of the instance with libvirt id.
func (r *rig) domain(id int, state string, agentOpen bool) step {
	return step{EventLibvirtDomain, map[string]any{"id": float64(id), "state": state, "agent_path": r.agent.Path,
		"agent_alias": "channel0", "agent_open": agentOpen, "facts": map[string]any{"domain_xml_sha3": "ab12"}}}
}

func (r *rig) play(steps ...step) {
	for _, s := range steps {
		r.qemu.Inject(s.event, s.data)
	}
}

func (r *rig) bootLibvirt(id int) {
	r.play(r.domain(-1, "shutoff", false),
		qmpEv("RESUME"), lcEv("resumed", "unpaused"),
		r.domain(id, "running", false), lcEv("started", "booted"),
		qmpEv("VSERPORT_CHANGE", "id", "channel0", "open", true))
}

func events(es []Entry) []attest.Event {
	var out []attest.Event
	for _, e := range es {
		out = append(out, e.Event)
	}
	return out
}

// expectExactly waits for the worker to take in the events injected so far
// and checks that the store holds exactly want.
func (r *rig) expectExactly(want ...attest.Event) []Entry {
	r.t.Helper()
	r.waitReports(len(want))
	time.Sleep(100 * time.Millisecond)
	es, _ := r.store.List(context.Background(), Query{VM: "vm-1"})
	if got := events(es); !slices.Equal(got, want) {
		r.t.Fatalf("reports = %v, want %v", got, want)
	}
	return es
}

func TestLibvirtLifecycle(t *testing.T) {
	r := libvirtRig(t)
	m := r.qemu.EnableMigration(qmptest.MigrationOptions{}) // the commands a hold would use
	r.bootLibvirt(5)
	es := r.expectExactly(attest.EventBoot)
	boot := r.verify(es[0])
	if boot.Guest == nil || boot.Report.Host.Facts["domain_xml_sha3"] != "ab12" {
		t.Fatalf("boot report: agent %q facts %v", boot.Report.Host.Agent, boot.Report.Host.Facts)
	}

	// virsh snapshot-create-as (internal snapshot of a running domain):
	// savevm pauses, transfers state, resumes.
	r.play(qmpEv("STOP"), lcEv("suspended", "paused"),
		qmpEv("MIGRATION", "status", "setup"), qmpEv("MIGRATION_PASS", "pass", 1.0), qmpEv("MIGRATION", "status", "completed"),
		qmpEv("RESUME"), lcEv("resumed", "unpaused"))
	es = r.expectExactly(attest.EventBoot, attest.EventSnapshot)
	snap := r.verify(es[1])
	if snap.Guest == nil || snap.Report.Host.Facts["snapshot"] != "s1" || snap.Report.Host.Facts["libvirt_event"] != "resumed/unpaused" {
		t.Fatalf("snapshot report: agent %q facts %v", snap.Report.Host.Agent, snap.Report.Host.Facts)
	}

	// virsh snapshot-revert: libvirt stops the QEMU and starts another
	// with -loadvm. The stop is not a shutdown; the port opening is not a
	// boot.
	r.play(lcEv("stopped", "from_snapshot"), r.domain(6, "running", false),
		lcEv("started", "from_snapshot"), qmpEv("RESUME"), lcEv("resumed", "from_snapshot"),
		qmpEv("VSERPORT_CHANGE", "id", "channel0", "open", true), lcEv("defined", "from_snapshot"))
	es = r.expectExactly(attest.EventBoot, attest.EventSnapshot, attest.EventRestore)
	rev := r.verify(es[2])
	if rev.Guest == nil || rev.Report.Host.Facts["restore_from"] != "from_snapshot" {
		t.Fatalf("revert report: agent %q facts %v", rev.Report.Host.Agent, rev.Report.Host.Facts)
	}

	// virsh save: paused, state to a file, QEMU ends. No agent to ask.
	r.play(qmpEv("STOP"), lcEv("suspended", "paused"), qmpEv("MIGRATION", "status", "setup"),
		qmpEv("MIGRATION", "status", "active"), qmpEv("MIGRATION", "status", "completed"), lcEv("stopped", "saved"))
	es = r.expectExactly(attest.EventBoot, attest.EventSnapshot, attest.EventRestore, attest.EventSnapshot)
	saved := r.verify(es[3])
	if saved.Guest != nil || saved.Report.Host.Agent != "none" || saved.Report.Host.Facts["libvirt_event"] != "stopped/saved" {
		t.Fatalf("save report: agent %q facts %v", saved.Report.Host.Agent, saved.Report.Host.Facts)
	}

	// virsh restore: the incoming state transfer comes before "started".
	r.play(qmpEv("MIGRATION", "status", "setup"), qmpEv("MIGRATION", "status", "active"), qmpEv("MIGRATION", "status", "completed"),
		r.domain(7, "running", false), lcEv("started", "restored"), qmpEv("RESUME"), lcEv("resumed", "from_snapshot"),
		qmpEv("VSERPORT_CHANGE", "id", "channel0", "open", true))
	es = r.expectExactly(attest.EventBoot, attest.EventSnapshot, attest.EventRestore, attest.EventSnapshot, attest.EventRestore)
	if res := r.verify(es[4]); res.Guest == nil || res.Report.Host.Facts["restore_from"] != "restored" {
		t.Fatalf("restore report: agent %q facts %v", res.Report.Host.Agent, res.Report.Host.Facts)
	}

	// virsh destroy: one shutdown report, not one per event.
	r.play(qmpEv("SHUTDOWN", "guest", false, "reason", "host-signal"), lcEv("shutdown", "host"), lcEv("stopped", "destroyed"))
	es = r.expectExactly(attest.EventBoot, attest.EventSnapshot, attest.EventRestore, attest.EventSnapshot, attest.EventRestore, attest.EventShutdown)
	if res := r.verify(es[5]); res.Report.Host.Facts["shutdown_reason"] != "destroyed" {
		t.Fatalf("shutdown facts %v", res.Report.Host.Facts)
	}
	// None of these state transfers ran while the guest did: none was
	// held (migrate_hold.go).
	if sets := m.Sets(); len(sets) != 0 {
		t.Errorf("max-bandwidth set to %v: a paused transfer was held", sets)
	}
}

func TestLibvirtMigration(t *testing.T) {
	t.Run("source", func(t *testing.T) {
		// A live migration: held while the guest still runs until the
		// agent (slower than the whole migration) answered; the source's
		// end is not a shutdown.
		r := libvirtRig(t)
		p := pace(r)
		m := r.qemu.EnableMigration(qmptest.MigrationOptions{Switchover: func() { p.setFrozen(true) }})
		r.bootLibvirt(3)
		r.expectExactly(attest.EventBoot)
		p.setDelay(agentDelay)
		m.Start()
		<-m.Done()
		r.play(lcEv("suspended", "migrated"), lcEv("stopped", "migrated"))
		es := r.expectExactly(attest.EventBoot, attest.EventMigrateOut)
		if res := r.verify(es[1]); res.Guest == nil || res.Report.Host.Facts["migration_hold"] != "held" {
			t.Fatalf("migrate-out: agent %q (%s), facts %v", res.Report.Host.Agent, res.Report.Host.Detail, res.Report.Host.Facts)
		}
		if sets := m.Sets(); !slices.Equal(sets, []uint64{HoldBandwidth, qmptest.DefaultMaxBandwidth}) {
			t.Fatalf("max-bandwidth set to %v", sets)
		}
	})
	t.Run("destination", func(t *testing.T) {
		r := libvirtRig(t)
		r.play(r.domain(-1, "shutoff", false), r.domain(9, "paused", false), lcEv("started", "migrated"),
			qmpEv("MIGRATION", "status", "active"), qmpEv("MIGRATION", "status", "completed"),
			qmpEv("RESUME"), lcEv("resumed", "migrated"), qmpEv("VSERPORT_CHANGE", "id", "channel0", "open", true))
		es := r.expectExactly(attest.EventMigrateIn)
		if res := r.verify(es[0]); res.Guest == nil || res.Report.Host.Facts["libvirt_event"] != "resumed/migrated" {
			t.Fatalf("migrate-in: agent %q facts %v", res.Report.Host.Agent, res.Report.Host.Facts)
		}
	})
	t.Run("paused source", func(t *testing.T) {
		// An offline migration of a paused guest has no running phase: the
		// hand-over itself is the migrate-out, without evidence.
		r := libvirtRig(t)
		r.bootLibvirt(4)
		r.expectExactly(attest.EventBoot)
		r.play(qmpEv("STOP"), lcEv("suspended", "paused"), qmpEv("MIGRATION", "status", "setup"),
			qmpEv("MIGRATION", "status", "completed"), lcEv("stopped", "migrated"))
		r.expectExactly(attest.EventBoot, attest.EventMigrateOut)
	})
}

// TestLibvirtReconnect: what happened while libvirtd was away is reported
// from the description of the domain the transport sends on reconnecting.
func TestLibvirtReconnect(t *testing.T) {
	t.Run("stopped while away", func(t *testing.T) {
		r := libvirtRig(t)
		r.bootLibvirt(5)
		r.expectExactly(attest.EventBoot)
		r.play(r.domain(-1, "shutoff", false))
		// libvirtd, back, may still send its own event for that stop: it
		// is not a second shutdown.
		r.play(lcEv("stopped", "failed"))
		es := r.expectExactly(attest.EventBoot, attest.EventShutdown)
		if res := r.verify(es[1]); res.Report.Host.Facts["shutdown_reason"] != "unobserved" {
			t.Fatalf("facts %v", res.Report.Host.Facts)
		}
	})
	t.Run("restarted while away", func(t *testing.T) {
		r := libvirtRig(t)
		r.bootLibvirt(5)
		r.expectExactly(attest.EventBoot)
		r.play(r.domain(8, "running", true))
		r.expectExactly(attest.EventBoot, attest.EventShutdown, attest.EventBoot)
	})
	t.Run("agent came up while away", func(t *testing.T) {
		r := libvirtRig(t)
		r.play(r.domain(-1, "shutoff", false), r.domain(5, "running", false), lcEv("started", "booted"))
		// The port opened while libvirtd restarted; the description after
		// reconnecting shows it open.
		r.play(r.domain(5, "running", true))
		es := r.expectExactly(attest.EventBoot)
		if res := r.verify(es[0]); res.Guest == nil || res.Report.Host.Facts["observed"] == "" {
			t.Fatalf("boot after reconnect: agent %q facts %v", res.Report.Host.Agent, res.Report.Host.Facts)
		}
	})
	t.Run("unchanged", func(t *testing.T) {
		r := libvirtRig(t)
		r.bootLibvirt(5)
		r.expectExactly(attest.EventBoot)
		r.play(r.domain(5, "running", true))
		r.expectExactly(attest.EventBoot)
	})
}

// TestHookFacts: the hook events the daemon recorded for a VM since its
// previous report are listed in the next report, once.
func TestHookFacts(t *testing.T) {
	j, err := OpenHookJournal(filepath.Join(t.TempDir(), "hooks.jsonl"), HookJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	r := newRigOpts(t, nil, func(o *Options) { o.Hooks = j })
	for _, op := range []string{"prepare", "start", "started"} {
		ev := HookEvent{Message: hook.Message{Driver: "qemu", Args: hook.Args{Object: "vm-1", Op: op, SubOp: "begin", Extra: "-"},
			Domain: hook.Domain{Name: "vm-1", UUID: "uuid-1"}, XMLSHA3: strings.Repeat("ab", 32)}}
		if _, err := j.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	boot := r.verify(r.waitReports(1)[0])
	if f := boot.Report.Host.Facts; f["libvirt_hooks"] != "prepare/begin,start/begin,started/begin" || f["libvirt_hook_xml_sha3"] != strings.Repeat("ab", 32) {
		t.Fatalf("boot facts %v", f)
	}
	e, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := r.verify(e).Report.Host.Facts; f["libvirt_hooks"] != "" {
		t.Fatalf("hooks listed twice: %v", f)
	}
}

// A description of the domain's launch inputs replaces the previous one's
// whole: a kernel since removed or an error since fixed does not linger.
func TestLibvirtLaunchFactsReplaced(t *testing.T) {
	lc := newLibvirtLifecycle("", "")
	at := time.Unix(1700000000, 0)
	lc.describe(map[string]any{"id": float64(1), "state": "running", "facts": map[string]any{
		"launch_security": "sev-snp", "launch_vcpus": "2", "launch_kernel_sha256": "aa", "launch_inputs_error": "x", "domain_xml_sha3": "d"}}, at)
	lc.describe(map[string]any{"id": float64(1), "state": "running", "facts": map[string]any{
		"launch_security": "sev-snp", "launch_vcpus": "4", "launch_expected_measurement": "m"}}, at)
	want := map[string]string{"launch_security": "sev-snp", "launch_vcpus": "4", "launch_expected_measurement": "m", "domain_xml_sha3": "d"}
	if got := lc.facts(); !maps.Equal(got, want) {
		t.Errorf("remembered %v, want %v", got, want)
	}
}
