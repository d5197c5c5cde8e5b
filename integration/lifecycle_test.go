//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/internal/tinyvm"
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
	var got []attest.Event
	for _, r := range res.Reports {
		got = append(got, r.Entry.Event)
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
			t.Errorf("%s report carries no simulated SEV-SNP guest evidence", v.Report.Entry.Event)
		}
	}
	// The chain travelled with the VM: the destination's first guest
	// evidence links to the source's last.
	out, in := byEvent[attest.EventMigrateOut], byEvent[attest.EventMigrateIn]
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

// TestFaults: the agent killed inside the guest yields a report that says
// so; QEMU killed in the middle of an attestation leaves the supervisor
// running, and it reports again once a VM is back on the same sockets.
func TestFaults(t *testing.T) {
	dir, _ := os.MkdirTemp("", "hvmon-f")
	defer os.RemoveAll(dir)
	vm := bootVM(t)
	store, _ := host.NewFileStore(filepath.Join(dir, "store"))
	key, _ := attest.GenerateKey(nil)
	sup, err := host.New(host.Options{Signer: key, HostName: "hv-f", Store: store, Evidence: evidenceVerifier(t), AgentTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	if err := sup.Add(context.Background(), host.VMConfig{Name: "vm-f", QMP: vm.QMPPath, Agent: vm.AgentPath}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	for deadline := time.Now().Add(time.Minute); ; {
		e, err := sup.Attest(ctx, "vm-f", attest.EventOnDemand, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := check(e)
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
	vm2, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: vm.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Kill()
	if err := vm2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		es, _ := store.List(ctx, host.Query{VM: "vm-f", Event: attest.EventBoot})
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
