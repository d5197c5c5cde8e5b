// Package demo runs hvmon's main job end to end on real QEMU VMs: the tiny
// test guest with a simulated SEV-SNP agent and a weights region, two host
// supervisors, and a real lifecycle — boot, periodic, live migration to a
// second QEMU, snapshot-save, tampering inside the guest, an on-demand
// report, snapshot-load (restore) and shutdown. It returns every report in
// order; hvmon demo prints the timeline and verifies them.
//
// With Options.StartLog, both hosts also submit every stored report to a
// transparency log (an outbox each, as the daemon's), and the run ends
// with every report's inclusion proof verified and the log monitor's
// audit of the log against both hosts' stores (log.go).
package demo

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/tinyvm"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/qmp"
)

// VMName is the demo VM's name in every report.
const VMName = "demo-llm"

// The demo's hosts. The VM boots on SourceHost and migrates to DestHost;
// each host signs with its own key, so the handover is between two keys.
const (
	SourceHost = "hv-a"
	DestHost   = "hv-b"
)

// HostNames are the demo's hosts in order: SourceHost, DestHost.
func HostNames() []string { return []string{SourceHost, DestHost} }

// SimulatedSeed seeds the demo agent's simulated SEV-SNP chain; verifiers
// of the demo's reports trust exactly that chain.
const SimulatedSeed = "68766d6f6e2064656d6f2073696d756c617465642073656564"

// Regions are the demo guest's measured regions.
var Regions = []tinyvm.Region{
	{ID: "weights", Size: 8 << 20, Pattern: "llm-weights-shard-0"},
	{ID: "kv-cache", Size: 2 << 20, Pattern: "kv-cache"},
}

// TamperOffset is where the demo rewrites the weights inside the guest.
const TamperOffset = 4_200_000

// TamperBytes is what it writes there.
const TamperBytes = "BACKDOOR"

// Options configure a run.
type Options struct {
	// Agent is a static hvmon binary for the guest; empty builds one from
	// ModuleRoot.
	Agent      string
	ModuleRoot string
	// Accel is "kvm", "tcg" or "" (try KVM, fall back to TCG).
	Accel string
	// Log receives progress; Out receives the narrative.
	Log hclog.Logger
	Out io.Writer
	// Keys sign each host's reports, by host name (HostNames). A host
	// without one gets a key generated for the run; two hosts may not
	// share one.
	Keys map[string]*attest.PrivateKey
	// Periodic is the source host's periodic interval; zero means 5 s.
	Periodic time.Duration
	// StartLog, when set, starts a transparency log with its tiles in
	// LogDir; both hosts submit their reports to it. Nil runs the demo
	// without a log.
	StartLog LogStarter
	LogDir   string
	// LogWait bounds the wait for the last proofs after the lifecycle;
	// zero means DefaultLogWait.
	LogWait time.Duration
}

// Report is one report the demo produced.
type Report struct {
	Host   string // "hv-a" (source) or "hv-b" (destination)
	Entry  host.Entry
	Signed []byte
	// Proof is the report's tlog-proof from the demo log, verified, and
	// LogIndex its index there; nil without a log.
	Proof    []byte
	LogIndex uint64
}

// Result is a whole run.
type Result struct {
	// Keys are the hosts' signing keys, by host name (HostNames).
	Keys    map[string]*attest.PrivateKey
	Reports []Report // in the order they were made
	// Log is the demo log after the run, checked; nil without a log.
	Log *LogResult
}

// TrustedKeys returns the hosts' public keys in the order of HostNames:
// what a verifier of the run's reports trusts.
func (res *Result) TrustedKeys() []*attest.PublicKey {
	var out []*attest.PublicKey
	for _, name := range HostNames() {
		if k := res.Keys[name]; k != nil {
			out = append(out, k.PublicKey())
		}
	}
	return out
}

// Expected returns the reference roots of the untampered regions.
func Expected() []attest.Expectation {
	var out []attest.Expectation
	for _, r := range Regions {
		out = append(out, attest.Expectation{RegionID: r.ID, Roots: []attest.Digest{measure.Bytes(r.Content())}})
	}
	return out
}

// EvidenceVerifier trusts the demo's simulated chain and nothing else
// simulated.
func EvidenceVerifier() (attest.EvidenceVerifier, error) {
	roots, err := simulatedRoots()
	if err != nil {
		return nil, err
	}
	return evidence.NewVerifier(evidence.Options{AllowSimulated: true, SimulatedRoots: roots})
}

// SimulatedRootsPEM returns the roots of the demo's simulated chain (those
// SimulatedSeed derives) as PEM CERTIFICATE blocks: the file a verifier
// passes to --simulated-roots with --allow-simulated to trust exactly
// them, without knowing the seed.
func SimulatedRootsPEM() ([]byte, error) {
	roots, err := simulatedRoots()
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, c := range roots {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out, nil
}

func simulatedRoots() ([]*x509.Certificate, error) {
	seed, err := hex.DecodeString(SimulatedSeed)
	if err != nil {
		return nil, err
	}
	return evidence.SimulatedRoots(seed)
}

// Requirements lists what the demo needs on the machine, and how to get it.
func Requirements() error {
	var missing []string
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img", "xz", "cpio"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*"); len(k) == 0 {
		missing = append(missing, "/boot/vmlinuz-*")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %q: install them as root with\n  apt-get install qemu-system-x86 qemu-utils linux-image-amd64 busybox-static xz-utils cpio", missing)
	}
	return nil
}

type run struct {
	o      Options
	work   string
	img    *tinyvm.Image
	keys   map[string]*attest.PrivateKey
	ev     attest.EvidenceVerifier
	stores map[string]*host.FileStore
	stored map[string]func(host.Entry)
	sups   map[string]*host.Supervisor
	logs   *logSession
	seen   map[attest.Digest]bool
	res    *Result
}

func (r *run) say(format string, args ...any) {
	if r.o.Out != nil {
		fmt.Fprintf(r.o.Out, format+"\n", args...)
	}
}

// Run runs the demo. It needs no root, only the packages Requirements
// names.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := Requirements(); err != nil {
		return nil, err
	}
	return run0(ctx, o, func(ctx context.Context, r *run) error { return r.lifecycle(ctx) })
}

// Lifecycle makes a run's reports in place of the real VM: it stores
// reports in the hosts' stores and records them in the order they were
// made. RunLifecycle runs one, so the parts of the demo that follow the
// VM (the log, the proofs, the audit, the output) are tested without QEMU.
type Lifecycle func(ctx context.Context, h *Hosts) error

// Hosts are a run's host stores, as a Lifecycle sees them.
type Hosts struct{ r *run }

// Key is the key the named host signs its reports with; nil for a name
// that is not one of HostNames.
func (h *Hosts) Key(name string) *attest.PrivateKey { return h.r.keys[name] }

// Store returns the named host's report store, created on first use, and
// the hook to call with each report stored there (it submits the report
// to the log, as the supervisor's Stored hook does).
func (h *Hosts) Store(name string) (*host.FileStore, func(host.Entry), error) {
	return h.r.hostStore(name)
}

// Record appends a stored report of the named host to the run's result.
func (h *Hosts) Record(ctx context.Context, name string, e host.Entry) error {
	_, err := h.r.record(ctx, name, e)
	return err
}

// RunLifecycle is Run with fn in place of the VM's lifecycle. It needs
// none of the packages Requirements names.
func RunLifecycle(ctx context.Context, o Options, fn Lifecycle) (*Result, error) {
	return run0(ctx, o, func(ctx context.Context, r *run) error { return fn(ctx, &Hosts{r: r}) })
}

func run0(ctx context.Context, o Options, lifecycle func(context.Context, *run) error) (*Result, error) {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Periodic == 0 {
		o.Periodic = 5 * time.Second
	}
	work, err := os.MkdirTemp("", "hvmon-demo")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	r := &run{o: o, work: work, stores: map[string]*host.FileStore{}, stored: map[string]func(host.Entry){}, sups: map[string]*host.Supervisor{}, seen: map[attest.Digest]bool{}, res: &Result{}}
	if r.keys, err = hostKeys(o.Keys); err != nil {
		return nil, err
	}
	r.res.Keys = r.keys
	if r.ev, err = EvidenceVerifier(); err != nil {
		return nil, err
	}
	if o.StartLog != nil {
		if o.LogDir == "" {
			return nil, errors.New("demo: a log needs Options.LogDir")
		}
		r.say("== Transparency log: %s, tiles in %s, a checkpoint every %s; both hosts submit every report (its allowlist: their two keys)", LogOrigin, o.LogDir, LogCheckpointInterval)
		if r.logs, err = startLog(ctx, o.StartLog, o.LogDir, work, r.res.TrustedKeys(), o.Log.Named("log")); err != nil {
			return nil, err
		}
		defer r.logs.close(context.Background())
	}
	defer func() {
		for _, s := range r.sups {
			s.Close()
		}
	}()
	if err := lifecycle(ctx, r); err != nil {
		return r.res, err
	}
	if r.logs != nil {
		r.say("== Log: waiting for the proofs of every stored report, then checking them and auditing the log")
		if r.res.Log, err = r.logs.finish(ctx, cmp.Or(o.LogWait, DefaultLogWait), r.res.Reports, r.auditOptions()); err != nil {
			return r.res, fmt.Errorf("log: %w", err)
		}
	}
	return r.res, nil
}

// hostKeys returns a key for every host: the given ones, and a generated
// key for each host without one. Two hosts sharing a key is an error: the
// demo's handover is between two keys.
func hostKeys(given map[string]*attest.PrivateKey) (map[string]*attest.PrivateKey, error) {
	keys := map[string]*attest.PrivateKey{}
	owner := map[attest.Digest]string{}
	for _, name := range HostNames() {
		k := given[name]
		if k == nil {
			var err error
			if k, err = attest.GenerateKey(nil); err != nil {
				return nil, err
			}
		}
		if other, ok := owner[k.KeyID()]; ok {
			return nil, fmt.Errorf("demo: hosts %s and %s share a key (id %s): each host needs its own", other, name, k.KeyID())
		}
		owner[k.KeyID()] = name
		keys[name] = k
	}
	for name := range given {
		if keys[name] == nil {
			return nil, fmt.Errorf("demo: a key for host %q, which is not one of the demo's hosts %q", name, HostNames())
		}
	}
	return keys, nil
}

// auditOptions are the log monitor's verify options: both hosts' keys and
// the demo's simulated chain, as hvmon log audit --trust (twice)
// --allow-simulated --simulated-roots gives them (the monitor takes no
// reference roots).
func (r *run) auditOptions() attest.VerifyOptions {
	return attest.VerifyOptions{TrustedKeys: r.res.TrustedKeys(), Evidence: r.ev}
}

// hostStore returns the named host's store, created on first use, and
// its Stored hook (nil without a log).
func (r *run) hostStore(name string) (*host.FileStore, func(host.Entry), error) {
	if s := r.stores[name]; s != nil {
		return s, r.stored[name], nil
	}
	store, err := host.NewFileStore(filepath.Join(r.work, "store-"+name))
	if err != nil {
		return nil, nil, err
	}
	var stored func(host.Entry)
	if r.logs != nil {
		if stored, err = r.logs.attach(name, store); err != nil {
			return nil, nil, err
		}
	}
	r.stores[name], r.stored[name] = store, stored
	return store, stored, nil
}

func (r *run) supervisor(name string, vm host.VMConfig) (*host.Supervisor, error) {
	store, stored, err := r.hostStore(name)
	if err != nil {
		return nil, err
	}
	sup, err := host.New(host.Options{Logger: r.o.Log.Named(name), Signer: r.keys[name], HostName: name, Store: store, Evidence: r.ev, AgentTimeout: 2 * time.Minute,
		Stored: stored})
	if err != nil {
		return nil, err
	}
	r.sups[name] = sup
	return sup, sup.Add(context.Background(), vm)
}

// await waits for the next report of event by the named host, and records
// every report of that host made meanwhile.
func (r *run) await(ctx context.Context, hostName string, event attest.Event) (Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		es, err := r.stores[hostName].List(ctx, host.Query{VM: VMName})
		if err != nil {
			return Report{}, err
		}
		for _, e := range es {
			if r.seen[e.Hash] {
				continue
			}
			rep, err := r.record(ctx, hostName, e)
			if err != nil {
				return Report{}, err
			}
			if e.Event == event {
				return rep, nil
			}
		}
		select {
		case <-ctx.Done():
			return Report{}, fmt.Errorf("waiting for a %s report from %s: %w", event, hostName, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *run) record(ctx context.Context, hostName string, e host.Entry) (Report, error) {
	b, _, err := r.stores[hostName].Get(ctx, e.Hash)
	if err != nil {
		return Report{}, err
	}
	r.seen[e.Hash] = true
	rep := Report{Host: hostName, Entry: e, Signed: b}
	r.res.Reports = append(r.res.Reports, rep)
	r.say("  -> %s: %s report, host seq %d", hostName, e.Event, e.Seq)
	return rep, nil
}

func (r *run) lifecycle(ctx context.Context) error {
	r.say("== Building the guest: the host's kernel, busybox, the static hvmon agent (simulated SEV-SNP), %d regions", len(Regions))
	// The launch binds the VM's name: HOST_DATA is its identity, as a host
	// sets it for an SEV-SNP launch (hvmon vm identity), so a policy can
	// pin it (bind_vm_identity) and evidence relabelled for another VM fails.
	hostData := attest.VMIdentityHostData(VMName)
	img, err := tinyvm.Build(ctx, tinyvm.BuildOptions{Dir: r.work, Agent: r.o.Agent, ModuleRoot: r.o.ModuleRoot,
		Regions: Regions, Evidence: string(attest.PlatformSimulatedSEVSNP), SimulatedSeed: SimulatedSeed,
		SimulatedHostData: hex.EncodeToString(hostData[:])})
	if err != nil {
		return err
	}
	r.img = img
	disk := filepath.Join(r.work, "vmstate.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", disk, "256M").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img: %v: %s", err, out)
	}

	r.say("== Boot: QEMU A runs the VM; host supervisor hv-a follows it over its own QMP socket")
	srcDir := filepath.Join(r.work, "a")
	os.Mkdir(srcDir, 0o755)
	src, err := tinyvm.Boot(ctx, img, tinyvm.BootOptions{Dir: srcDir, Accel: r.o.Accel, ExtraQMP: true, Log: r.o.Log})
	if err != nil {
		return err
	}
	defer src.Kill()
	if _, err := r.supervisor(SourceHost, host.VMConfig{Name: VMName, QMP: src.QMP2Path, Agent: src.AgentPath, Periodic: r.o.Periodic}); err != nil {
		return err
	}
	if err := src.WaitReady(ctx); err != nil {
		return err
	}
	r.say("   guest up (accel %s)", src.Accel)
	if _, err := r.await(ctx, SourceHost, attest.EventBoot); err != nil {
		return err
	}
	r.say("== Periodic: hv-a attests every %s", r.o.Periodic)
	if _, err := r.await(ctx, SourceHost, attest.EventPeriodic); err != nil {
		return err
	}

	r.say("== Live migration: QEMU B waits for the VM; A sends it over a unix socket")
	dstDir := filepath.Join(r.work, "b")
	os.Mkdir(dstDir, 0o755)
	dst, err := tinyvm.Boot(ctx, img, tinyvm.BootOptions{Dir: dstDir, Accel: src.Accel, ExtraQMP: true, Incoming: "defer", Log: r.o.Log})
	if err != nil {
		return err
	}
	defer dst.Kill()
	if _, err := r.supervisor(DestHost, host.VMConfig{Name: VMName, QMP: dst.QMP2Path, Agent: dst.AgentPath}); err != nil {
		return err
	}
	srcQ, err := dial(ctx, src.QMPPath)
	if err != nil {
		return err
	}
	defer srcQ.Disconnect()
	dstQ, err := dial(ctx, dst.QMPPath)
	if err != nil {
		return err
	}
	defer dstQ.Disconnect()
	time.Sleep(500 * time.Millisecond) // let hv-b connect to B before the migration starts
	mig := "unix:" + filepath.Join(r.work, "migration.sock")
	if err := dstQ.MigrateIncoming(ctx, mig); err != nil {
		return err
	}
	start := time.Now()
	if err := srcQ.Migrate(ctx, mig); err != nil {
		return err
	}
	for {
		mi, err := srcQ.QueryMigrate(ctx)
		if err != nil {
			return err
		}
		if mi.Status == "completed" {
			r.say("   migration completed in %s (downtime %d ms)", time.Since(start).Round(time.Millisecond), mi.Downtime)
			break
		}
		if mi.Status == "failed" || mi.Status == "cancelled" {
			return fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := r.await(ctx, SourceHost, attest.EventMigrateOut); err != nil {
		return err
	}
	if _, err := r.await(ctx, DestHost, attest.EventMigrateIn); err != nil {
		return err
	}
	srcQ.Quit(ctx)
	<-src.Exited()
	r.sups[SourceHost].Close()
	delete(r.sups, SourceHost)
	r.say("   QEMU A has exited; the VM lives on B")

	r.say("== Snapshot: snapshot-save on B (VM state into a qcow2 image)")
	if err := dstQ.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "node-name": "vmstate0",
		"file": map[string]any{"driver": "file", "filename": disk}}); err != nil {
		return err
	}
	events, err := dstQ.Events(ctx)
	if err != nil {
		return err
	}
	if err := dstQ.RunJob(ctx, events, "demo-save", func(ctx context.Context) error {
		return dstQ.SnapshotSave(ctx, "demo-save", "before-tamper", "vmstate0", []string{"vmstate0"})
	}); err != nil {
		return err
	}
	if _, err := r.await(ctx, DestHost, attest.EventSnapshot); err != nil {
		return err
	}

	r.say("== Tamper: a process in the guest rewrites %d bytes of the weights at offset %d", len(TamperBytes), TamperOffset)
	status, err := dst.Run(ctx, fmt.Sprintf("printf %s | dd of=/data/weights bs=1 seek=%d conv=notrunc 2>/dev/null", TamperBytes, TamperOffset))
	if err != nil || status != 0 {
		return fmt.Errorf("tampering in the guest: status %d, %v", status, err)
	}
	r.say("== On-demand: the admin asks hv-b for a report now")
	if _, err := r.sups[DestHost].Attest(ctx, VMName, attest.EventOnDemand, map[string]string{"requested_by": "demo"}); err != nil {
		return err
	}
	if _, err := r.await(ctx, DestHost, attest.EventOnDemand); err != nil {
		return err
	}

	r.say("== Restore: snapshot-load on B brings back the state saved before the tampering")
	if err := dstQ.RunJob(ctx, events, "demo-load", func(ctx context.Context) error {
		return dstQ.SnapshotLoad(ctx, "demo-load", "before-tamper", "vmstate0", []string{"vmstate0"})
	}); err != nil {
		return err
	}
	if st, err := dstQ.QueryStatus(ctx); err == nil && !st.Running {
		dstQ.Cont(ctx)
	}
	if _, err := r.await(ctx, DestHost, attest.EventRestore); err != nil {
		return err
	}

	r.say("== Shutdown: QEMU B is told to quit")
	dstQ.Quit(ctx)
	if _, err := r.await(ctx, DestHost, attest.EventShutdown); err != nil {
		return err
	}
	<-dst.Exited()
	return nil
}

func dial(ctx context.Context, path string) (*qmp.Client, error) {
	c := qmp.New(path, qmp.Options{})
	var err error
	for i := 0; i < 50; i++ {
		if err = c.ConnectContext(ctx); err == nil {
			return c, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// Verdict is the verification of one demo report.
type Verdict struct {
	Report  Report
	Result  *attest.Result
	Err     error
	Guest   *attest.GuestEvidence
	Drifted []string
	// Pages names, per drifted region, the pages the agent reported changed.
	Pages map[string][]measure.PageRange
}

// Verify verifies every report as of its issue time, trusting both hosts'
// keys, against the demo's reference roots, not in strict mode (drift is shown, not fatal).
func Verify(res *Result) ([]Verdict, error) {
	ev, err := EvidenceVerifier()
	if err != nil {
		return nil, err
	}
	var out []Verdict
	for _, rep := range res.Reports {
		in, err := attest.Inspect(rep.Signed)
		if err != nil {
			return nil, err
		}
		vr, verr := attest.Verify(rep.Signed, attest.VerifyOptions{TrustedKeys: res.TrustedKeys(),
			Now: in.Report.IssuedAt, Expected: slices.DeleteFunc(Expected(), func(e attest.Expectation) bool { return in.Guest == nil }), Evidence: ev})
		v := Verdict{Report: rep, Result: vr, Err: verr}
		if vr != nil {
			v.Guest = vr.Guest
			v.Pages = map[string][]measure.PageRange{}
			for _, d := range vr.Drift {
				v.Drifted = append(v.Drifted, d.RegionID)
				v.Pages[d.RegionID] = d.Changed
			}
		}
		out = append(out, v)
	}
	return out, nil
}
