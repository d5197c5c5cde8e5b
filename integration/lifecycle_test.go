//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/internal/tinyvm"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/qmp"
)

// TestLifecycle runs the demo's lifecycle on real QEMU VMs and checks, as
// assertions, what the demo shows.
func TestLifecycle(t *testing.T) {
	root, _ := filepath.Abs("..")
	agent := filepath.Join(imageDir, "root", "bin", "hvmon") // built by TestMain
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{Agent: agent, ModuleRoot: root, Periodic: 3 * time.Second,
		Log: hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info})})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, log.String())
	}
	want := []attest.Event{attest.EventBoot, attest.EventPeriodic, attest.EventMigrateOut, attest.EventMigrateIn,
		attest.EventSnapshot, attest.EventOnDemand, attest.EventRestore, attest.EventShutdown}
	// On a loaded machine the source's periodic timer can fire more than
	// once before the migration starts: one or more periodic reports.
	var got []attest.Event
	for _, r := range res.Reports {
		if e := r.Entry.Event; e != attest.EventPeriodic || len(got) == 0 || got[len(got)-1] != e {
			got = append(got, e)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events = %v, want %v", got, want)
		}
	}
	vs, err := demo.Verify(res)
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[attest.Event]demo.Verdict{}
	for _, v := range vs {
		byEvent[v.Report.Entry.Event] = v
		if v.Report.Entry.Event == attest.EventShutdown {
			if !errors.Is(v.Err, attest.ErrIncomplete) || v.Result.Report.Host.Agent != "none" {
				t.Errorf("shutdown report: %v, agent %q", v.Err, v.Result.Report.Host.Agent)
			}
			continue
		}
		if v.Err != nil {
			t.Errorf("%s report: %v", v.Report.Entry.Event, v.Err)
		}
		if v.Guest == nil || v.Guest.Hardware == nil || v.Guest.Hardware.Type != "simulated-sev-snp" {
			// Every check below reads the guest evidence: stop here.
			t.Fatalf("%s report carries no simulated SEV-SNP guest evidence (agent %q: %s)", v.Report.Entry.Event,
				v.Result.Report.Host.Agent, v.Result.Report.Host.Detail)
		}
	}
	// The chain travelled with the VM: the destination's first guest
	// evidence links to the source's last.
	out, in := byEvent[attest.EventMigrateOut], byEvent[attest.EventMigrateIn]
	if out.Guest == nil || out.Result == nil || out.Result.GuestHash == nil || in.Guest == nil {
		t.Fatalf("migrate-out evidence %v, migrate-in evidence %v: the handover cannot be checked", out.Guest != nil, in.Guest != nil)
	}
	if in.Guest.Prev == nil || *in.Guest.Prev != *out.Result.GuestHash || in.Guest.Seq != out.Guest.Seq+1 {
		t.Errorf("migrate-in guest prev %v seq %d, want %s and %d", in.Guest.Prev, in.Guest.Seq, out.Result.GuestHash, out.Guest.Seq+1)
	}
	if out.Report.Host != "hv-a" || in.Report.Host != "hv-b" || in.Report.Entry.Seq != 0 {
		t.Errorf("host handover: out on %s, in on %s with host seq %d", out.Report.Host, in.Report.Host, in.Report.Entry.Seq)
	}
	// Tampering shows as drift of the weights, and of nothing else.
	od := byEvent[attest.EventOnDemand]
	if len(od.Drifted) != 1 || od.Drifted[0] != "weights" {
		t.Errorf("on-demand drift = %v, want [weights]", od.Drifted)
	}
	page := int64(demo.TamperOffset / measure.PageSize)
	if p := od.Pages["weights"]; len(p) != 1 || p[0] != (measure.PageRange{First: page, Last: page}) {
		t.Errorf("drift names pages %v, want page %d", p, page)
	}
	// The restore reveals the rollback: the guest chain goes back to the
	// snapshot's point — a seq rewind and a fork (two evidences with one prev).
	snap, rest := byEvent[attest.EventSnapshot], byEvent[attest.EventRestore]
	if rest.Guest.Seq > od.Guest.Seq || rest.Guest.Seq != snap.Guest.Seq || *rest.Guest.Prev != *snap.Guest.Prev {
		t.Errorf("restore guest seq %d prev %v; on-demand seq %d; snapshot seq %d prev %v: no visible rollback",
			rest.Guest.Seq, rest.Guest.Prev, od.Guest.Seq, snap.Guest.Seq, snap.Guest.Prev)
	}
	if len(rest.Drifted) != 0 {
		t.Errorf("after restoring the untampered state, drift = %v", rest.Drifted)
	}
}

// faultsAgentTimeout bounds one agent answer in TestFaults. Under TCG with
// every core busy the guest's agent takes about 6 s to measure its five
// regions; the frozen-agent step waits this long.
const faultsAgentTimeout = 30 * time.Second

// TestFaults: the agent killed inside the guest yields a report that says
// so; QEMU killed in the middle of an attestation leaves the supervisor
// running, and it reports again once a VM is back on the same sockets.
func TestFaults(t *testing.T) {
	dir := t.TempDir()
	vm := bootVM(t)
	store, err := host.NewFileStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := attest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := host.New(host.Options{Signer: key, HostName: "hv-f", Store: store, Evidence: evidenceVerifier(t), AgentTimeout: faultsAgentTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	hostRegion := host.HostRegion{ID: "low-mem", Address: 0x100000, Size: 64 << 10}
	if err := sup.Add(context.Background(), host.VMConfig{Name: "vm-f", QMP: vm.QMPPath, Agent: vm.AgentPath, HostRegions: []host.HostRegion{hostRegion}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	check := func(e host.Entry) *attest.Inspection {
		b, _, err := store.Get(ctx, e.Hash)
		if err != nil {
			t.Fatal(err)
		}
		in, err := attest.Inspect(b)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	// The init script prints its ready marker as it starts the agent: wait
	// until the agent answers.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		e, err := sup.Attest(ctx, "vm-f", attest.EventOnDemand, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := check(e)
		if len(in.Report.Claims) != 1 || in.Report.Claims[0].Region.ID != "low-mem" || in.Report.Claims[0].Platform != "host" {
			t.Fatalf("host-measured claim through QEMU's pmemsave missing: %+v (%s)", in.Report.Claims, in.Report.Host.Facts["host_measure_error"])
		}
		if in.Report.Host.Agent == "ok" && in.Guest != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never answered: %q %s", in.Report.Host.Agent, in.Report.Host.Detail)
		}
	}
	if status, err := vm.Run(ctx, "kill -STOP $(pidof hvmon)"); err != nil || status != 0 {
		t.Fatalf("stopping the agent: %d %v", status, err)
	}
	e, err := sup.Attest(ctx, "vm-f", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatalf("report with a frozen agent: %v", err)
	}
	if in := check(e); (in.Report.Host.Agent != "timeout" && in.Report.Host.Agent != "unavailable") || in.Guest != nil {
		t.Errorf("frozen agent: report says agent %q (%s)", in.Report.Host.Agent, in.Report.Host.Detail)
	}
	vm.Run(ctx, "kill -KILL $(pidof hvmon)")
	e, err = sup.Attest(ctx, "vm-f", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in := check(e); in.Report.Host.Agent == "ok" {
		t.Errorf("killed agent: report says agent ok")
	}
	// Kill QEMU while an attestation is in flight.
	done := make(chan error, 1)
	go func() {
		_, err := sup.Attest(ctx, "vm-f", attest.EventPeriodic, nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	vm.Kill()
	if err := <-done; err != nil {
		t.Logf("attestation during QEMU's death: %v", err)
	}
	// A new QEMU on the same sockets: the supervisor follows it again.
	vm2, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: vm.Dir, Log: vmLog})
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Kill()
	if err := vm2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		es, err := store.List(ctx, host.Query{VM: "vm-f", Event: attest.EventBoot})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 1 {
			if in := check(es[0]); in.Report.Host.Agent != "ok" {
				t.Errorf("boot after QEMU restart: agent %q", in.Report.Host.Agent)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no boot report after QEMU came back")
		}
	}
}

// TestEventLatency measures event -> stored, signed report with a real
// guest under QEMU, excluding region measurement (the agent measures one
// page), over 60 events, and reports p50 and p99. It starts from the boot
// report (the agent's first attest, which the opening of its port
// triggers): a request made before the agent runs waits for it to start,
// which is start-up, not latency. It asserts only that every event yields a
// report with guest evidence. BenchmarkEventLatency (make bench-latency)
// has the steps and a baseline.
func TestEventLatency(t *testing.T) {
	vm := bootVM(t)
	dir, _ := os.MkdirTemp("", "hvmon-l")
	defer os.RemoveAll(dir)
	store, _ := host.NewFileStore(filepath.Join(dir, "store"))
	key, _ := attest.GenerateKey(nil)
	var boot time.Duration
	sup, err := host.New(host.Options{Signer: key, HostName: "hv-l", Store: store, Evidence: evidenceVerifier(t),
		Trace: func(tm host.Timing) {
			if tm.Event == attest.EventBoot {
				boot = tm.Total
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	if err := sup.Add(context.Background(), host.VMConfig{Name: "vm-l", QMP: vm.QMPPath, Agent: vm.AgentPath, Regions: []string{"tiny"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	waitBootReport(t, ctx, store, vm)
	var lat []time.Duration
	for len(lat) < 60 {
		start := time.Now()
		e, err := sup.Attest(ctx, "vm-l", attest.EventPeriodic, nil)
		d := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := store.Get(ctx, e.Hash)
		if err != nil {
			t.Fatal(err)
		}
		in, err := attest.Inspect(b)
		if err != nil {
			t.Fatal(err)
		}
		if in.Guest == nil {
			t.Fatalf("no guest evidence: agent %s: %s", in.Report.Host.Agent, in.Report.Host.Detail)
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1)+0.5)] }
	t.Logf("event -> stored signed report (one-page region, %s, simulated SEV-SNP): p50 %s, p99 %s, min %s, max %s (n=%d); the boot report (first attest, cold) %s",
		vm.Accel, p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat), boot.Round(time.Millisecond))
}

// TestMigrationDowntime migrates the guest between two QEMUs on loopback
// twice — without hvmon, then with a supervisor attached to both ends —
// and reports QEMU's downtime figures side by side. hvmon attests during
// the migration (migrate-out, holding the migration until the agent
// answered) and after it (migrate-in). It asserts that both migrations
// complete, and that with hvmon both reports carry guest evidence, the
// migrate-in evidence linked to the migrate-out evidence. Downtime is only
// reported (BenchmarkMigrationUnderLoad compares it under load).
func TestMigrationDowntime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	migrate := func(attach bool) qmp.MigrationInfo {
		dir, err := os.MkdirTemp("", "hvmon-m")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sdir, ddir := filepath.Join(dir, "s"), filepath.Join(dir, "d")
		for _, d := range []string{sdir, ddir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		src, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: sdir, ExtraQMP: true, Log: vmLog})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Kill()
		if err := src.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		var followBoth func(*tinyvm.VM)
		var store *host.FileStore
		var key *attest.PrivateKey
		if attach {
			if store, err = host.NewFileStore(filepath.Join(dir, "store")); err != nil {
				t.Fatal(err)
			}
			if key, err = attest.GenerateKey(nil); err != nil {
				t.Fatal(err)
			}
			sup, err := host.New(host.Options{Signer: key, HostName: "hv", Store: store, Evidence: evidenceVerifier(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer sup.Close()
			// The supervisor uses each QEMU's second QMP socket; the
			// migration is sent on the first, as by a management tool.
			followBoth = func(dst *tinyvm.VM) {
				follow(t, sup, "src", src)
				follow(t, sup, "dst", dst)
			}
		}
		cur := qmpVM{src, qmpDial(t, ctx, src.QMPPath)}
		waitAgentPort(t, ctx, cur) // both runs migrate a guest whose agent is up
		dst, mi := liveMigrateQMP(t, ctx, cur, ddir, followBoth)
		defer dst.vm.Kill()
		if attach {
			out := storedReport(t, store, key, "src", attest.EventMigrateOut)
			in := storedReport(t, store, key, "dst", attest.EventMigrateIn)
			if missing := handover(out, in); missing != "" {
				t.Fatalf("migration with hvmon attached: missing %s", missing)
			}
			if f := out.Report.Host.Facts; f["migration_hold"] != "held" || f["migration_hold_ms"] == "" {
				t.Errorf("migrate-out facts %v: the migration was not held", f)
			}
			t.Logf("migrate-out held the migration %s ms while the agent answered", out.Report.Host.Facts["migration_hold_ms"])
		}
		return mi
	}
	m0 := migrate(false)
	m1 := migrate(true)
	t.Logf("migration of a 256 MiB guest over a unix socket: without hvmon downtime %d ms (total %d ms); with hvmon attached downtime %d ms (total %d ms)",
		m0.Downtime, m0.TotalTime, m1.Downtime, m1.TotalTime)
}

func qmpDial(t testing.TB, ctx context.Context, path string) *qmp.Client {
	t.Helper()
	c := qmp.New(path, qmp.Options{})
	var err error
	for range 50 {
		if err = c.ConnectContext(ctx); err == nil {
			t.Cleanup(func() { c.Disconnect() })
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}
