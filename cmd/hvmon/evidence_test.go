package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
)

// TestEvidenceScripts runs the evidence*.txtar scripts with the paths of
// the modules that ship recorded evidence ($SEVGUEST, $TDXGUEST) and an
// executable marker ($EVIDENCE_RUNNER) that scripts needing them test
// with [exec:$EVIDENCE_RUNNER]; other runners of the directory skip them.
func TestEvidenceScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/evidence*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no evidence scripts: %v", err)
	}
	sev, tdx := evidenceModuleDir(t, "github.com/google/go-sev-guest"), evidenceModuleDir(t, "github.com/google/go-tdx-guest")
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("SEVGUEST", sev)
			e.Setenv("TDXGUEST", tdx)
			e.Setenv("EVIDENCE_RUNNER", self)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"flipbyte": cmdFlipByte,
			"truncate": cmdTruncate,
		},
	})
}

// evidenceModuleDir asks the go command where the module cache holds a
// dependency; it is there, since this test was built against it.
func evidenceModuleDir(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	d := strings.TrimSpace(string(out))
	if err != nil || d == "" {
		t.Fatalf("go list -m %s: %q, %v", path, d, err)
	}
	return d
}

func TestParseReportData(t *testing.T) {
	full := strings.Repeat("ab", 64)
	for _, tc := range []struct {
		in, err string
	}{
		{full, ""},
		{strings.ToUpper(full), ""},
		{"", "invalid hex: empty value"},
		{full[:126], "want 128 hex digits (64 bytes), got 126"},
		{full + "00", "want 128 hex digits (64 bytes), got 130"},
		{full[:127] + "g", "invalid hex"},
		{"0x" + full[2:], "invalid hex"},
	} {
		rd, err := parseReportData(tc.in)
		if tc.err == "" {
			if err != nil || hex.EncodeToString(rd[:]) != strings.ToLower(tc.in) {
				t.Errorf("parseReportData(%q) = %x, %v", tc.in, rd, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseReportData(%q) error %v, want one containing %q", tc.in, err, tc.err)
		}
		if exitCode(err) != exitUsage {
			t.Errorf("parseReportData(%q) error exits %d, want %d", tc.in, exitCode(err), exitUsage)
		}
	}
}

// FuzzParseReportData: any accepted --report-data is 64 bytes that print
// back as the hex given.
func FuzzParseReportData(f *testing.F) {
	for _, s := range []string{strings.Repeat("0", 128), strings.Repeat("Ab", 64), "00", "", strings.Repeat("0", 127) + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rd, err := parseReportData(s)
		if err != nil {
			if exitCode(err) != exitUsage {
				t.Fatalf("parseReportData(%q) error %v exits %d", s, err, exitCode(err))
			}
			return
		}
		if !strings.EqualFold(hex.EncodeToString(rd[:]), s) {
			t.Fatalf("parseReportData(%q) = %x", s, rd)
		}
	})
}

// Each class of evidence failure exits with the code the help documents,
// and keeps its message.
func TestEvidenceExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{evidence.ErrMalformed, exitMalformed},
		{evidence.ErrTypeMismatch, exitMalformed},
		{evidence.ErrUnknownType, exitMalformed},
		{evidence.ErrChain, exitTrust},
		{evidence.ErrSignature, exitTrust},
		{evidence.ErrSimulatedNotTrusted, exitTrust},
		{evidence.ErrReportData, exitTrust},
		{evidence.ErrDebug, exitAppraisal},
		{evidence.ErrPolicy, exitAppraisal},
		{errors.New("disk on fire"), exitUsage},
	} {
		err := classifyEvidence(fmt.Errorf("f.bin: %w: details", tc.err))
		if got := exitCode(err); got != tc.code {
			t.Errorf("%v exits %d, want %d", tc.err, got, tc.code)
		}
		if want := "f.bin: " + tc.err.Error() + ": details"; err.Error() != want {
			t.Errorf("classified error says %q, want %q", err, want)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("classified error no longer matches %v", tc.err)
		}
		if n := countClasses(err); tc.code != exitUsage && n != 1 {
			t.Errorf("%v matches %d exit classes, want 1", tc.err, n)
		}
	}
}

func countClasses(err error) int {
	n := 0
	for _, c := range []error{attest.ErrMalformed, attest.ErrTrust, attest.ErrFreshness, attest.ErrAppraisal} {
		if errors.Is(err, c) {
			n++
		}
	}
	return n
}
