package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/mod/sumdb/note"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

// testLog is an in-memory log with two witnesses (Ed25519 0x04 and
// ML-DSA-44 0x06) for the verify and log command tests.
type testLog struct {
	*tlogtest.Log
	vkey           string // the log's verifier key
	w04, w06       note.Signer
	w04Key, w06Key string
}

// signedAt is the fixed time of every test cosignature: in the past, so
// no verifier clock refuses it, and never compared with the wall clock.
var signedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestLog(t testing.TB, origin string) *testLog {
	t.Helper()
	l, err := makeTestLog(origin)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func makeTestLog(origin string) (*testLog, error) {
	opts := tlog.SignerOptions{Now: func() time.Time { return signedAt }, Deterministic: true}
	k, err := tlog.NewKeyFromSeed(origin, sha256.Sum256([]byte("log "+origin)))
	if err != nil {
		return nil, err
	}
	wk, err := tlog.NewKeyFromSeed("w06.example", sha256.Sum256([]byte("witness 06")))
	if err != nil {
		return nil, err
	}
	seed := sha256.Sum256([]byte("witness 04"))
	ek := ed25519.NewKeyFromSeed(seed[:])
	w04, err := tlog.NewEd25519Cosigner("w04.example", ek, opts)
	if err != nil {
		return nil, err
	}
	ev, err := tlog.NewEd25519Verifier("w04.example", ek.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &testLog{Log: tlogtest.New(k, opts), vkey: k.VerifierKey(),
		w04: w04, w06: wk.NoteSigner(opts), w04Key: ev.String(), w06Key: wk.VerifierKey()}, nil
}

// add appends filler, entry and more filler, publishes a checkpoint
// cosigned by witnesses and returns entry's proof.
func (l *testLog) add(t testing.TB, entry []byte, witnesses ...note.Signer) []byte {
	t.Helper()
	if _, err := l.Append([]byte("before"), []byte("before 2")); err != nil {
		t.Fatal(err)
	}
	i, err := l.Append(entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Publish(witnesses...)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := l.Proof(i, cp)
	if err != nil {
		t.Fatal(err)
	}
	return proof
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyLogMatrix runs verify with every kind of proof, with and
// without --require-log, and checks the exit codes.
func TestVerifyLogMatrix(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)
	rep := filepath.Join(dir, "r.cose")
	writeFile(t, rep, report)

	lg := newTestLog(t, "log.example/main")
	bare := lg.add(t, report)
	one04 := lg.add(t, report, lg.w04)
	one06 := lg.add(t, report, lg.w06)
	both := lg.add(t, report, lg.w04, lg.w06)
	other := lg.add(t, []byte("another entry"), lg.w04, lg.w06)
	otherLog := newTestLog(t, "log.example/other")
	foreign := otherLog.add(t, report)

	keyFile := filepath.Join(dir, "log.vkey")
	writeFile(t, keyFile, []byte(lg.vkey+"\n"))
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, b)
		return p
	}
	proofs := map[string]string{
		"bare": put("bare.proof", bare), "one04": put("one04.proof", one04), "one06": put("one06.proof", one06),
		"both": put("both.proof", both), "other": put("other.proof", other), "foreign": put("foreign.proof", foreign),
		"garbage": put("garbage.proof", []byte("c2sp.org/tlog-proof@v1\nindex x\n")),
		"flipped": put("flipped.proof", flipLast(bare)),
		"absent":  filepath.Join(dir, "absent.proof"),
	}
	w04, w06 := []string{"--witness-key", lg.w04Key}, []string{"--witness-key", lg.w06Key}
	cases := []struct {
		name    string
		proof   string
		flags   []string
		lax     int // exit without --require-log
		require int // exit with --require-log
	}{
		{"valid", "bare", nil, 0, 0},
		{"valid key file", "bare", []string{"--log-key", keyFile}, 0, 0},
		{"missing", "absent", nil, 0, 3},
		{"malformed", "garbage", nil, 0, 3},
		{"bad signature", "flipped", nil, 0, 3},
		{"not including", "other", nil, 0, 3},
		{"wrong log key", "foreign", nil, 0, 3},
		{"0x04 witness", "one04", w04, 0, 0},
		{"0x06 witness", "one06", w06, 0, 0},
		{"quorum 0 of 2 (all), both cosigned", "both", append(w04, w06...), 0, 0},
		{"quorum 0 of 2 (all), one cosigned", "one04", append(w04, w06...), 0, 3},
		{"quorum 1 of 2, one cosigned", "one06", append(append(w04, w06...), "--quorum", "1"), 0, 0},
		{"quorum 2 of 2, one cosigned", "one04", append(append(w04, w06...), "--quorum", "2"), 0, 3},
		{"quorum 1 of 2, none cosigned", "bare", append(append(w04, w06...), "--quorum", "1"), 0, 3},
		{"quorum 2 of 2, both cosigned", "both", append(append(w04, w06...), "--quorum", "2"), 0, 0},
	}
	for _, c := range cases {
		for _, required := range []bool{false, true} {
			args := []string{"verify", "--trust", pub, "--proof", proofs[c.proof]}
			if !strings.Contains(strings.Join(c.flags, " "), "--log-key") {
				args = append(args, "--log-key", lg.vkey)
			}
			args = append(args, c.flags...)
			want := c.lax
			if required {
				args, want = append(args, "--require-log"), c.require
			}
			code, stdout, stderr := runIn(t, nil, append(args, rep)...)
			if code != want {
				t.Errorf("%s (require-log %v): exit %d, want %d\n%s%s", c.name, required, code, want, stdout, stderr)
			}
			status := "ok"
			if c.require != 0 {
				status = map[bool]string{false: "warn", true: "fail"}[required]
			}
			if !strings.Contains(stdout, "log  log.example/main  "+status) {
				t.Errorf("%s (require-log %v): no %q log line:\n%s", c.name, required, status, stdout)
			}
		}
	}
}

// TestVerifyLogUsage: the log flags need --log-key, which must be an
// ML-DSA-44 key; a bad --quorum is a usage error.
func TestVerifyLogUsage(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)
	rep := filepath.Join(dir, "r.cose")
	writeFile(t, rep, report)
	lg := newTestLog(t, "log.example/main")
	for _, args := range [][]string{
		{"--require-log"},
		{"--proof", "x.proof"},
		{"--witness-key", lg.w04Key},
		{"--quorum", "1"},
		{"--log-key", lg.w04Key},
		{"--log-key", "no such file"},
		{"--log-key", lg.vkey, "--witness-key", lg.w04Key, "--quorum", "2"},
		{"--log-key", lg.vkey, "--quorum", "-1"},
		{"--log-key", lg.vkey, "--witness-key", lg.w04Key, "--witness-key", lg.w04Key},
	} {
		code, _, stderr := runIn(t, nil, append(append([]string{"verify", "--trust", pub}, args...), rep)...)
		checkFailure(t, strings.Join(args, " "), code, stderr, exitUsage)
	}
}

// TestVerifyLogFindsProof: without --proof, the proof is <base>.proof,
// else the single <base>.*.proof of the key's log; JSON has a log object.
func TestVerifyLogFindsProof(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)
	rep := filepath.Join(dir, "r.cose")
	writeFile(t, rep, report)
	lg := newTestLog(t, "log.example/main")
	otherLog := newTestLog(t, "log.example/other")
	writeFile(t, filepath.Join(dir, "r.other.proof"), otherLog.add(t, report))
	writeFile(t, filepath.Join(dir, "r.main.proof"), lg.add(t, report))

	code, stdout, stderr := runIn(t, nil, "verify", "--trust", pub, "--log-key", lg.vkey, "--require-log", "--json", rep)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	var v struct {
		Log logJSON `json:"log"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Log.Status != "logged" || v.Log.Proof != filepath.Join(dir, "r.main.proof") || v.Log.Index == nil || *v.Log.Index != 2 ||
		v.Log.TreeSize == nil || *v.Log.TreeSize != 4 || v.Log.Origin != "log.example/main" {
		t.Errorf("log object %+v", v.Log)
	}

	// <base>.proof wins over the labelled ones, even when it fails.
	writeFile(t, filepath.Join(dir, "r.proof"), otherLog.add(t, report))
	if code, stdout, _ := runIn(t, nil, "verify", "--trust", pub, "--log-key", lg.vkey, "--require-log", rep); code != exitTrust {
		t.Errorf("r.proof of another log: exit %d, want 3\n%s", code, stdout)
	}
	os.Remove(filepath.Join(dir, "r.proof"))
	// Two labelled proofs of the same log are ambiguous.
	writeFile(t, filepath.Join(dir, "r.second.proof"), lg.add(t, report))
	if code, stdout, _ := runIn(t, nil, "verify", "--trust", pub, "--log-key", lg.vkey, "--require-log", rep); code != exitTrust || !strings.Contains(stdout, "choose one with --proof") {
		t.Errorf("two proofs: exit %d, want 3\n%s", code, stdout)
	}
	// A report that fails keeps its own exit code; no log step runs.
	bad := filepath.Join(dir, "bad.cose")
	writeFile(t, bad, report[:len(report)-1])
	if code, stdout, _ := runIn(t, nil, "verify", "--trust", pub, "--log-key", lg.vkey, "--require-log", bad); code != exitMalformed || strings.Contains(stdout, "log  ") {
		t.Errorf("truncated report: exit %d, want 2\n%s", code, stdout)
	}
}

// TestVerifyChainLog: --chain --log-key checks each report's proof.
func TestVerifyChainLog(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)
	reps := filepath.Join(dir, "reports")
	if err := os.Mkdir(reps, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(reps, "r.cose"), report)
	lg := newTestLog(t, "log.example/main")
	base, _, _ := runIn(t, nil, "verify", "--trust", pub, "--chain", reps)
	if base >= exitTrust && base != exitAppraisal {
		t.Fatalf("chain without log: exit %d", base)
	}
	args := []string{"verify", "--trust", pub, "--chain", "--log-key", lg.vkey}
	if code, stdout, _ := runIn(t, nil, append(args, reps)...); code != base || !strings.Contains(stdout, "log  r.cose  log.example/main  warn") {
		t.Errorf("no proof, lax: exit %d, want %d\n%s", code, base, stdout)
	}
	if code, stdout, _ := runIn(t, nil, append(args, "--require-log", reps)...); code != exitTrust {
		t.Errorf("no proof, required: exit %d, want 3\n%s", code, stdout)
	}
	writeFile(t, filepath.Join(reps, "r.proof"), lg.add(t, report))
	if code, stdout, _ := runIn(t, nil, append(args, "--require-log", "--json", reps)...); code != base || !strings.Contains(stdout, `"status": "logged"`) {
		t.Errorf("logged, required: exit %d, want %d\n%s", code, base, stdout)
	}
	if code, _, stderr := runIn(t, nil, append(args, "--proof", filepath.Join(reps, "r.proof"), reps)...); code != exitUsage {
		t.Errorf("--chain --proof: exit %d, want 1: %s", code, stderr)
	}
}

// flipLast changes a base64 character near the end of a proof: a
// signature byte of its last signature line.
func flipLast(b []byte) []byte {
	out := append([]byte(nil), b...)
	i := len(out) - 10
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

// cmdTlogProve is the script command tlogprove VKEY FILE...: a new log
// (the key of newTestLog's "log.example/main") holds the files, its
// verifier key goes to VKEY and each file's proof next to it.
func cmdTlogProve(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: tlogprove VKEY FILE...")
	}
	lg, err := makeTestLog("log.example/main")
	ts.Check(err)
	var idx []uint64
	for _, f := range args[1:] {
		i, err := lg.Append([]byte(ts.ReadFile(f)))
		ts.Check(err)
		idx = append(idx, i)
	}
	cp, err := lg.Publish()
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(lg.vkey+"\n"), 0o644))
	for n, f := range args[1:] {
		proof, err := lg.Proof(idx[n], cp)
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(strings.TrimSuffix(f, ".cose")+".proof"), proof, 0o644))
	}
}

// TestVerifyLogAsOfIssue: an archived report verified as of its issue
// time (--at) was logged later; its proof's checkpoint, dated after
// --at, still verifies (cosignature times are checked against the real
// clock, not --at).
func TestVerifyLogAsOfIssue(t *testing.T) {
	dir := t.TempDir()
	report, err := os.ReadFile(filepath.Join(chainVectorDir, "clean", "01-hv-a-boot.cose"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := attest.Inspect(report)
	if err != nil {
		t.Fatal(err)
	}
	rep := filepath.Join(dir, "r.cose")
	writeFile(t, rep, report)
	lg := newTestLog(t, "log.example/main")
	writeFile(t, filepath.Join(dir, "r.proof"), lg.add(t, report))
	at := in.Report.IssuedAt.UTC().Format(time.RFC3339)
	trust := filepath.Join(vectorDir, "keys", "host.pub")
	code, stdout, stderr := runIn(t, nil, "verify", "--trust", trust, "--at", at, "--log-key", lg.vkey, "--require-log", rep)
	if code == exitTrust || !strings.Contains(stdout, "log  log.example/main  ok") {
		t.Errorf("verify --at %s --require-log: exit %d\n%s%s", at, code, stdout, stderr)
	}
}
