//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/tinyvm"
	"hvmon.dev/hvmon/qmp"
)

var migrations = flag.Int("migrations", 20, "live migrations per BenchmarkMigrationUnderLoad variant, with hvmon and as many without")

// saturate keeps every core busy with shell busy loops (processes of
// their own, as another tenant's load would be) until the returned stop
// runs.
func saturate(tb testing.TB) (stop func()) {
	var cmds []*exec.Cmd
	for range runtime.NumCPU() {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	tb.Cleanup(stop)
	return stop
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// qmpVM is a QEMU of the ping-pong with the test's own QMP client (hvmon
// gets the second socket).
type qmpVM struct {
	vm *tinyvm.VM
	q  *qmp.Client
}

// liveMigrateQMP moves src to a new QEMU started in dir (which must
// exist, with a short path) over a unix socket, as a management tool
// would on its own QMP connection, and returns the destination and the
// source's query-migrate figures once the migration completed. When
// follow is set, it runs between the destination's start and the
// migration (to attach a supervisor to both ends).
func liveMigrateQMP(tb testing.TB, ctx context.Context, src qmpVM, dir string, follow func(dst *tinyvm.VM)) (qmpVM, qmp.MigrationInfo) {
	tb.Helper()
	dst, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: dir, Accel: src.vm.Accel, Incoming: "defer", ExtraQMP: true, Log: vmLog})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(dst.Kill)
	dq := qmpDial(tb, ctx, dst.QMPPath)
	if follow != nil {
		follow(dst)
	}
	uri := "unix:" + filepath.Join(dir, "mig.sock")
	if err := dq.MigrateIncoming(ctx, uri); err != nil {
		tb.Fatal(err)
	}
	if err := src.q.Migrate(ctx, uri); err != nil {
		tb.Fatal(err)
	}
	for {
		mi, err := src.q.QueryMigrate(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		switch mi.Status {
		case "completed":
			// QEMU says "completed" a moment before it has filled in the
			// times: ask again until they are there.
			if mi.TotalTime > 0 {
				return qmpVM{dst, dq}, mi
			}
		case "failed", "cancelled":
			tb.Fatalf("migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("migration still %s: %v", mi.Status, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitAgentPort waits until the guest has opened the agent's port (the
// agent serves it only after setting up its regions, seconds after the
// guest says it is ready).
func waitAgentPort(tb testing.TB, ctx context.Context, vm qmpVM) {
	tb.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cds, err := vm.q.QueryChardev(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		for _, cd := range cds {
			if cd.FrontendOpen && strings.Contains(cd.Filename, vm.vm.AgentPath) {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the agent did not open its port: %+v", cds)
		}
	}
}

// follow adds a VM to a supervisor and waits until its worker is
// connected and has taken in the connection (migration events on).
func follow(tb testing.TB, sup *host.Supervisor, name string, vm *tinyvm.VM) {
	tb.Helper()
	if err := sup.Add(context.Background(), host.VMConfig{Name: name, QMP: vm.QMP2Path, Agent: vm.AgentPath, Regions: []string{"tiny"}}); err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		for _, s := range sup.VMs() {
			if s.Name == name && s.Connected {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the supervisor did not connect to %s", name)
		}
	}
}

// storedReport waits for vm's first report of event in a store and
// returns it verified. A report without guest evidence is returned too
// (its host observations say why); one that does not verify otherwise,
// or none within the wait, fails the test.
func storedReport(tb testing.TB, store *host.FileStore, key *attest.PrivateKey, vm string, event attest.Event) *attest.Result {
	tb.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		es, err := store.List(ctx, host.Query{VM: vm, Event: event})
		if err != nil {
			tb.Fatal(err)
		}
		if len(es) > 0 {
			b, _, err := store.Get(ctx, es[0].Hash)
			if err != nil {
				tb.Fatal(err)
			}
			return verifyReport(tb, b, key.PublicKey(), es[0].Time, string(event))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no %s report for %s after 3 minutes", event, vm)
		}
	}
}

// verifyReport verifies a signed report as of its time. A report that
// verifies but carries no guest evidence (and so no region) is returned
// with its result; any other failure fails the test.
func verifyReport(tb testing.TB, b []byte, pub *attest.PublicKey, at time.Time, what string) *attest.Result {
	tb.Helper()
	res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{pub}, Now: at, Evidence: evidenceVerifier(tb)})
	if errors.Is(err, attest.ErrIncomplete) && res != nil && res.Report != nil && res.Guest == nil && res.Report.Host.Agent != "ok" {
		return res
	}
	if err != nil {
		tb.Fatalf("%s report does not verify: %v", what, err)
	}
	return res
}

// handover checks one migration's pair of reports: a migrate-out and a
// migrate-in that carry guest evidence, the second linked to the first.
// It returns what is missing ("" when nothing is).
func handover(out, in *attest.Result) string {
	var missing []string
	if out.Guest == nil {
		missing = append(missing, fmt.Sprintf("migrate-out evidence (agent %s: %s; hold %s)", out.Report.Host.Agent, out.Report.Host.Detail, out.Report.Host.Facts["migration_hold"]))
	}
	if in.Guest == nil {
		missing = append(missing, fmt.Sprintf("migrate-in evidence (agent %s: %s)", in.Report.Host.Agent, in.Report.Host.Detail))
	}
	if out.Guest != nil && in.Guest != nil && (in.Guest.Prev == nil || *in.Guest.Prev != *out.GuestHash || in.Guest.Seq != out.Guest.Seq+1) {
		missing = append(missing, "the migrate-in evidence's prev/seq link to the migrate-out evidence")
	}
	return strings.Join(missing, "; ")
}

// migrationFigures collects one variant's figures.
type migrationFigures struct {
	baseDown, baseTotal, hvDown, hvTotal []int64
	lag                                  []int64 // ms from QEMU's MIGRATION event to the hold in force
	outOK, inOK, linked, held            int
	rows                                 []string
}

func (f *migrationFigures) report(b *testing.B, variant string) {
	med := func(v []int64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := slices.Clone(v)
		slices.Sort(s)
		return float64(s[len(s)/2])
	}
	mean := func(v []int64) float64 {
		t := 0.0
		for _, x := range v {
			t += float64(x)
		}
		return t / float64(max(1, len(v)))
	}
	n := len(f.hvDown)
	b.ReportMetric(float64(f.outOK), "out-evidence/"+strconv.Itoa(n))
	b.ReportMetric(float64(f.inOK), "in-evidence/"+strconv.Itoa(n))
	b.ReportMetric(med(f.hvDown), "downtime-p50-ms")
	b.ReportMetric(med(f.baseDown), "baseline-downtime-p50-ms")
	b.ReportMetric(float64(f.held), "held/"+strconv.Itoa(n))
	b.ReportMetric(med(f.hvTotal), "total-p50-ms")
	b.ReportMetric(med(f.baseTotal), "baseline-total-p50-ms")
	var t strings.Builder
	fmt.Fprintf(&t, "\nBenchmarkMigrationUnderLoad/%s: %d live migrations with hvmon following, %d without, in pairs of random order; all %d cores busy with busy loops\n", variant, n, len(f.baseDown), runtime.NumCPU())
	fmt.Fprintf(&t, "%-4s %-22s %-22s %-14s %-8s %-8s %s\n", "#", "without: down/total ms", "with: down/total ms", "hold lag/ms", "out ev", "in ev", "note")
	for _, r := range f.rows {
		t.WriteString(r + "\n")
	}
	fmt.Fprintf(&t, "migrate-out reports with guest evidence: %d/%d; migrate-in: %d/%d; migrate-in linked to migrate-out (guest prev, seq+1): %d/%d\n",
		f.outOK, n, f.inOK, n, f.linked, n)
	fmt.Fprintf(&t, "migration held in time (fact migration_hold = held): %d/%d; from QEMU's MIGRATION event to the hold in force: p50 %.0f ms, max %.0f ms\n",
		f.held, n, med(f.lag), float64(slices.Max(append([]int64{0}, f.lag...))))
	fmt.Fprintf(&t, "downtime ms: with hvmon p50 %.0f mean %.1f; without p50 %.0f mean %.1f\n", med(f.hvDown), mean(f.hvDown), med(f.baseDown), mean(f.baseDown))
	fmt.Fprintf(&t, "total time ms: with hvmon p50 %.0f mean %.1f; without p50 %.0f mean %.1f (the hold adds the agent's time)\n", med(f.hvTotal), mean(f.hvTotal), med(f.baseTotal), mean(f.baseTotal))
	fmt.Print(t.String())
}

func (f *migrationFigures) add(i int, baseDown, baseTotal, hvDown, hvTotal int64, out, in *attest.Result) {
	f.baseDown, f.baseTotal = append(f.baseDown, baseDown), append(f.baseTotal, baseTotal)
	f.hvDown, f.hvTotal = append(f.hvDown, hvDown), append(f.hvTotal, hvTotal)
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	if out.Guest != nil {
		f.outOK++
	}
	if in.Guest != nil {
		f.inOK++
	}
	note := handover(out, in)
	if note == "" {
		f.linked++
	}
	facts := out.Report.Host.Facts
	hold := facts["migration_hold_lag_ms"] + "/" + facts["migration_hold_ms"]
	if facts["migration_hold"] == "held" {
		f.held++
		if lag, err := strconv.ParseInt(facts["migration_hold_lag_ms"], 10, 64); err == nil {
			f.lag = append(f.lag, lag)
		}
	} else {
		hold = facts["migration_hold"]
	}
	f.rows = append(f.rows, fmt.Sprintf("%-4d %-22s %-22s %-14s %-8s %-8s %s", i+1, fmt.Sprintf("%d/%d", baseDown, baseTotal), fmt.Sprintf("%d/%d", hvDown, hvTotal),
		hold, yes(out.Guest != nil), yes(in.Guest != nil), note))
}

// settle is the pause after each migration, so that the next one starts
// from a quiet machine (busy loops aside) whichever went before: the
// destination's migrate-in report, the old QEMU's exit.
const settle = 3 * time.Second

// pairOrder says in which order a pair of runs goes: without hvmon first
// (false) or with (true). In a fixed order (without hvmon first) the runs
// with hvmon showed four times the downtime; shuffled, the same runs did
// not: the order made that difference, and shuffling takes it out.
func pairOrder() []bool {
	if rand.IntN(2) == 0 {
		return []bool{false, true}
	}
	return []bool{true, false}
}

// BenchmarkMigrationUnderLoad live-migrates the tiny guest -migrations
// times with hvmon following both ends and as many times without, the two
// interleaved, while busy loops keep every core busy; under QMP (hvmon on
// its own QMP socket, the migration sent by someone else) and under
// libvirt (two libvirt hosts, each with an hvmon daemon; run it under
// flock /tmp/hvmon-libvirtd.lock). It reports how many migrate-out and
// migrate-in reports carry guest evidence (target: all), and QEMU's
// downtime with hvmon beside the runs without (target: within noise).
// make bench-migration runs it.
func BenchmarkMigrationUnderLoad(b *testing.B) {
	b.Run("qmp", benchMigrationQMP)
	b.Run("libvirt", benchMigrationLibvirt)
}

func benchMigrationQMP(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	root, err := os.MkdirTemp("", "hvmon-bm")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	store, err := host.NewFileStore(filepath.Join(root, "store"))
	if err != nil {
		b.Fatal(err)
	}
	key, err := attest.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	var log lockedBuffer
	sup, err := host.New(host.Options{Signer: key, HostName: "hv", Store: store, Evidence: evidenceVerifier(b),
		Logger: hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Debug})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sup.Close()
		if b.Failed() {
			b.Logf("supervisor log:\n%s", log.String())
		}
	})
	dir := func(n int) string {
		d := filepath.Join(root, strconv.Itoa(n))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	src, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: dir(0), ExtraQMP: true, Log: vmLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(src.Kill)
	if err := src.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	cur := qmpVM{src, qmpDial(b, ctx, src.QMPPath)}
	waitAgentPort(b, ctx, cur)
	stop := saturate(b)
	var f migrationFigures
	b.ResetTimer()
	for i := range *migrations {
		var base, mi qmp.MigrationInfo
		var outRes, inRes *attest.Result
		// The two runs of a pair go in random order, so that neither
		// always follows the other.
		for _, withHvmon := range pairOrder() {
			var next qmpVM
			if !withHvmon {
				// Nobody but the migrating tool on QMP.
				next, base = liveMigrateQMP(b, ctx, cur, dir(2*i+1), nil)
			} else {
				// hvmon following both ends (added as the destination
				// waits, as a daemon watching a directory would).
				out, in := fmt.Sprintf("out-%d", i), fmt.Sprintf("in-%d", i)
				next, mi = liveMigrateQMP(b, ctx, cur, dir(2*i+2), func(dst *tinyvm.VM) {
					follow(b, sup, out, cur.vm)
					follow(b, sup, in, dst)
				})
				outRes = storedReport(b, store, key, out, attest.EventMigrateOut)
				inRes = storedReport(b, store, key, in, attest.EventMigrateIn)
				if missing := handover(outRes, inRes); missing != "" {
					// Say what the guest was doing.
					octx, cancel := context.WithTimeout(ctx, 30*time.Second)
					ps, status, err := next.vm.Output(octx, "cat /proc/uptime; ps")
					cancel()
					b.Logf("migration %d: missing %s\nguest console (tail):\n%s\nguest processes (%d, %v):\n%s", i+1, missing,
						tailString(next.vm.Console(), 3000), status, err, ps)
				}
				sup.Remove(out)
				sup.Remove(in)
			}
			cur.vm.Kill()
			cur = next
			time.Sleep(settle)
		}
		f.add(i, base.Downtime, base.TotalTime, mi.Downtime, mi.TotalTime, outRes, inRes)
	}
	b.StopTimer()
	stop()
	f.report(b, "qmp")
}

func benchMigrationLibvirt(b *testing.B) {
	a := newLibvirtRig(b)
	a.startDaemon()
	d := newDestination(b, a)
	d.startDaemon()
	connA, err := golibvirt.NewConnect(a.uri)
	if err != nil {
		b.Fatal(err)
	}
	defer connA.Close()
	connB, err := golibvirt.NewConnect(d.uri)
	if err != nil {
		b.Fatal(err)
	}
	defer connB.Close()
	// Two transient domains without disks and with the same devices:
	// "bench-hv" has the agent channel (the daemons follow it);
	// "bench-base" has the same virtio-serial channel under another name,
	// so no hvmon follows it (and its agent, finding no port, does not
	// run): the runs without hvmon, side by side.
	create := func(name string, followed bool) *golibvirt.Domain {
		ch := a.run("libvirt", "channel-xml", "--name", name)
		if !followed {
			ch = strings.ReplaceAll(ch, "org.hvmon.agent.0", "org.hvmon.unwatched.0")
		}
		xml := fmt.Sprintf(domainXML, name, image.Kernel, image.Initramfs, "", filepath.Join(a.dir, "console-"+name+".log"), ch)
		start, end := strings.Index(xml, "<disk"), strings.Index(xml, "</disk>")+len("</disk>")
		dom, err := connA.DomainCreateXML(xml[:start]+xml[end:], 0)
		if err != nil {
			b.Fatal(err)
		}
		return dom
	}
	hv, base := create("bench-hv", true), create("bench-base", false)
	defer func() {
		for _, dom := range []*golibvirt.Domain{hv, base} {
			dom.Destroy()
			dom.Free()
		}
	}()
	a.waitReport("bench-hv", 1, attest.EventBoot)
	time.Sleep(10 * time.Second) // bench-base's guest boots meanwhile; its agent has no channel to wait for
	hosts := []*libvirtRig{a, d}
	conns := []*golibvirt.Connect{connA, connB}
	addrs := []string{sourceAddr, destAddr}
	// migrate moves a domain from host "from" to the other and returns it
	// there, with the downtime libvirt recorded for the migration.
	migrate := func(dom *golibvirt.Domain, from int) (*golibvirt.Domain, int64, int64) {
		to := 1 - from
		start := time.Now()
		moved, err := dom.Migrate(conns[to], golibvirt.MIGRATE_LIVE, "", "tcp://"+addrs[to], 0)
		if err != nil {
			b.Fatalf("migration to %s: %v", hosts[to].uri, err)
		}
		total := time.Since(start).Milliseconds()
		dom.Free()
		js, err := moved.GetJobStats(golibvirt.DOMAIN_JOB_STATS_COMPLETED)
		if err != nil || !js.DowntimeSet {
			b.Fatalf("the destination has no downtime for the migration: %v", err)
		}
		if js.TimeElapsedSet {
			total = int64(js.TimeElapsed)
		}
		return moved, int64(js.Downtime), total
	}
	// nth waits for host r's k-th report of event for vm.
	nth := func(r *libvirtRig, vm string, event attest.Event, k int) *attest.Result {
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			es, err := r.client.Reports(ctx, vm, 0)
			cancel()
			var of []host.APIEntry
			for _, e := range es {
				if e.Event == event {
					of = append(of, e)
				}
			}
			if err == nil && len(of) >= k {
				return r.verify(of[k-1])
			}
			if time.Now().After(deadline) {
				b.Fatalf("no %s report %d for %s on %s after 3 minutes: %v", event, k, vm, r.uri, err)
			}
		}
	}
	stop := saturate(b)
	var f migrationFigures
	b.ResetTimer()
	for i := range *migrations {
		from := i % 2
		var baseDown, baseTotal, down, total int64
		for _, withHvmon := range pairOrder() {
			if withHvmon {
				hv, down, total = migrate(hv, from)
			} else {
				base, baseDown, baseTotal = migrate(base, from)
			}
			time.Sleep(settle)
		}
		// Host "from" has made i/2+1 migrate-outs of bench-hv, the other
		// host as many migrate-ins.
		k := i/2 + 1
		out := nth(hosts[from], "bench-hv", attest.EventMigrateOut, k)
		in := nth(hosts[1-from], "bench-hv", attest.EventMigrateIn, k)
		f.add(i, baseDown, baseTotal, down, total, out, in)
	}
	b.StopTimer()
	stop()
	f.report(b, "libvirt")
}
