//go:build !nologd

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
)

// lifecycleVector is the chain vector of the demo's lifecycle: boot,
// periodic and migrate-out on hv-a; migrate-in, snapshot, on-demand,
// restore (a rollback) and shutdown on hv-b.
const lifecycleVector = "../../policy/testdata/chain/lifecycle"

// vectorLifecycle stores the vector's reports in the stores of their
// hosts, in order, as the demo's supervisors would. The vector's hosts
// sign with two keys; the demo's with one: each report is signed again
// with the run's key, its host chain link moved to the new bytes (the
// guest evidence is left as it is).
func vectorLifecycle(t *testing.T) demo.Lifecycle {
	return func(ctx context.Context, h *demo.Hosts) error {
		paths, err := filepath.Glob(filepath.Join(lifecycleVector, "*.cose"))
		if err != nil || len(paths) == 0 {
			t.Fatalf("no reports in %s (%v)", lifecycleVector, err)
		}
		prev := map[string]*attest.Digest{}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			in, err := attest.Inspect(b)
			if err != nil {
				return err
			}
			name := filepath.Base(p)[3:7] // NN-hv-X-EVENT.cose
			in.Report.Prev = prev[name]
			if b, err = attest.Sign(h.Key(), in.Report, &attest.SignOptions{Deterministic: true}); err != nil {
				return err
			}
			rh := attest.ReportHash(b)
			prev[name] = &rh
			store, stored, err := h.Store(name)
			if err != nil {
				return err
			}
			e, err := store.Put(ctx, in.Report.Workload, b, in.Report)
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

// runDemoLog runs the demo's log part over the lifecycle vector with the
// demo's in-process log server, its output in out.
func runDemoLog(t *testing.T, out string, narrative *bytes.Buffer) *demo.Result {
	t.Helper()
	key, err := keyfile.LoadPrivate("../../testdata/keys/host.key", keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(out, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := resetDemoLog(out); err != nil {
		t.Fatal(err)
	}
	start := func(ctx context.Context, dir string, hosts []*attest.PublicKey) (*demo.LogServer, error) {
		return startDemoLog(ctx, dir, hosts, hclog.NewNullLogger())
	}
	res, err := demo.RunLifecycle(t.Context(), demo.Options{Key: key, Out: narrative, StartLog: start, LogDir: filepath.Join(out, "log")}, vectorLifecycle(t))
	if err != nil {
		t.Fatalf("RunLifecycle: %v\n%s", err, narrative)
	}
	return res
}

// The demo's log: every report of both hosts gets a proof that verifies,
// at its own index; the monitor finds nothing wrong with the log and the
// chain audit across it names the restore's rollback, as verify --chain
// does; the demo's files verify with hvmon verify --log-key and hvmon log
// audit as the demo prints them.
func TestDemoLog(t *testing.T) {
	out := t.TempDir()
	var narrative bytes.Buffer
	res := runDemoLog(t, out, &narrative)

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
	var rollback bool
	for _, f := range l.Audit.Findings {
		if strings.HasPrefix(f.Check, "log.") && f.Status != policy.Affirming {
			t.Errorf("log-level finding %+v", f)
		}
		rollback = rollback || (f.Check == "chain.guest" && f.Reason == "rollback" && f.Status == policy.Contraindicated)
	}
	if !rollback || l.Audit.Status != policy.Contraindicated {
		t.Errorf("audit verdict %s, rollback found: %t; want the restore's rollback, contraindicated", l.Audit.Status, rollback)
	}
	for _, dir := range []string{".antispam", ".state", "tile"} {
		if _, err := os.Stat(filepath.Join(out, "log", dir)); err != nil {
			t.Errorf("the log directory: %v", err)
		}
	}

	// The command's output: files, the timeline, verify with the proofs,
	// and the log summary.
	var stdout bytes.Buffer
	a := &app{ctx: t.Context(), stdout: &stdout, stderr: &stdout, log: hclog.NewNullLogger()}
	err := a.demoReport(res, out)
	t.Logf("hvmon demo's output after the VM's lifecycle:\n%s%s", narrative.String(), stdout.String())
	if err != nil {
		t.Fatalf("demoReport: %v", err)
	}
	for _, want := range []string{
		"LOG", "--log-key " + filepath.Join(out, "log.vkey") + " --require-log",
		"log demo.hvmon.dev/log ok index 7 of tree size 8",
		"checkpoint: demo.hvmon.dev/log, tree size 8, root ",
		"proofs: 8 of 8 reports proven",
		"chain.guest", "rollback", "No log-level finding",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	// hvmon verify --log-key checked every report's proof, those that
	// failed only their appraisal too, though --at is long before the
	// checkpoints were signed.
	if n := strings.Count(stdout.String(), "log demo.hvmon.dev/log ok index "); n != 8 {
		t.Errorf("%d reports' proofs verified by hvmon verify, want 8", n)
	}
	proofs, _ := filepath.Glob(filepath.Join(out, "reports", "*.proof"))
	if len(proofs) != 8 {
		t.Errorf("%d proof files in %s/reports, want 8", len(proofs), out)
	}

	// The re-run the demo prints gives the same verdict from the files.
	var sink bytes.Buffer
	args := demoLogAuditArgs(out, filepath.Join(out, "host.pub"), filepath.Join(out, "log.vkey"))
	if code := run(args, nil, &sink, &sink); code != exitAppraisal || !strings.Contains(sink.String(), "rollback") {
		t.Errorf("hvmon %s: exit %d, want %d naming the rollback\n%s", strings.Join(args, " "), code, exitAppraisal, sink.String())
	}
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
	_, err = demo.RunLifecycle(t.Context(), demo.Options{Key: key, StartLog: start, LogDir: filepath.Join(out, "log"), LogWait: 3 * time.Second},
		vectorLifecycle(t))
	if err == nil || !strings.Contains(err.Error(), "8 of 8 stored reports have none") || !strings.Contains(err.Error(), "hv-b shutdown (host seq 4)") {
		t.Fatalf("RunLifecycle with a log that refuses every report: %v", err)
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
