package host

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/guest"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// fakeAgent serves a real guest.Agent on a unix socket, as QEMU's chardev
// would expose it (one connection at a time).
type fakeAgent struct {
	Path  string
	agent *guest.Agent
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conn  net.Conn
	// wrap, when set, wraps each connection the agent serves (a slow or
	// frozen agent: migrate_hold_test.go).
	wrap func(net.Conn) net.Conn
}

func newFakeAgent(t *testing.T, dir string) *fakeAgent {
	t.Helper()
	weights := filepath.Join(dir, "weights")
	os.WriteFile(weights, bytes.Repeat([]byte("w"), 10000), 0o644)
	a, err := guest.New(&guest.Config{Regions: []guest.RegionConfig{{ID: "weights", File: weights}}}, guest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{Path: filepath.Join(dir, "agent.sock"), agent: a}
	f.start(t)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeAgent) start(t *testing.T) {
	ln, err := net.Listen("unix", f.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conn = c
			wrap := f.wrap
			f.mu.Unlock()
			var sc net.Conn = c
			if wrap != nil {
				sc = wrap(c)
			}
			f.agent.Serve(context.Background(), sc)
			c.Close()
		}
	}()
}

// stop kills the agent: no more connections, the current one closed.
func (f *fakeAgent) stop() {
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	f.mu.Lock()
	if f.conn != nil {
		f.conn.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

type rig struct {
	t     *testing.T
	dir   string
	qemu  *qmptest.Server
	agent *fakeAgent
	store *FileStore
	key   *attest.PrivateKey
	sup   *Supervisor
	jobs  map[string]string
	mu    sync.Mutex
	cfg   func(*VMConfig) // adjusts the VM's configuration
	opts  func(*Options)  // adjusts the supervisor's options
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

func newRigWith(t *testing.T, cfg func(*VMConfig)) *rig { return newRigOpts(t, cfg, nil) }

func newRigOpts(t *testing.T, cfg func(*VMConfig), opts func(*Options)) *rig {
	dir, err := os.MkdirTemp("", "hvmon-host")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &rig{t: t, dir: dir, jobs: map[string]string{}, cfg: cfg, opts: opts}
	r.qemu, err = qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.qemu.Close)
	for _, name := range []string{"migrate-set-capabilities", "job-dismiss"} {
		r.qemu.Handle(name, func(json.RawMessage) (any, string, string) { return nil, "", "" })
	}
	r.qemu.Handle("query-migrate", func(json.RawMessage) (any, string, string) {
		return map[string]any{"status": "completed", "total-time": 550, "downtime": 12}, "", ""
	})
	r.qemu.Handle("query-jobs", func(json.RawMessage) (any, string, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []map[string]any
		for id, typ := range r.jobs {
			out = append(out, map[string]any{"id": id, "type": typ, "status": "concluded"})
		}
		return out, "", ""
	})
	r.agent = newFakeAgent(t, dir)
	r.store, _ = NewFileStore(filepath.Join(dir, "store"))
	r.key, _ = attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	r.start()
	return r
}

func (r *rig) start() {
	o := Options{Signer: r.key, HostName: "hv-test", Store: r.store}
	if r.opts != nil {
		r.opts(&o)
	}
	sup, err := New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sup = sup
	r.t.Cleanup(sup.Close)
	vc := VMConfig{Name: "vm-1", UUID: "uuid-1", QMP: r.qemu.Path, Agent: r.agent.Path}
	if r.cfg != nil {
		r.cfg(&vc)
	}
	if err := sup.Add(context.Background(), vc); err != nil {
		r.t.Fatal(err)
	}
	r.waitConnected()
}

func (r *rig) waitConnected() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if vms := r.sup.VMs(); len(vms) == 1 && vms[0].Connected {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatal("the supervisor did not connect to the fake QEMU")
}

// waitReports waits until the store holds n reports and returns them.
func (r *rig) waitReports(n int) []Entry {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, _ := r.store.List(context.Background(), Query{VM: "vm-1"})
		if len(es) >= n {
			return es
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("store holds %d reports, want %d: %+v", len(es), n, es)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) verify(e Entry) *attest.Result {
	r.t.Helper()
	b, _, err := r.store.Get(context.Background(), e.Hash)
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{r.key.PublicKey()}, Now: e.Time})
	if err != nil && !(res != nil && res.Report != nil && len(res.AllClaims()) == 0) {
		r.t.Fatalf("stored %s report does not verify: %v", e.Event, err)
	}
	return res
}

func TestSupervisorLifecycle(t *testing.T) {
	r := newRig(t)
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	es := r.waitReports(1)
	boot := r.verify(es[0])
	if es[0].Event != attest.EventBoot || boot.Guest == nil || boot.Report.Host.Agent != "ok" || boot.Report.Host.Facts["vm_uuid"] != "uuid-1" || boot.Report.Host.Facts["qemu"] != "7.2.0" {
		t.Fatalf("boot report: %+v %+v", es[0], boot.Report.Host)
	}
	// A second open of the port in the same QEMU is not another boot.
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	r.qemu.Inject("MIGRATION", map[string]any{"status": "setup"})
	r.qemu.Inject("MIGRATION", map[string]any{"status": "active"})
	r.qemu.Inject("MIGRATION", map[string]any{"status": "failed"})
	r.mu.Lock()
	r.jobs["snap0"] = "snapshot-save"
	r.mu.Unlock()
	r.qemu.Inject("JOB_STATUS_CHANGE", map[string]any{"id": "snap0", "status": "created"})
	r.qemu.Inject("JOB_STATUS_CHANGE", map[string]any{"id": "snap0", "status": "concluded"})
	es = r.waitReports(3)
	if es[1].Event != attest.EventMigrateOut || es[2].Event != attest.EventSnapshot {
		t.Fatalf("events = %v %v, want migrate-out, snapshot", es[1].Event, es[2].Event)
	}
	snap := r.verify(es[2])
	if snap.Report.Host.Facts["job_id"] != "snap0" || snap.Report.Host.Facts["last_migration_status"] != "failed" {
		t.Errorf("snapshot facts = %v", snap.Report.Host.Facts)
	}
	// On demand, through the API.
	e, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, map[string]string{"requested_by": "test"})
	if err != nil || e.Event != attest.EventOnDemand {
		t.Fatalf("Attest = %+v, %v", e, err)
	}
	// The agent goes away: the report still comes, and says so.
	r.agent.stop()
	e, err = r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := r.verify(e)
	if res.Guest != nil || res.Report.Host.Agent == "ok" {
		t.Fatalf("report without an agent: agent %q", res.Report.Host.Agent)
	}
	r.qemu.Inject("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"})
	es = r.waitReports(6)
	if es[5].Event != attest.EventShutdown {
		t.Fatalf("last event = %s, want shutdown", es[5].Event)
	}
	// The host chain: seq counts up and prev links every report to the last.
	for i, e := range es {
		res := r.verify(e)
		if res.Report.Seq != uint64(i) || (i > 0 && *res.Report.Prev != es[i-1].Hash) || (i == 0 && res.Report.Prev != nil) {
			t.Fatalf("report %d: seq %d prev %v", i, res.Report.Seq, res.Report.Prev)
		}
	}
	// A restarted supervisor continues the chain from the store.
	r.sup.Close()
	r.start()
	e, err = r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	res = r.verify(e)
	if res.Report.Seq != 6 || *res.Report.Prev != es[5].Hash {
		t.Fatalf("after restart: seq %d prev %v, want 6 and %s", res.Report.Seq, res.Report.Prev, es[5].Hash)
	}
}

// TestSupervisorMigrateIn: on a destination QEMU, the agent port opening
// is not a boot, and RESUME after the migration completed is migrate-in.
func TestSupervisorMigrateIn(t *testing.T) {
	r := newRig(t)
	r.sup.Close()
	r.qemu.Handle("query-status", func(json.RawMessage) (any, string, string) {
		return map[string]any{"status": "inmigrate", "running": false}, "", ""
	})
	r.qemu.DropConnections()
	r.start()
	r.qemu.Inject("MIGRATION", map[string]any{"status": "active"})
	r.qemu.Inject("RESUME", nil) // QEMU resumes the destination just before it reports completed
	r.qemu.Inject("MIGRATION", map[string]any{"status": "completed"})
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	r.waitReports(1)
	time.Sleep(200 * time.Millisecond)
	es, _ := r.store.List(context.Background(), Query{VM: "vm-1"})
	if len(es) != 1 || es[0].Event != attest.EventMigrateIn {
		t.Fatalf("destination reports = %+v, want one migrate-in", es)
	}
	if res := r.verify(es[0]); res.Guest == nil {
		t.Error("migrate-in report carries no guest evidence")
	}
}

// TestSupervisorSourceAfterMigration: once the VM has migrated away, the
// source QEMU's exit is not the VM's shutdown.
func TestSupervisorSourceAfterMigration(t *testing.T) {
	r := newRig(t)
	r.qemu.Inject("MIGRATION", map[string]any{"status": "active"})
	r.qemu.Inject("MIGRATION", map[string]any{"status": "completed"})
	r.qemu.Inject("SHUTDOWN", map[string]any{"reason": "host-qmp-quit"})
	r.waitReports(1)
	time.Sleep(300 * time.Millisecond)
	es, _ := r.store.List(context.Background(), Query{VM: "vm-1"})
	if len(es) != 1 || es[0].Event != attest.EventMigrateOut {
		t.Fatalf("source reports = %+v, want only migrate-out", es)
	}
}

// TestSupervisorSurvivesQEMUDeath: QEMU goes away mid-run; the worker
// keeps going, reconnects when QEMU is back, and reports again.
func TestSupervisorSurvivesQEMUDeath(t *testing.T) {
	r := newRig(t)
	r.qemu.DropConnections()
	for deadline := time.Now().Add(5 * time.Second); r.sup.VMs()[0].Connected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor did not notice QEMU going away")
		}
	}
	r.waitConnected()
	time.Sleep(50 * time.Millisecond) // let the worker finish its connect handling
	r.qemu.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	es := r.waitReports(1)
	if es[0].Event != attest.EventBoot {
		t.Fatalf("after reconnect: %s, want boot", es[0].Event)
	}
	if _, err := r.sup.Attest(context.Background(), "nope", attest.EventOnDemand, nil); err == nil {
		t.Error("Attest(unknown vm) succeeded")
	}
}

func TestAPI(t *testing.T) {
	r := newRig(t)
	sock := filepath.Join(r.dir, "api.sock")
	ln, err := ListenAPI(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(sock); st.Mode().Perm() != 0o600 {
		t.Errorf("API socket mode %v, want 0600", st.Mode().Perm())
	}
	srv := &http.Server{Handler: APIHandler(r.sup, r.store, hclog.NewNullLogger())}
	go srv.Serve(ln)
	defer srv.Close()
	c := NewAPIClient(sock)
	ctx := context.Background()
	vms, err := c.VMs(ctx)
	if err != nil || len(vms) != 1 || vms[0].Name != "vm-1" || !vms[0].Connected {
		t.Fatalf("VMs = %+v, %v", vms, err)
	}
	e, err := c.Attest(ctx, "vm-1", "", map[string]string{"ticket": "42"})
	if err != nil || e.Event != attest.EventOnDemand || e.Seq != 0 {
		t.Fatalf("Attest = %+v, %v", e, err)
	}
	b, err := c.Report(ctx, e.Hash)
	if err != nil || attest.ReportHash(b) != e.Hash {
		t.Fatalf("Report = %d bytes, %v", len(b), err)
	}
	in, err := attest.Inspect(b)
	if err != nil || in.Report.Host.Facts["ticket"] != "42" {
		t.Fatalf("stored report facts: %v %v", err, in)
	}
	list, err := c.Reports(ctx, "vm-1", 10)
	if err != nil || len(list) != 1 || list[0].Hash != e.Hash {
		t.Fatalf("Reports = %+v, %v", list, err)
	}
	if _, err := c.Attest(ctx, "nope", "", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Attest(unknown) = %v, want a 404", err)
	}
	if _, err := c.Attest(ctx, "vm-1", "reboot", nil); err == nil {
		t.Error("Attest(unknown event) succeeded")
	}
	if _, err := c.Event(ctx, AttestRequest{VM: "vm-1", Event: attest.EventShutdown}); err != nil {
		t.Errorf("Event = %v", err)
	}
	// A second daemon cannot take over a path that is not a socket.
	os.WriteFile(filepath.Join(r.dir, "file"), nil, 0o600)
	if _, err := ListenAPI(filepath.Join(r.dir, "file"), ""); err == nil {
		t.Error("ListenAPI replaced a regular file")
	}
}

func TestWatchDir(t *testing.T) {
	r := newRig(t)
	dir := filepath.Join(r.dir, "vms")
	os.Mkdir(dir, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.sup.WatchDir(ctx, dir, 20*time.Millisecond, VMConfig{})
	q2, err := qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(q2.Path, filepath.Join(dir, "vm-2.qmp"))
	q2.Path = filepath.Join(dir, "vm-2.qmp")
	waitFor(t, func() bool { return len(r.sup.VMs()) == 2 })
	q2.Close()
	os.Remove(q2.Path)
	waitFor(t, func() bool { return len(r.sup.VMs()) == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
	}
}

// TestHostMeasured: guest-physical ranges the host reads through pmemsave
// become claims of platform "host", with the root of the bytes QEMU wrote.
func TestHostMeasured(t *testing.T) {
	r := newRig(t)
	mem := bytes.Repeat([]byte("guest-physical "), 700)
	r.qemu.Handle("pmemsave", func(args json.RawMessage) (any, string, string) {
		var a struct {
			Val, Size uint64
			Filename  string
		}
		json.Unmarshal(args, &a)
		os.WriteFile(a.Filename, mem[a.Val:a.Val+a.Size], 0o600)
		return nil, "", ""
	})
	r.sup.Close()
	sup, _ := New(Options{Signer: r.key, HostName: "hv", Store: r.store})
	defer sup.Close()
	sup.Add(context.Background(), VMConfig{Name: "plain", QMP: r.qemu.Path, HostRegions: []HostRegion{{ID: "low", Address: 100, Size: 5000}}})
	waitFor(t, func() bool { v := sup.VMs(); return len(v) == 1 && v[0].Connected })
	e, err := sup.Attest(context.Background(), "plain", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := r.store.Get(context.Background(), e.Hash)
	res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{r.key.PublicKey()}, Now: e.Time,
		Expected: []attest.Expectation{{RegionID: "low", Roots: []attest.Digest{measure.Bytes(mem[100:5100])}}}, Strict: true, AllowHostMeasured: true})
	if err != nil {
		t.Fatalf("host-measured report: %v", err)
	}
	c := res.Report.Claims[0]
	if c.Platform != "host" || *c.Region.Address != 100 || res.Guest != nil {
		t.Errorf("claim = %+v", c)
	}
}

func TestMetrics(t *testing.T) {
	r := newRig(t)
	r.sup.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	sup, _ := New(Options{Signer: r.key, HostName: "hv", Store: r.store, Metrics: m})
	defer sup.Close()
	sup.Add(context.Background(), VMConfig{Name: "vm-m", QMP: r.qemu.Path, Agent: r.agent.Path})
	waitFor(t, func() bool { v := sup.VMs(); return len(v) == 1 && v[0].Connected })
	r.qemu.Inject("STOP", nil)
	if _, err := sup.Attest(context.Background(), "vm-m", attest.EventOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.dir, "weights"), bytes.Repeat([]byte("v"), 10000), 0o644)
	r.agent.stop()
	sup.Attest(context.Background(), "vm-m", attest.EventOnDemand, nil)
	waitFor(t, func() bool { return testutil.ToFloat64(m.events.WithLabelValues("vm-m", "STOP")) == 1 })
	if got := testutil.ToFloat64(m.reports.WithLabelValues("vm-m", "on-demand", "stored")); got != 2 {
		t.Errorf("reports stored = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.agentFailures.WithLabelValues("vm-m", "unavailable")); got != 1 {
		t.Errorf("agent failures = %v, want 1", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "hvmon_attestation_seconds"); n != 1 {
		t.Errorf("latency series = %d, want 1", n)
	}
}

// TestVMGauges: the per-VM gauges exist from the moment a VM is
// followed, and follow its connection, its agent and its last report.
func TestVMGauges(t *testing.T) {
	// An hour: no periodic report comes during the test.
	r := newRigWith(t, func(c *VMConfig) { c.Periodic = time.Hour })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.sup.Collector())
	gauge := func(name string) (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "vm-1" {
					return m.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	// Before any report: connected, no agent yet, counted since followed.
	if v, ok := gauge("hvmon_vm_connected"); !ok || v != 1 {
		t.Errorf("hvmon_vm_connected = %v, %v before any event", v, ok)
	}
	if v, ok := gauge("hvmon_vm_agent_up"); !ok || v != 0 {
		t.Errorf("hvmon_vm_agent_up = %v, %v before any report", v, ok)
	}
	if _, ok := gauge("hvmon_vm_seconds_since_last_report"); !ok {
		t.Error("hvmon_vm_seconds_since_last_report missing before any report")
	}
	if v, ok := gauge("hvmon_vm_periodic_seconds"); !ok || v != 3600 {
		t.Errorf("hvmon_vm_periodic_seconds = %v, %v; want 3600, the VM's periodic interval", v, ok)
	}
	if _, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := gauge("hvmon_vm_agent_up"); v != 1 {
		t.Errorf("hvmon_vm_agent_up = %v after a report with guest evidence", v)
	}
	if v, _ := gauge("hvmon_vm_seconds_since_last_report"); v > 3600 {
		t.Errorf("hvmon_vm_seconds_since_last_report = %v right after a report", v)
	}
	if problems, err := testutil.CollectAndLint(r.sup.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
