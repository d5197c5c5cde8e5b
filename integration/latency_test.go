//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/tinyvm"
)

var latencyGap = flag.Duration("latency.gap", 0, "BenchmarkEventLatency: pause between two events")

// dist is a sample of durations.
type dist []time.Duration

func (d dist) q(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func (d dist) String() string {
	r := func(x time.Duration) string {
		if x < 10*time.Millisecond {
			return x.Round(10 * time.Microsecond).String()
		}
		return x.Round(100 * time.Microsecond).String()
	}
	return fmt.Sprintf("p50 %-9s p90 %-9s p99 %-9s max %-9s", r(d.q(0.5)), r(d.q(0.9)), r(d.q(0.99)), r(d.q(1)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// agentSteps matches the agent's per-attest log line on the guest console.
var agentSteps = regexp.MustCompile(`attested: .*vm=(\S+) .*measure_us=(\d+) evidence_us=(\d+) sign_us=(\d+)`)

// guestSteps parses the agent's step durations (guest clock) for requests
// naming vm from console output.
func guestSteps(console, vm string) (measure, evidence, sign dist) {
	us := func(s string) time.Duration { n, _ := strconv.Atoi(s); return time.Duration(n) * time.Microsecond }
	for _, m := range agentSteps.FindAllStringSubmatch(console, -1) {
		if m[1] == vm {
			measure, evidence, sign = append(measure, us(m[2])), append(evidence, us(m[3])), append(sign, us(m[4]))
		}
	}
	return measure, evidence, sign
}

// sched is what the scheduler accounted to each thread of a process so far
// (/proc/PID/task/*/schedstat): the time it ran on a CPU, and the time it
// was ready to run but waited for one, which is what other load on the
// machine costs it.
type sched map[string]struct{ run, wait time.Duration }

func schedOf(tb testing.TB, pid int) sched {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		tb.Fatalf("no schedstat for process %d: %v", pid, err)
	}
	s := sched{}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that ended
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			tb.Fatalf("%s: %q", p, b)
		}
		run, _ := strconv.ParseInt(f[0], 10, 64)
		wait, _ := strconv.ParseInt(f[1], 10, 64)
		s[p] = struct{ run, wait time.Duration }{time.Duration(run), time.Duration(wait)}
	}
	return s
}

// since returns the CPU time all threads used since s0, and the wait of the
// thread that ran most (QEMU's vCPU thread, in a request).
func (s sched) since(s0 sched) (run, busiestWait time.Duration) {
	var most time.Duration
	for p, t := range s {
		r, w := t.run-s0[p].run, t.wait-s0[p].wait
		run += r
		if r > most {
			most, busiestWait = r, w
		}
	}
	return run, busiestWait
}

// cost records, per request, the CPU time QEMU (the guest) and this
// process (the supervisor, or the baseline's client) used, and how long
// the vCPU thread waited for a CPU.
type cost struct {
	guestCPU, hostCPU, both, vcpuWait dist
}

func (c *cost) add(guest, guest0, self, self0 sched) {
	g, w := guest.since(guest0)
	h, _ := self.since(self0)
	c.guestCPU, c.hostCPU, c.both, c.vcpuWait = append(c.guestCPU, g), append(c.hostCPU, h), append(c.both, g+h), append(c.vcpuWait, w)
}

// BenchmarkEventLatency measures event -> stored, signed report with a real
// guest under QEMU and a one-page region (so that measurement is not what
// is measured), and each step of it, from the boot report on: b.N on-demand
// events, *latencyGap apart, each answered by the supervisor with a stored
// report that carries guest evidence.
//
// The baseline, in the same run and on the same guest, is the agent's
// attest round trip alone (a client on the agent socket, the same request,
// nothing else): the part of a report the host cannot make faster. The
// two alternate in blocks of 25, so that both see the same load.
//
// Reported: p50, p99 and max of both; the per-step breakdown (host steps
// from host.Options.Trace, guest steps from the agent's log line); and,
// from the scheduler's accounts, the CPU time each request cost QEMU (the
// guest's work) and this process (the supervisor's), and how long QEMU's
// vCPU thread waited for a CPU: figures that other load on a shared
// machine disturbs less than wall times.
func BenchmarkEventLatency(b *testing.B) {
	vm := bootVM(b)
	dir, err := os.MkdirTemp("", "hvmon-l")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := host.NewFileStore(filepath.Join(dir, "store"))
	if err != nil {
		b.Fatal(err)
	}
	key, _ := attest.GenerateKey(nil)
	var mu sync.Mutex
	var timings []host.Timing
	sup, err := host.New(host.Options{Signer: key, HostName: "hv-l", Store: store, Evidence: evidenceVerifier(b),
		Trace: func(t host.Timing) { mu.Lock(); timings = append(timings, t); mu.Unlock() }})
	if err != nil {
		b.Fatal(err)
	}
	defer sup.Close()
	cfg := host.VMConfig{Name: "vm-l", QMP: vm.QMPPath, Agent: vm.AgentPath, Regions: []string{"tiny"}}
	if err := sup.Add(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	waitBootReport(b, ctx, store, vm)
	// The worker traces a report just after storing it.
	for booted := false; !booted; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		for _, t := range timings {
			if t.Event == attest.EventBoot {
				booted = true
				b.Logf("boot report (the agent's first attest, cold): %s: agent connect %s, agent %s",
					t.Total.Round(time.Millisecond), t.AgentConnect.Round(time.Millisecond), t.Agent.Round(time.Millisecond))
			}
		}
		if booted {
			timings = nil
		}
		mu.Unlock()
		if ctx.Err() != nil {
			b.Fatal("the boot report was never traced")
		}
	}

	var hv, base dist
	var hvCost, baseCost cost
	pid, self := vm.Cmd.Process.Pid, os.Getpid()
	console := len(vm.Console())
	const block = 25
	const baselineVM = "vm-l-baseline" // the agent logs it: its steps apart
	baselineBlock := func() {
		// The supervisor lets go of the agent's socket while it is not
		// following the VM (one host connection at a time).
		if err := sup.Remove(cfg.Name); err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := sup.Add(ctx, cfg); err != nil {
				b.Fatal(err)
			}
		}()
		c, err := net.Dial("unix", vm.AgentPath)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ac := agentproto.NewClient(c)
		if err := ac.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		for range block {
			time.Sleep(*latencyGap)
			n := make([]byte, attest.NonceSize)
			rand.Read(n)
			g0, s0 := schedOf(b, pid), schedOf(b, self)
			start := time.Now()
			res, err := ac.Attest(ctx, agentproto.AttestArgs{Nonce: n, Event: attest.EventOnDemand, VM: baselineVM, Regions: cfg.Regions})
			d := time.Since(start)
			baseCost.add(schedOf(b, pid), g0, schedOf(b, self), s0)
			if err != nil {
				b.Fatalf("baseline: agent attest: %v", err)
			}
			if len(res.Evidence) == 0 {
				b.Fatal("baseline: no evidence")
			}
			base = append(base, d)
		}
	}
	i := 0
	for b.Loop() {
		if i%block == 0 {
			b.StopTimer()
			baselineBlock()
			// The worker's first report after Add dials and syncs the
			// agent: leave that out, as the boot report has done it once.
			if _, err := sup.Attest(ctx, cfg.Name, attest.EventOnDemand, nil); err != nil {
				b.Fatal(err)
			}
			mu.Lock()
			timings = timings[:len(timings)-1]
			mu.Unlock()
			b.StartTimer()
		}
		i++
		time.Sleep(*latencyGap)
		g0, s0 := schedOf(b, pid), schedOf(b, self)
		start := time.Now()
		_, err := sup.Attest(ctx, cfg.Name, attest.EventOnDemand, nil)
		d := time.Since(start)
		hvCost.add(schedOf(b, pid), g0, schedOf(b, self), s0)
		if err != nil {
			b.Fatalf("event %d: %v", i, err)
		}
		hv = append(hv, d)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	names := []string{"queued", "query-status*", "agent connect", "agent attest", "check evidence", "host regions", "sign", "store"}
	steps := make([]dist, len(names))
	for _, t := range timings {
		if t.Err != nil {
			b.Fatalf("%s report failed: %v", t.Event, t.Err)
		}
		if t.Agent == 0 {
			b.Fatalf("%s report made without asking the agent", t.Event)
		}
		for j, d := range []time.Duration{t.Queued, t.Status, t.AgentConnect, t.Agent, t.Check, t.HostRegions, t.Sign, t.Store} {
			steps[j] = append(steps[j], d)
		}
	}
	es, err := store.List(ctx, host.Query{VM: cfg.Name, Event: attest.EventOnDemand})
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range es {
		raw, _, err := store.Get(ctx, e.Hash)
		if err != nil {
			b.Fatal(err)
		}
		in, err := attest.Inspect(raw)
		if err != nil {
			b.Fatal(err)
		}
		if in.Guest == nil {
			b.Fatalf("report seq %d carries no guest evidence: agent %s, %s", e.Seq, in.Report.Host.Agent, in.Report.Host.Detail)
		}
	}
	out := vm.Console()[console:]
	gm, ge, gs := guestSteps(out, cfg.Name)
	bm, be, bs := guestSteps(out, baselineVM)
	b.Logf("event -> stored signed report (%s, one-page region, simulated SEV-SNP, events %s apart), n=%d:", vm.Accel, *latencyGap, len(hv))
	b.Logf("  hvmon            %s", hv)
	b.Logf("  baseline: agent  %s (n=%d, the attest round trip alone, same run)", base, len(base))
	b.Logf("  host steps (* beside the agent round trip, not after it):")
	for j, n := range names {
		b.Logf("    %-15s %s", n, steps[j])
	}
	b.Logf("  guest steps (guest clock; n=%d / %d):", len(gm), len(bm))
	for _, l := range []struct {
		name   string
		hv, bl dist
	}{{"measure", gm, bm}, {"evidence", ge, be}, {"sign", gs, bs}} {
		b.Logf("    %s:", l.name)
		b.Logf("      hvmon        %s", l.hv)
		b.Logf("      baseline     %s", l.bl)
	}
	b.Logf("  per request, from the scheduler's accounts, which other load disturbs less:")
	for _, l := range []struct {
		name   string
		hv, bl dist
	}{
		{"QEMU CPU (the guest's work)", hvCost.guestCPU, baseCost.guestCPU},
		{"host CPU (this process)", hvCost.hostCPU, baseCost.hostCPU},
		{"both", hvCost.both, baseCost.both},
		{"vCPU thread waiting for a CPU", hvCost.vcpuWait, baseCost.vcpuWait},
	} {
		b.Logf("    %s:", l.name)
		b.Logf("      hvmon        %s", l.hv)
		b.Logf("      baseline     %s", l.bl)
	}
	b.ReportMetric(ms(hv.q(0.5)), "p50-ms")
	b.ReportMetric(ms(hv.q(0.99)), "p99-ms")
	b.ReportMetric(ms(hv.q(1)), "max-ms")
	b.ReportMetric(ms(base.q(0.5)), "base-p50-ms")
	b.ReportMetric(ms(base.q(0.99)), "base-p99-ms")
	b.ReportMetric(ms(base.q(1)), "base-max-ms")
	b.ReportMetric(ms(hvCost.both.q(0.99)), "p99-cpu-ms")
	b.ReportMetric(ms(baseCost.both.q(0.99)), "base-p99-cpu-ms")
}

// waitBootReport waits for the boot report that the agent's port opening
// triggers, and fails unless it carries guest evidence.
func waitBootReport(tb testing.TB, ctx context.Context, store host.Store, vm *tinyvm.VM) host.Entry {
	tb.Helper()
	for {
		es, err := store.List(ctx, host.Query{Event: attest.EventBoot})
		if err != nil {
			tb.Fatal(err)
		}
		if len(es) > 0 {
			raw, _, err := store.Get(ctx, es[0].Hash)
			if err != nil {
				tb.Fatal(err)
			}
			in, err := attest.Inspect(raw)
			if err != nil {
				tb.Fatal(err)
			}
			if in.Guest == nil {
				tb.Fatalf("boot report without guest evidence: agent %s, %s", in.Report.Host.Agent, in.Report.Host.Detail)
			}
			return es[0]
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("no boot report: %v", ctx.Err())
		case <-vm.Exited():
			tb.Fatalf("QEMU exited before the boot report")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
