package evidence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"hvmon.dev/hvmon/attest"
)

func TestParseCertificates(t *testing.T) {
	pemARK := "-----BEGIN CERTIFICATE-----\n" // a prefix for the bad cases
	vcek := milanEvidence(t).Certs[0]
	for _, tc := range []struct {
		name string
		in   []byte
		n    int
		err  string
	}{
		{"AMD chain file", trust.AskArkMilanVcekBytes, 2, ""},
		{"DER", vcek, 1, ""},
		{"PEM with blank lines around", append(append([]byte("\n\n"), simSNP(t, "seed one", false).RootsPEM()...), "\n\n"...), 3, ""},
		{"empty", nil, 0, "empty input"},
		{"whitespace", []byte(" \n"), 0, "empty input"},
		{"DER with a trailing byte", append(bytes.Clone(vcek), 0), 0, "neither PEM nor one DER"},
		{"text", []byte("hello"), 0, "neither PEM nor one DER"},
		{"text after a block", append(bytes.Clone(trust.AskArkMilanVcekBytes), "junk"...), 0, "not a PEM block"},
		{"private key block", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0, `"PRIVATE KEY"`},
		{"truncated block", []byte(pemARK + "MIIB\n"), 0, "not a PEM block"},
		{"block not a certificate", []byte(pemARK + "AAAA\n-----END CERTIFICATE-----\n"), 0, "PEM block 0"},
		{"too many", bytes.Repeat(simSNP(t, "seed one", false).RootsPEM(), 6), 0, "more than 16"},
		{"too large", make([]byte, MaxCertificatesSize+1), 0, "more than"},
	} {
		got, err := ParseCertificates(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: ParseCertificates = %d certificates, %v; want an error containing %q", tc.name, len(got), err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != tc.n {
			t.Errorf("%s: ParseCertificates = %d certificates, %v; want %d", tc.name, len(got), err, tc.n)
		}
	}
}

func TestParseCertTable(t *testing.T) {
	a, b := []byte("vcek"), []byte("ask!")
	ok := certTable(map[[16]byte][]byte{guidVCEK: a, guidASK: b}, guidVCEK, guidASK)
	got, err := parseCertTable(ok)
	if err != nil || !bytes.Equal(got.vcek, a) || !bytes.Equal(got.ask, b) || got.ark != nil || got.vlek != nil {
		t.Fatalf("parseCertTable = %+v, %v", got, err)
	}
	if got, err := parseCertTable(nil); err != nil || got.vcek != nil {
		t.Errorf("parseCertTable(empty) = %+v, %v", got, err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(ok)) }
	for name, in := range map[string][]byte{
		"no terminator":           ok[:certTableEntrySize*2],
		"offset into header":      mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 8); return b }),
		"length past the end":     mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[20:], 1000); return b }),
		"offset+length wraps":     mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 0xffffffff); return b }),
		"repeated role":           certTable(map[[16]byte][]byte{guidVCEK: a}, guidVCEK, guidVCEK),
		"empty certificate":       certTable(map[[16]byte][]byte{guidARK: {}}, guidARK),
		"too many entries":        bytes.Repeat(ok[:certTableEntrySize], maxCertTableRows+1),
		"larger than the cap":     make([]byte, maxCertTableSize+1),
		"entry cut in the middle": ok[:certTableEntrySize+3],
	} {
		if _, err := parseCertTable(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: parseCertTable error %v, want ErrMalformed", name, err)
		}
	}
}

// The embedded AMD roots group into a VCEK and a VLEK chain top per
// product line.
func TestEmbeddedAMDRoots(t *testing.T) {
	certs, err := embeddedAMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	roots, err := groupAMDRoots(certs, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Milan", "Genoa", "Turin"} {
		var ask, asvk int
		for _, r := range roots[line] {
			if r.ask != nil {
				ask++
			}
			if r.asvk != nil {
				asvk++
			}
		}
		if ask != 1 || asvk != 1 {
			t.Errorf("%s: %d ASK and %d ASVK chain tops, want one each", line, ask, asvk)
		}
	}
}

// Verification writes nothing to standard output: go-tdx-guest logs to it
// when used with its implicit root, and callers' standard output may be
// machine-read (hvmon's --json). The test runs the verifications in a
// child process and reads what it wrote.
func TestNothingOnStdout(t *testing.T) {
	if os.Getenv("HVMON_EVIDENCE_STDOUT_CHILD") == "1" {
		quietChild(t)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNothingOnStdout$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HVMON_EVIDENCE_STDOUT_CHILD=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	if stdout.Len() > 0 || stderr.Len() > 0 {
		t.Errorf("verification wrote\nto stdout: %q\nto stderr: %q", stdout.Bytes(), stderr.Bytes())
	}
}

// quietChild exercises every verification path, passing and failing.
func quietChild(t *testing.T) {
	v := mustVerifier(t, Options{})
	spr, milan := sprEvidence(t), milanEvidence(t)
	rd := reportDataOf(t, spr)
	v.Verify(spr, rd, testNow)
	v.Verify(spr, testReportData(0), testNow)
	v.Verify(flip(spr, 0x100), rd, testNow)
	v.Verify(flip(spr, len(spr.Report)-100), rd, testNow)
	v.Verify(milan, milanReportData(), testNow)
	v.Verify(flip(milan, 0x100), milanReportData(), testNow)
	v.Verify(&attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: milan.Report, Certs: []attest.HexBytes{trust.AskArkMilanVcekBytes}}, milanReportData(), testNow)
	mustVerifier(t, Options{IntelRoots: simTDX(t, "seed one", false).Roots()}).Verify(spr, rd, testNow)
	for _, p := range []SimulatedProvider{simSNP(t, "seed one", false), simTDX(t, "debug", true)} {
		hw, _ := p.Evidence(t.Context(), rd)
		mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()}).Verify(hw, rd, testNow)
		Inspect(hw)
	}
	td := simTDX(t, "seed one", false)
	if c, err := td.t.Collateral(testNow, testNow.Add(time.Hour), "OutOfDate"); err == nil {
		hw, _ := td.Evidence(t.Context(), rd)
		tc := &TDXCollateral{TCBInfo: c.TCBInfo, TCBInfoIssuerChain: c.TCBInfoIssuerChain, QEIdentity: c.QEIdentity, QEIdentityIssuerChain: c.QEIdentityIssuerChain}
		mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: td.Roots(), TDXCollateral: tc}).Verify(hw, rd, testNow)
	}
	Inspect(spr)
	Inspect(milan)
	parseCertTable([]byte{1, 2, 3})
}
