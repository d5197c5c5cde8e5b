package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
)

// chainVectorDir holds the chain audit vectors of package policy.
const chainVectorDir = "../../policy/testdata/chain"

// TestChainScript runs the scripts in testdata/chainscript, with the chain
// vectors under chain/NAME and the vector keys (host.pub, other.pub) in the
// work directory. They can use the commands TestScript offers.
func TestChainScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/chainscript",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			if err := os.CopyFS(filepath.Join(env.WorkDir, "chain"), os.DirFS(chainVectorDir)); err != nil {
				return err
			}
			for _, k := range []string{"host.pub", "other.pub"} {
				b, err := os.ReadFile(filepath.Join(vectorDir, "keys", k))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(env.WorkDir, k), b, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"flipbyte": cmdFlipByte,
			"truncate": cmdTruncate,
		},
	})
}

// TestChainVectors runs hvmon verify --chain on every chain vector and
// checks the exit code, the verdict and the findings its want.json names.
func TestChainVectors(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(chainVectorDir, "*", "want.json"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no chain vectors in %s (%v)", chainVectorDir, err)
	}
	for _, w := range dirs {
		dir := filepath.Dir(w)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(w)
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Trust    []string
				VMs      []string
				Status   string
				Exit     int
				Findings []struct{ Check, Status, Reason, Subject string }
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			args := []string{"verify"}
			for _, k := range want.Trust {
				args = append(args, "--trust", filepath.Join(vectorDir, "keys", k))
			}
			args = append(args, "--chain", dir)
			code, stdout, stderr := runIn(t, nil, args...)
			if code != want.Exit {
				t.Fatalf("hvmon %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want.Exit, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "VERDICT: "+want.Status) {
				t.Errorf("last line %q, want VERDICT: %s", last, want.Status)
			}
			for _, f := range want.Findings {
				found := false
				for _, l := range lines {
					fs := strings.Fields(l)
					found = found || len(fs) >= 4 && fs[0] == f.Check && fs[1] == f.Subject && fs[2] == f.Status && fs[3] == f.Reason
				}
				if !found {
					t.Errorf("no line %s %s %s %s in:\n%s", f.Check, f.Subject, f.Status, f.Reason, stdout)
				}
			}

			code, stdout, _ = runIn(t, nil, append([]string{"verify", "--json"}, args[1:]...)...)
			var got struct {
				Status string
				Error  string
				VMs    []struct {
					VM       string
					Timeline []json.RawMessage
				}
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("--json output is not JSON: %v\n%s", err, stdout)
			}
			var vms []string
			for _, h := range got.VMs {
				vms = append(vms, h.VM)
			}
			if code != want.Exit || got.Status != want.Status || (got.Error != "") != (want.Exit != 0) || !slices.Equal(vms, want.VMs) {
				t.Errorf("--json: exit %d, status %q, error %q, VMs %v; want exit %d, status %s, VMs %v", code, got.Status, got.Error, vms, want.Exit, want.Status, want.VMs)
			}
		})
	}
}

// storeVector puts a chain vector's reports into a report store, as a
// daemon would have, and returns the store's directory and how many
// distinct reports it holds. Files named in skip are left out.
func storeVector(t *testing.T, vector string, skip ...string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	s, err := host.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(chainVectorDir, vector, "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reports in vector %s (%v)", vector, err)
	}
	seen := map[attest.Digest]bool{}
	for _, p := range paths {
		if slices.Contains(skip, filepath.Base(p)) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in, err := attest.Inspect(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(context.Background(), in.Report.Workload, b, in.Report); err != nil {
			t.Fatal(err)
		}
		seen[in.ReportHash] = true
	}
	return dir, len(seen)
}

// auditByHash runs a chain audit command with --json and returns its exit
// code and its findings, each with the report hash for its subject (store
// and vector name the same report differently).
func auditByHash(t *testing.T, args ...string) (int, []string) {
	t.Helper()
	code, stdout, stderr := runIn(t, nil, args...)
	var got struct {
		Findings []struct{ Check, Status, Reason, Subject string }
		Reports  []struct {
			Report string
			Hash   string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("hvmon %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	hash := map[string]string{}
	for _, r := range got.Reports {
		hash[r.Report] = r.Hash
	}
	var out []string
	for _, f := range got.Findings {
		out = append(out, strings.Join([]string{f.Check, f.Status, f.Reason, hash[f.Subject]}, " "))
	}
	return code, out
}

// TestLogVerifyIsTheChainAudit: hvmon log verify over a store holding a
// vector's reports gives verify --chain's verdict on the vector: the same
// exit code and the same findings about the same reports. In particular a
// store whose head was deleted (its first stored report is not seq 0) is
// a gap, exit 5, in both.
func TestLogVerifyIsTheChainAudit(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(chainVectorDir, "*", "want.json"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no chain vectors in %s (%v)", chainVectorDir, err)
	}
	trust := []string{"--trust", filepath.Join(vectorDir, "keys", "host.pub"), "--trust", filepath.Join(vectorDir, "keys", "other.pub")}
	tested := 0
	for _, w := range dirs {
		vector := filepath.Base(filepath.Dir(w))
		store, n := storeVector(t, vector)
		files, _ := filepath.Glob(filepath.Join(chainVectorDir, vector, "*.cose"))
		if n != len(files) {
			continue // the same report twice: a store keeps it once
		}
		t.Run(vector, func(t *testing.T) {
			wantCode, want := auditByHash(t, append(append([]string{"verify", "--json"}, trust...), "--chain", filepath.Join(chainVectorDir, vector))...)
			code, got := auditByHash(t, append([]string{"log", "verify", "--json", "--data-dir", store}, trust...)...)
			if code != wantCode || !slices.Equal(got, want) {
				t.Errorf("log verify: exit %d, findings\n%s\nverify --chain: exit %d, findings\n%s", code, strings.Join(got, "\n"), wantCode, strings.Join(want, "\n"))
			}
		})
		tested++
	}
	if tested < 10 {
		t.Fatalf("only %d vectors compared", tested)
	}

	// The deleted head, in text: the same finding line as verify --chain.
	store, _ := storeVector(t, "deleted-head")
	code, stdout, _ := runIn(t, nil, append([]string{"log", "verify", "--data-dir", store}, trust...)...)
	if code != exitAppraisal {
		t.Errorf("log verify of a store without its head: exit %d, want %d\n%s", code, exitAppraisal, stdout)
	}
	for _, want := range []string{
		`(?m)^chain\.host +\S+-periodic-\S+\.cose +contraindicated +gap +host hv-a \(key 307f4559431e\): the history starts at seq 1: the reports at seq 0 to 0 are missing$`,
		`(?m)^chain\.guest +\S+-periodic-\S+\.cose +contraindicated +gap +the guest chain of key fb84aee356dd starts at seq 1`,
		`(?m)^VERDICT: contraindicated .*: gap`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("log verify output does not match %s:\n%s", want, stdout)
		}
	}
	// One host, one VM, its first report deleted.
	store, _ = storeVector(t, "agent-down", "01-hv-a-boot.cose")
	code, stdout, _ = runIn(t, nil, append([]string{"log", "verify", "--data-dir", store}, trust...)...)
	if code != exitAppraisal || !regexp.MustCompile(`(?m)^chain\.host +\S+ +contraindicated +gap +host hv-a \(key 307f4559431e\): the history starts at seq 1`).MatchString(stdout) {
		t.Errorf("log verify of a one-host store without its head: exit %d, want %d and a gap\n%s", code, exitAppraisal, stdout)
	}
	// An empty store: nothing to verify, nothing wrong.
	empty := t.TempDir()
	if err := os.Mkdir(filepath.Join(empty, "reports"), 0o750); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runIn(t, nil, append([]string{"log", "verify", "--data-dir", empty}, trust...)...); code != 0 || !strings.Contains(stdout, "VERDICT: none") {
		t.Errorf("log verify of an empty store: exit %d\n%s%s", code, stdout, stderr)
	}
	// A directory that holds no store, or none at all, is an error (a
	// typo must not read as "nothing wrong"), and read-only commands
	// create nothing.
	none := t.TempDir()
	missing := filepath.Join(none, "typo")
	for _, dir := range []string{none, missing} {
		for _, sub := range [][]string{{"log", "verify"}, {"log", "list"}, {"log", "show", "00"}} {
			args := append(append(sub, "--data-dir", dir), trust...)
			if sub[1] != "verify" {
				args = append(sub, "--data-dir", dir)
			}
			code, stdout, stderr := runIn(t, nil, args...)
			if code != exitUsage || !strings.Contains(stderr, "no report store") {
				t.Errorf("hvmon %v: exit %d, want %d naming the missing store\n%s%s", args, code, exitUsage, stdout, stderr)
			}
		}
	}
	if ents, _ := os.ReadDir(none); len(ents) != 0 {
		t.Errorf("read-only commands created %v", ents)
	}
}

// TestArchivedReport: a stored report checked after its lifetime fails
// freshness with a hint; --as-of-issue verifies it as of its own
// issued-at and says so; policy init takes the same option, and --force
// to overwrite its output.
func TestArchivedReport(t *testing.T) {
	rep := filepath.Join(chainVectorDir, "clean", "01-hv-a-boot.cose")
	trust := filepath.Join(vectorDir, "keys", "host.pub")
	code, _, stderr := runIn(t, nil, "verify", "--trust", trust, rep)
	if code != exitFreshness || !strings.Contains(stderr, "hint:") || !strings.Contains(stderr, "--as-of-issue") {
		t.Errorf("expired report: exit %d, want %d with a hint\n%s", code, exitFreshness, stderr)
	}
	code, stdout, stderr := runIn(t, nil, "verify", "--trust", trust, "--as-of-issue", rep)
	if code == exitFreshness || code == exitTrust || !strings.Contains(stdout, "as of the report's issue time 2026-11-27T12:01:00Z (--as-of-issue)") {
		t.Errorf("--as-of-issue: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stdout, _ := runIn(t, nil, "verify", "--trust", trust, "--as-of-issue", "--json", rep); !strings.Contains(stdout, `"as_of_issue": "2026-11-27T12:01:00Z"`) {
		t.Errorf("--as-of-issue --json:\n%s", stdout)
	}
	if code, _, _ := runIn(t, nil, "verify", "--trust", trust, "--as-of-issue", "--at", "2026-11-27T12:02:00Z", rep); code != exitUsage {
		t.Errorf("--as-of-issue with --at: exit %d, want %d", code, exitUsage)
	}

	out := filepath.Join(t.TempDir(), "vm.policy.hcl")
	init := []string{"policy", "init", "--from", rep, "--trust", trust, "--out", out}
	if code, _, stderr := runIn(t, nil, init...); code != exitFreshness || !strings.Contains(stderr, "--as-of-issue") {
		t.Errorf("policy init of an expired report: exit %d\n%s", code, stderr)
	}
	init = append(init, "--as-of-issue")
	if code, _, stderr := runIn(t, nil, init...); code != 0 || !strings.Contains(stderr, "as of its issue time") {
		t.Fatalf("policy init --as-of-issue: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runIn(t, nil, init...); code != exitUsage || !strings.Contains(stderr, "exists: pass --force to overwrite it") {
		t.Errorf("policy init over an existing file: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runIn(t, nil, append(init, "--force")...); code != 0 {
		t.Errorf("policy init --force: exit %d\n%s", code, stderr)
	}
}

// TestLogShowPrefix: log show takes a unique prefix of a stored report's
// hash; one no report has is not found, and a short one is a usage error
// (host.TestStoreLookup covers a prefix several reports share).
func TestLogShowPrefix(t *testing.T) {
	store, _ := storeVector(t, "clean")
	es, err := (&host.FileStore{Dir: store}).List(context.Background(), host.Query{})
	if err != nil || len(es) < 2 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	full := es[0].Hash.String()
	code, stdout, stderr := runIn(t, nil, "log", "show", "--data-dir", store, strings.ToUpper(full[:12]))
	if code != 0 || !strings.Contains(stdout, es[0].VM) {
		t.Fatalf("log show PREFIX: exit %d\n%s%s", code, stdout, stderr)
	}
	absent := "ffffff"
	for _, e := range es {
		for strings.HasPrefix(e.Hash.String(), absent) {
			absent = "eeeeee"
		}
	}
	if code, _, stderr := runIn(t, nil, "log", "show", "--data-dir", store, absent); code != exitUsage || !strings.Contains(stderr, "report not found") {
		t.Errorf("absent prefix: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runIn(t, nil, "log", "show", "--data-dir", store, full[:4]); code != exitUsage || !strings.Contains(stderr, "want 6 to 64 hex digits") {
		t.Errorf("short prefix: exit %d: %s", code, stderr)
	}
}

// TestVerifyChainStoreLayout: verify --chain takes the daemon's data
// directory, or its reports directory, and audits the same history as log
// verify over that store.
func TestVerifyChainStoreLayout(t *testing.T) {
	store, _ := storeVector(t, "clean")
	trust := []string{"--trust", filepath.Join(vectorDir, "keys", "host.pub"), "--trust", filepath.Join(vectorDir, "keys", "other.pub")}
	_, want, _ := runIn(t, nil, append([]string{"log", "verify", "--data-dir", store}, trust...)...)
	verdict := regexp.MustCompile(`(?m)^VERDICT: .*$`).FindString(want)
	if verdict == "" {
		t.Fatalf("log verify printed no verdict:\n%s", want)
	}
	for _, dir := range []string{store, filepath.Join(store, "reports")} {
		code, got, stderr := runIn(t, nil, append(append([]string{"verify"}, trust...), "--chain", dir)...)
		if code == exitUsage || !strings.Contains(got, verdict) {
			t.Errorf("verify --chain %s: exit %d, want %q\n%s%s", dir, code, verdict, got, stderr)
		}
	}
	if code, _, stderr := runIn(t, nil, append(append([]string{"verify"}, trust...), "--chain", t.TempDir())...); code != exitUsage || !strings.Contains(stderr, "holds no *.cose report") {
		t.Errorf("verify --chain of an empty directory: exit %d: %s", code, stderr)
	}
}
