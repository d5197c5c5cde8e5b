package evidence

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
)

// testNow is inside the validity of every certificate the tests use: the
// recorded Milan VCEK (2022-09-24..2029-09-24), the recorded Sapphire
// Rapids PCK certificate (2022-09-20..2029-09-20) and the seeded simulated
// chains (from 2025-01-01).
var testNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

var (
	modDirs   = map[string]string{}
	modDirsMu sync.Mutex
)

// moduleDir returns where the module cache holds a dependency of this
// module, asking the go command (which resolves it offline: the module is
// in the cache, the test was built against it).
func moduleDir(t testing.TB, path string) string {
	t.Helper()
	modDirsMu.Lock()
	defer modDirsMu.Unlock()
	if d, ok := modDirs[path]; ok {
		return d
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -m %s: %v: %s", path, err, ee.Stderr)
		}
		t.Fatalf("go list -m %s: %v", path, err)
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		t.Fatalf("go list -m %s: no directory; is the module downloaded?", path)
	}
	modDirs[path] = d
	return d
}

// readModuleFile reads a file of a dependency from the module cache.
func readModuleFile(t testing.TB, mod, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleDir(t, mod), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	sevGuestModule = "github.com/google/go-sev-guest"
	tdxGuestModule = "github.com/google/go-tdx-guest"
)

// milanEvidence is the recorded Milan report (a debug VM) with its VCEK.
func milanEvidence(t testing.TB) *attest.HardwareEvidence {
	t.Helper()
	return &attest.HardwareEvidence{
		Type:   attest.PlatformSEVSNP,
		Report: readModuleFile(t, sevGuestModule, "verify/testdata/attestation.bin"),
		Certs:  []attest.HexBytes{readModuleFile(t, sevGuestModule, "verify/testdata/vcek.testcer")},
	}
}

// milanReportData is the REPORT_DATA the recorded Milan report carries.
func milanReportData() [64]byte {
	return [64]byte{1, 2, 3, 4, 5}
}

// sprEvidence is the recorded Sapphire Rapids TDX quote.
func sprEvidence(t testing.TB) *attest.HardwareEvidence {
	t.Helper()
	return &attest.HardwareEvidence{
		Type:   attest.PlatformTDX,
		Report: readModuleFile(t, tdxGuestModule, "testing/testdata/tdx_prod_quote_SPR_E4.dat"),
	}
}

// reportDataOf returns the REPORT_DATA hw carries, read without
// verification.
func reportDataOf(t testing.TB, hw *attest.HardwareEvidence) [64]byte {
	t.Helper()
	s, err := Inspect(hw)
	if err != nil {
		t.Fatal(err)
	}
	return [64]byte(s.ReportData)
}

func testReportData(b byte) [64]byte {
	var rd [64]byte
	for i := range rd {
		rd[i] = b ^ byte(i)
	}
	return rd
}

// Simulated chains from fixed seeds, made once per test binary: seeded
// RSA keys take a moment.
var (
	simMu    sync.Mutex
	simCache = map[string]any{}
)

func cached[T any](t testing.TB, key string, mk func() (T, error)) T {
	t.Helper()
	simMu.Lock()
	defer simMu.Unlock()
	if v, ok := simCache[key]; ok {
		return v.(T)
	}
	v, err := mk()
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	simCache[key] = v
	return v
}

func simSNP(t testing.TB, seed string, debug bool) *SimulatedSNP {
	return cached(t, "snp "+seed+" "+map[bool]string{true: "debug"}[debug], func() (*SimulatedSNP, error) {
		return NewSimulatedSNP(sim.Options{Seed: []byte(seed), Debug: debug})
	})
}

func simTDX(t testing.TB, seed string, debug bool) *SimulatedTDX {
	return cached(t, "tdx "+seed+" "+map[bool]string{true: "debug"}[debug], func() (*SimulatedTDX, error) {
		return NewSimulatedTDX(sim.Options{Seed: []byte(seed), Debug: debug})
	})
}

func mustVerifier(t testing.TB, opts Options) *Verifier {
	t.Helper()
	v, err := NewVerifier(opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// flip returns a copy of hw with the byte at i of the report xored with
// 0x01.
func flip(hw *attest.HardwareEvidence, i int) *attest.HardwareEvidence {
	c := *hw
	c.Report = bytes.Clone(hw.Report)
	c.Report[i] ^= 0x01
	return &c
}

// sentinels are the error classes, for failure messages.
var sentinels = []error{
	ErrUnknownType, ErrTypeMismatch, ErrMalformed, ErrChain, ErrSignature,
	ErrSimulatedNotTrusted, ErrUntrusted, ErrReportData, ErrDebug, ErrPolicy,
}

// class names the most specific sentinel err matches.
func class(err error) string {
	if err == nil {
		return "<nil>"
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "unclassified: " + err.Error()
}

// wantErr fails unless err matches want.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v (%s), want %s", what, err, class(err), want)
	}
}
