package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// publishVector publishes a chain vector's reports (minus skip) as a log
// directory signed by lg's key, the log's whole history being these
// entries.
func publishVector(t *testing.T, origin, vector, dir string, skip ...string) *testLog {
	t.Helper()
	lg := newTestLog(t, origin)
	paths, err := filepath.Glob(filepath.Join(chainVectorDir, vector, "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reports in %s", vector)
	}
	for _, p := range paths {
		if slices.Contains(skip, filepath.Base(p)) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lg.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := lg.Publish(lg.w04)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := tlogclient.WriteDir(context.Background(), lg, cp, lg.Size(), dir); err != nil {
		t.Fatal(err)
	}
	return lg
}

func TestLogAudit(t *testing.T) {
	dir := t.TempDir()
	tiles, state := filepath.Join(dir, "log"), filepath.Join(dir, "state.json")
	lg := publishVector(t, "log.example/main", "clean", tiles, "06-hv-b-periodic.cose", "07-hv-b-shutdown.cose")
	args := func(extra ...string) []string {
		return append([]string{"log", "audit", "--tlog", tiles, "--log-key", lg.vkey, "--witness-key", lg.w04Key, "--state", state,
			"--trust", filepath.Join(vectorDir, "keys", "host.pub"), "--trust", filepath.Join(vectorDir, "keys", "other.pub")}, extra...)
	}
	code, stdout, stderr := runIn(t, nil, args()...)
	if code != 0 || !strings.Contains(stdout, "CHECKPOINT log.example/main size 5 (was 0)") {
		t.Fatalf("clean log: exit %d\n%s%s", code, stdout, stderr)
	}
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	// A forged log with the same key, without report 02 but one entry
	// longer: its checkpoint is not consistent with the last one; the
	// state stays.
	publishVector(t, "log.example/main", "clean", tiles, "02-hv-a-periodic.cose")
	code, stdout, stderr = runIn(t, nil, args()...)
	if code != exitTrust || !hasLine(stdout, "log.consistency", "contraindicated", "inconsistent") {
		t.Errorf("forged log: exit %d, want 3\n%s%s", code, stdout, stderr)
	}
	if now, _ := os.ReadFile(state); string(now) != string(saved) {
		t.Errorf("the state changed on a failed run")
	}

	// The real log grew consistently: the state advances.
	publishVector(t, "log.example/main", "clean", tiles, "07-hv-b-shutdown.cose")
	if code, stdout, stderr := runIn(t, nil, args("--json", "--cache", filepath.Join(dir, "cache"))...); code != 0 || !strings.Contains(stdout, `"reason": "consistent"`) {
		t.Fatalf("grown log: exit %d\n%s%s", code, stdout, stderr)
	}
	if now, _ := os.ReadFile(state); string(now) == string(saved) {
		t.Errorf("the state did not advance")
	}

	// The log without report 02 seen fresh: the withheld report is a gap.
	publishVector(t, "log.example/main", "clean", tiles, "02-hv-a-periodic.cose")
	os.Remove(state)
	code, stdout, _ = runIn(t, nil, args()...)
	if code != exitAppraisal || !hasLine(stdout, "chain.host", "entry-1", "contraindicated", "gap") {
		t.Errorf("withheld report: exit %d, want 5\n%s", code, stdout)
	}

	// A report deleted from a store after it was logged is named.
	publishVector(t, "log.example/main", "clean", tiles)
	os.Remove(state)
	store, _ := storeVector(t, "clean", "06-hv-b-periodic.cose")
	code, stdout, _ = runIn(t, nil, args("--store", store)...)
	if code != exitAppraisal || !hasLine(stdout, "log.store", "entry-5", "contraindicated", "deleted_from_store") {
		t.Errorf("deleted from store: exit %d, want 5\n%s", code, stdout)
	}

	// A host holding a proof from a forked history was shown a split
	// view: the run fails.
	fork := filepath.Join(dir, "fork")
	forked := publishVector(t, "log.example/main", "clean", fork, "03-hv-a-migrate-out.cose")
	cp, err := forked.Publish(forked.w04)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := forked.Proof(0, cp)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := host.NewFileStore(store)
	if err != nil {
		t.Fatal(err)
	}
	es, err := fs.List(context.Background(), host.Query{})
	if err != nil || len(es) == 0 {
		t.Fatal(err)
	}
	writeFile(t, strings.TrimSuffix(es[0].Path, ".cose")+".main.proof", proof)
	os.Remove(state)
	code, stdout, _ = runIn(t, nil, args("--store", store)...)
	if code != exitTrust || !strings.Contains(stdout, "split_view") {
		t.Errorf("split view: exit %d, want 3\n%s", code, stdout)
	}
	if _, err := os.Stat(state); err == nil {
		t.Errorf("a failed first run wrote the state")
	}

	// Usage.
	code, _, stderr = runIn(t, nil, "log", "audit", "--tlog", "ftp://log.example", "--log-key", lg.vkey, "--state", state, "--trust", "x")
	checkFailure(t, "URL", code, stderr, exitUsage)
}

// hasLine reports whether a line of out starts with the given fields.
func hasLine(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}
