package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the command in process and returns its exit code and output.
func runIn(t testing.TB, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// fixture makes a key pair and a valid report in dir.
func fixture(t testing.TB, dir string) (pub string, report []byte) {
	t.Helper()
	key := filepath.Join(dir, "attester.key")
	if code, _, stderr := runIn(t, nil, "keygen", "-o", key); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	data := filepath.Join(dir, "a.bin")
	if err := os.WriteFile(data, bytes.Repeat([]byte("weights "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runIn(t, nil, "attest", "--key", key, "--region", "a="+data, "--region", "b="+data+":100:5000", "-o", "-")
	if code != 0 {
		t.Fatalf("attest: exit %d: %s", code, stderr)
	}
	return key + ".pub", []byte(stdout)
}

// checkFailure checks the shape of a run that must not crash: a known exit
// code and at most one error line.
func checkFailure(t *testing.T, what string, code int, stderr string, codes ...int) {
	t.Helper()
	ok := false
	for _, c := range codes {
		ok = ok || code == c
	}
	if !ok {
		t.Errorf("%s: exit %d, want one of %v; stderr: %s", what, code, codes, stderr)
	}
	if strings.Contains(stderr, "internal error") {
		t.Errorf("%s: panicked: %s", what, stderr)
	}
	if code != 0 && (strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "hvmon: ")) {
		t.Errorf("%s: stderr is not one \"hvmon: ...\" line: %q", what, stderr)
	}
}

// FuzzVerify feeds arbitrary bytes to "hvmon verify -" and "hvmon show -":
// they must classify, never crash.
func FuzzVerify(f *testing.F) {
	pub, report := fixture(f, f.TempDir())
	f.Add(report)
	f.Add(report[:len(report)-1])
	f.Add(append(bytes.Clone(report), 0))
	f.Add([]byte{})
	f.Add([]byte{0xd2, 0x84})
	for _, off := range []int{1, 5, 40, len(report) / 2, len(report) - 3400} {
		b := bytes.Clone(report)
		b[off] ^= 0x80
		f.Add(b)
	}
	// The shared vectors: every failure class, hostile encodings.
	seeds, err := filepath.Glob(filepath.Join(vectorDir, "vectors", "*.cose"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed vectors in %s/vectors (%v)", vectorDir, err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		code, _, stderr := runIn(t, data, "verify", "--trust", pub, "-")
		checkFailure(t, "verify", code, stderr, exitOK, exitMalformed, exitTrust, exitFreshness, exitAppraisal)
		code, _, stderr = runIn(t, data, "show", "-")
		checkFailure(t, "show", code, stderr, exitOK, exitMalformed)
	})
}

func TestRunStreams(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)

	// Results on stdout, logs on stderr, even at the most verbose level.
	code, stdout, stderr := runIn(t, report, "--log-level", "trace", "verify", "--trust", pub, "-")
	if code != 0 || !strings.HasSuffix(stdout, "\nVALID\n") || strings.Contains(stdout, "[INFO]") {
		t.Errorf("verify: exit %d, stdout %q", code, stdout)
	}
	if !strings.Contains(stderr, "[INFO]  hvmon: report valid:") {
		t.Errorf("verify at trace level logged %q, want the info line on stderr", stderr)
	}

	// An oversize report is malformed (2) and is not read in full.
	big := make([]byte, 4<<20)
	code, _, stderr = runIn(t, big, "verify", "--trust", pub, "-")
	checkFailure(t, "oversize", code, stderr, exitMalformed)
	if !strings.Contains(stderr, "larger than") {
		t.Errorf("oversize report: stderr %q, want it to say the report is too large", stderr)
	}
}
