//go:build !nologd

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/policy"
)

// lifecycleVector is the chain vector of the demo's lifecycle: boot,
// periodic and migrate-out on hv-a; migrate-in, snapshot, on-demand,
// restore (a rollback) and shutdown on hv-b.
const lifecycleVector = "../../policy/testdata/chain/lifecycle"

// demoTestKeys are the hosts' keys of the tests: hv-a signs with
// testdata/keys/host.key and hv-b with other.key, as in the vector.
func demoTestKeys(t *testing.T) map[string]*attest.PrivateKey {
	t.Helper()
	keys := map[string]*attest.PrivateKey{}
	for h, f := range map[string]string{demo.SourceHost: "host.key", demo.DestHost: "other.key"} {
		k, err := keyfile.LoadPrivate("../../testdata/keys/"+f, keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: true})
		if err != nil {
			t.Fatal(err)
		}
		keys[h] = k
	}
	return keys
}

// simulatedLifecycle stores the vector's history in the stores of its
// hosts, in order, as the demo's supervisors would, made to look like a
// real run of the demo: the VM is demo.VMName; each guest evidence is made
// again with the demo's regions (the weights tampered in the on-demand
// report, at demo.TamperOffset) and simulated SEV-SNP evidence from the
// demo's seed, launched with the VM's identity as HOST_DATA, its guest
// chain (seq and prev, the restore's rollback included) kept; each report
// is signed again by its host's key, its host chain link moved to the new
// bytes.
func simulatedLifecycle(t *testing.T) demo.Lifecycle {
	return func(ctx context.Context, h *demo.Hosts) error {
		paths, err := filepath.Glob(filepath.Join(lifecycleVector, "*.cose"))
		if err != nil || len(paths) == 0 {
			t.Fatalf("no reports in %s (%v)", lifecycleVector, err)
		}
		gk, err := keyfile.LoadPrivate("../../testdata/keys/guest.key", keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: true})
		if err != nil {
			return err
		}
		seed, _ := hex.DecodeString(demo.SimulatedSeed)
		hostData := attest.VMIdentityHostData(demo.VMName)
		snp, err := evidence.NewSimulatedSNP(sim.Options{Seed: seed, HostData: hostData[:]})
		if err != nil {
			return err
		}
		prev := map[string]*attest.Digest{}         // host -> its last report
		guests := map[attest.Digest]attest.Digest{} // the vector's guest evidence hash -> the new one's
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			in, err := attest.Inspect(b)
			if err != nil {
				return err
			}
			name := in.Report.Host.Host
			r := in.Report
			r.Workload = demo.VMName
			if in.Guest != nil {
				g := *in.Guest
				g.VM, g.Platform, g.GuestKey = demo.VMName, attest.PlatformSimulatedSEVSNP, gk.PublicKey().Bytes()
				if g.Prev != nil {
					np, ok := guests[*g.Prev]
					if !ok {
						t.Fatalf("%s: its guest prev %s is no earlier guest evidence", p, g.Prev)
					}
					g.Prev = &np
				}
				g.Claims = demoClaims(g.IssuedAt, r.Event == attest.EventOnDemand)
				rd, err := attest.GuestReportData(&g)
				if err != nil {
					return err
				}
				if g.Hardware, err = snp.Evidence(ctx, rd); err != nil {
					return err
				}
				if r.Guest, err = attest.SignGuestEvidence(gk, &g, nil); err != nil {
					return err
				}
				guests[*in.GuestHash] = attest.ReportHash(r.Guest)
			}
			r.Prev = prev[name]
			if b, err = attest.Sign(h.Key(name), r, &attest.SignOptions{Deterministic: true}); err != nil {
				return err
			}
			rh := attest.ReportHash(b)
			prev[name] = &rh
			store, stored, err := h.Store(name)
			if err != nil {
				return err
			}
			e, err := store.Put(ctx, r.Workload, b, r)
			if err != nil {
				return err
			}
			if stored != nil {
				stored(e)
			}
			if err := h.Record(ctx, name, e); err != nil {
				return err
			}
		}
		return nil
	}
}

// demoClaims are the guest's claims on the demo's regions at at: their
// reference roots, or, tampered, the weights with demo.TamperBytes at
// demo.TamperOffset and the page the agent saw change.
func demoClaims(at time.Time, tampered bool) []attest.Claim {
	var out []attest.Claim
	for _, reg := range demo.Regions {
		b := reg.Content()
		var changed []measure.PageRange
		if tampered && reg.ID == "weights" {
			copy(b[demo.TamperOffset:], demo.TamperBytes)
			pg := int64(demo.TamperOffset / measure.PageSize)
			changed = []measure.PageRange{{First: pg, Last: pg}}
		}
		out = append(out, attest.Claim{Region: attest.Region{ID: reg.ID, Size: uint64(reg.Size), Protection: "RO", Source: "file:" + reg.Path()},
			Snapshot: attest.Snapshot{RegionID: reg.ID, Root: measure.Bytes(b), Size: uint64(reg.Size), TakenAt: at, PageSize: measure.PageSize,
				Mode: string(measure.ModeIncremental), Changed: changed},
			Workload: demo.VMName, Platform: attest.PlatformSimulatedSEVSNP})
	}
	return out
}

// runDemoLog runs the demo's log part over the simulated lifecycle with
// the demo's in-process log server, its output in out.
func runDemoLog(t *testing.T, out string, narrative *bytes.Buffer) *demo.Result {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(out, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := resetDemoDir(out); err != nil {
		t.Fatal(err)
	}
	start := func(ctx context.Context, dir string, hosts []*attest.PublicKey) (*demo.LogServer, error) {
		return startDemoLog(ctx, dir, hosts, hclog.NewNullLogger())
	}
	res, err := demo.RunLifecycle(t.Context(), demo.Options{Keys: demoTestKeys(t), Out: narrative, StartLog: start, LogDir: filepath.Join(out, "log")}, simulatedLifecycle(t))
	if err != nil {
		t.Fatalf("RunLifecycle: %v\n%s", err, narrative)
	}
	return res
}

// The demo's log: every report of both hosts gets a proof that verifies,
// at its own index; the log accepts both hosts' keys; the monitor finds
// nothing wrong with the log and the chain audit across it names the
// handover between the two keys and the restore's rollback, as verify
// --chain does. Then the command's part: the files, each report verified
// with both keys and the simulated roots file, and DIR/README, whose
// commands, run from the directory after it moved, give the exit codes it
// states.
func TestDemoLog(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	var narrative bytes.Buffer
	res := runDemoLog(t, out, &narrative)
	keys := demoTestKeys(t)
	idA, idB := keys[demo.SourceHost].KeyID().String(), keys[demo.DestHost].KeyID().String()

	l := res.Log
	if l == nil {
		t.Fatal("no log result")
	}
	if got, want := l.Checkpoint.Size, uint64(len(res.Reports)); got != want || l.Proofs != len(res.Reports) || want != 8 {
		t.Fatalf("tree size %d, %d proofs; want %d reports, each proven", got, l.Proofs, want)
	}
	seen := map[uint64]bool{}
	for _, r := range res.Reports {
		if r.Proof == nil || seen[r.LogIndex] {
			t.Errorf("%s %s: proof %t, index %d (seen before: %t)", r.Host, r.Entry.Event, r.Proof != nil, r.LogIndex, seen[r.LogIndex])
		}
		seen[r.LogIndex] = true
	}
	if l.AuditErr != nil || l.Audit.Failed != nil {
		t.Fatalf("audit: %v, failed %v", l.AuditErr, l.Audit.Failed)
	}
	var rollback, handover bool
	for _, f := range l.Audit.Findings {
		if strings.HasPrefix(f.Check, "log.") && f.Status != policy.Affirming {
			t.Errorf("log-level finding %+v", f)
		}
		rollback = rollback || (f.Check == "chain.guest" && f.Reason == "rollback" && f.Status == policy.Contraindicated)
		handover = handover || (f.Check == "chain.migration" && f.Reason == "handover" && f.Status == policy.Affirming &&
			strings.Contains(f.Detail, "(key "+idA[:12]+")") && strings.Contains(f.Detail, "(key "+idB[:12]+")"))
	}
	if !rollback || !handover || l.Audit.Status != policy.Contraindicated {
		t.Errorf("audit verdict %s, rollback found: %t, handover from key %.12s to %.12s: %t; want both, contraindicated\n%+v",
			l.Audit.Status, rollback, idA, idB, handover, l.Audit.Findings)
	}
	for _, dir := range []string{".antispam", ".state", "tile"} {
		if _, err := os.Stat(filepath.Join(out, "log", dir)); err != nil {
			t.Errorf("the log directory: %v", err)
		}
	}

	// The command's output: files, the timeline, verify with the proofs,
	// the chain and policy audits, and the log summary.
	var stdout bytes.Buffer
	a := &app{ctx: t.Context(), stdout: &stdout, stderr: &stdout, log: hclog.NewNullLogger()}
	err := a.demoReport(res, out)
	t.Logf("hvmon demo's output after the VM's lifecycle:\n%s%s", narrative.String(), stdout.String())
	if err != nil {
		t.Fatalf("demoReport: %v", err)
	}
	for _, want := range []string{
		"LOG", "--log-key " + filepath.Join(out, "log.vkey") + " --require-log",
		"--trust " + filepath.Join(out, "hv-a.pub") + " --trust " + filepath.Join(out, "hv-b.pub"),
		"--simulated-roots " + filepath.Join(out, "simulated-roots.pem"),
		"hv-a signs with key " + idA[:12], "hv-b with key " + idB[:12],
		"01-hv-a-boot.cose                        exit 0  VALID",
		"06-hv-b-on-demand.cose                   exit 0  VALID (drift: 1 region(s))",
		"weights: page 1025",
		"log demo.hvmon.dev/log ok index 7 of tree size 8",
		"checkpoint: demo.hvmon.dev/log, tree size 8, root ",
		"proofs: 8 of 8 reports proven",
		"the VM moved from host hv-a (key " + idA[:12] + ") to host hv-b (key " + idB[:12] + ")",
		"The migration is a handover between two host keys",
		"chain.guest", "rollback", "root_not_allowed", "No log-level finding",
		"To check these files again later: " + filepath.Join(out, "README"),
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	// hvmon verify --log-key checked every report's proof, those that
	// failed only their appraisal too (the shutdown report).
	if n := strings.Count(stdout.String(), "log demo.hvmon.dev/log ok index "); n != 8 {
		t.Errorf("%d reports' proofs verified by hvmon verify, want 8", n)
	}
	proofs, _ := filepath.Glob(filepath.Join(out, "reports", "*.proof"))
	if len(proofs) != 8 {
		t.Errorf("%d proof files in %s/reports, want 8", len(proofs), out)
	}
	for h, k := range keys {
		got, err := keyfile.LoadPublic(filepath.Join(out, h+".pub"))
		if err != nil || got.KeyID() != k.KeyID() {
			t.Errorf("%s.pub: %v, key id %v; want %s", h, err, got, k.KeyID())
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "policy.hcl")); err != nil || !strings.Contains(string(b), `host_keys = ["hv-a.pub", "hv-b.pub"]`) {
		t.Errorf("policy.hcl does not pin both host keys (%v):\n%s", err, b)
	}
	checkDemoReadme(t, out, idA, idB, true)
}

// checkDemoReadme checks DIR/README and runs its commands from the
// directory, moved elsewhere first: each must give the exit code the
// README states, and those are the demo's verdicts (the history and the
// log contraindicated by the rollback, the boot report valid). Without a
// log, the README names no log file and its commands check no proof.
func checkDemoReadme(t *testing.T, out, idA, idB string, withLog bool) {
	b, err := os.ReadFile(filepath.Join(out, "README"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	t.Logf("README:\n%s", readme)
	wants := []string{
		"hv-a.pub                     hv-a's public key (ML-DSA-65, PEM), key id " + idA,
		"hv-b.pub                     hv-b's public key (ML-DSA-65, PEM), key id " + idB,
		"reports/NN-HOST-EVENT.cose   the 8 signed reports",
		"simulated-roots.pem", "SIMULATED", "policy.hcl",
		"as of each report's own issue time", "--as-of-issue", "never written",
	}
	logWants := []string{"reports/NN-HOST-EVENT.proof  each report's inclusion proof", "log.vkey", "log-audit.state", "--log-key"}
	if withLog {
		wants = append(wants, logWants...)
	} else {
		for _, w := range logWants {
			if strings.Contains(readme, w) {
				t.Errorf("README without a log names %q", w)
			}
		}
	}
	for _, want := range wants {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	type command struct {
		args []string
		exit int
	}
	var cmds []command
	exit := -1
	_, commands, ok := strings.Cut(readme, "\nChecking again later\n")
	if !ok {
		t.Fatal("README has no section \"Checking again later\"")
	}
	for _, line := range strings.Split(commands, "\n") {
		if n, ok := strings.CutPrefix(line, "# Expect exit "); ok {
			n, _, _ = strings.Cut(strings.TrimSuffix(n, "."), " ")
			if exit, err = strconv.Atoi(n); err != nil {
				t.Fatalf("README: %q", line)
			}
		}
		if rest, ok := strings.CutPrefix(line, "hvmon "); ok {
			if exit < 0 {
				t.Fatalf("README: %q says no exit code before it", line)
			}
			cmds = append(cmds, command{strings.Fields(rest), exit})
			exit = -1
		}
	}
	const trust = "--trust hv-a.pub --trust hv-b.pub --allow-simulated --simulated-roots simulated-roots.pem"
	proof := ""
	if withLog {
		proof = " --log-key log.vkey --require-log"
	}
	type wantCommand struct {
		re   string
		exit int
	}
	expect := " --expect weights=[0-9a-f]{64} --expect kv-cache=[0-9a-f]{64}"
	want := []wantCommand{
		{"verify " + trust + expect + proof + " --chain reports", exitAppraisal},
		{"verify " + trust + expect + proof + " --as-of-issue reports/01-hv-a-boot.cose", exitOK},
		{"verify --policy policy.hcl --chain reports", exitAppraisal},
	}
	if withLog {
		want = append(want, wantCommand{"log audit --tlog log --log-key log.vkey " + trust + " --state log-audit.state", exitAppraisal})
	}
	if len(cmds) != len(want) {
		t.Fatalf("README gives %d commands, want %d", len(cmds), len(want))
	}
	for i, c := range cmds {
		line := strings.Join(c.args, " ")
		if re := "^" + strings.ReplaceAll(want[i].re, ".pub", `\.pub`) + "$"; !regexp.MustCompile(re).MatchString(line) || c.exit != want[i].exit {
			t.Errorf("README command %d: %q, exit %d; want %q, exit %d", i+1, line, c.exit, re, want[i].exit)
		}
	}

	// The directory moves; its commands still run from inside it.
	moved := filepath.Join(filepath.Dir(out), "moved")
	if err := os.Rename(out, moved); err != nil {
		t.Fatal(err)
	}
	t.Chdir(moved)
	for _, c := range cmds {
		var sink bytes.Buffer
		if code := run(c.args, nil, &sink, &sink); code != c.exit {
			t.Errorf("hvmon %s: exit %d, want %d as README says\n%s", strings.Join(c.args, " "), code, c.exit, sink.String())
		}
	}
	var sink bytes.Buffer
	if withLog {
		// The log audit again, as README says: the log did not change
		// since the state the first run wrote, and there is nothing new
		// to audit.
		audit := cmds[len(cmds)-1].args
		if code := run(audit, nil, &sink, &sink); code != exitOK || !regexp.MustCompile(`(?m)^log\.consistency +affirming +consistent +size 8 extends size 8$`).Match(sink.Bytes()) {
			t.Errorf("hvmon %s, a second time: exit %d, want %d, consistent with the first run\n%s", strings.Join(audit, " "), code, exitOK, sink.String())
		}
	}
	// Both keys are needed: without hv-b's, its reports are untrusted.
	args := slices.Clone(cmds[0].args)
	i := slices.Index(args, "hv-b.pub")
	args = slices.Delete(args, i-1, i+1)
	sink.Reset()
	if code := run(args, nil, &sink, &sink); code != exitTrust {
		t.Errorf("hvmon %s: exit %d, want %d (hv-b's reports untrusted)\n%s", strings.Join(args, " "), code, exitTrust, sink.String())
	}
}

// Without a log (a hvmon built with -tags nologd), the demo writes the
// same files but the log's, and its README's commands check no proof.
func TestDemoNoLog(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	if err := os.MkdirAll(filepath.Join(out, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	keys := demoTestKeys(t)
	res, err := demo.RunLifecycle(t.Context(), demo.Options{Keys: keys}, simulatedLifecycle(t))
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	a := &app{ctx: t.Context(), stdout: &stdout, stderr: &stdout, log: hclog.NewNullLogger()}
	if err := a.demoReport(res, out); err != nil {
		t.Fatalf("demoReport: %v\n%s", err, stdout.String())
	}
	for _, name := range []string{"log", "log.vkey"} {
		if _, err := os.Stat(filepath.Join(out, name)); !os.IsNotExist(err) {
			t.Errorf("%s without a log: %v", name, err)
		}
	}
	checkDemoReadme(t, out, keys[demo.SourceHost].KeyID().String(), keys[demo.DestHost].KeyID().String(), false)
}

// A report the log never proves ends the demo's wait with an error that
// names it: here the log's allowlist lacks the hosts' key (every
// submission is refused with 403, which the outbox retries).
func TestDemoLogWaitBounded(t *testing.T) {
	out := t.TempDir()
	key, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{7}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	other, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{8}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	start := func(ctx context.Context, dir string, _ []*attest.PublicKey) (*demo.LogServer, error) {
		return startDemoLog(ctx, dir, []*attest.PublicKey{other.PublicKey()}, hclog.NewNullLogger())
	}
	nine, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{9}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	_, err = demo.RunLifecycle(t.Context(), demo.Options{Keys: map[string]*attest.PrivateKey{demo.SourceHost: key, demo.DestHost: nine},
		StartLog: start, LogDir: filepath.Join(out, "log"), LogWait: 3 * time.Second}, simulatedLifecycle(t))
	if err == nil || !strings.Contains(err.Error(), "8 of 8 stored reports have none") || !strings.Contains(err.Error(), "hv-b shutdown (host seq 4)") {
		t.Fatalf("RunLifecycle with a log that refuses every report: %v", err)
	}
}

// A new run replaces the last run's files: its reports and proofs (a run
// may make fewer), keys, roots, policy, README, log, log key and audit
// state; it refuses to remove anything in DIR/reports or DIR/log the demo
// does not write.
func TestResetDemoDir(t *testing.T) {
	out := t.TempDir()
	old := []string{"reports/01-hv-a-boot.cose", "reports/01-hv-a-boot.proof", "reports/09-hv-b-shutdown.cose", "host.pub", "hv-a.pub", "hv-b.pub",
		"simulated-roots.pem", "policy.hcl", "README", "log-audit.state", "log.vkey", "log/checkpoint"}
	for _, p := range append(old, "notes.txt") {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := resetDemoDir(out); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(old, "log") {
		if _, err := os.Stat(filepath.Join(out, p)); !os.IsNotExist(err) {
			t.Errorf("%s after the reset: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Errorf("a file the demo does not write, outside reports/ and log/: %v", err)
	}
	for _, name := range []string{"mine.cose", "01-hv-a-boot.cose.bak"} {
		p := filepath.Join(out, "reports", name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := resetDemoDir(out); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("a DIR/reports with %s: %v", name, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		os.Remove(p)
	}
}

// A new run replaces the last run's log, key and proofs, and refuses to
// remove a DIR/log that holds anything else.
func TestResetDemoLog(t *testing.T) {
	out := t.TempDir()
	for _, p := range []string{"log/tile/0/x000", "log/.state/treeState", "log/checkpoint", "log.vkey", "reports/01-hv-a-boot.proof", "reports/01-hv-a-boot.cose"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := resetDemoLog(out); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"log", "log.vkey", "reports/01-hv-a-boot.proof"} {
		if _, err := os.Stat(filepath.Join(out, p)); !os.IsNotExist(err) {
			t.Errorf("%s after the reset: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "reports/01-hv-a-boot.cose")); err != nil {
		t.Errorf("the report was removed: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(out, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "log", "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := resetDemoLog(out); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("a DIR/log with another file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "log", "notes.txt")); err != nil {
		t.Errorf("the other file: %v", err)
	}
}
