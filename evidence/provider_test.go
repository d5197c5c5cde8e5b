package evidence

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
)

// certTable builds an AMD certificate table: entries, a zero entry, then
// the blobs.
func certTable(entries map[[16]byte][]byte, order ...[16]byte) []byte {
	hdr := (len(order) + 1) * certTableEntrySize
	var head, data []byte
	for _, g := range order {
		blob := entries[g]
		head = append(head, g[:]...)
		head = binary.LittleEndian.AppendUint32(head, uint32(hdr+len(data)))
		head = binary.LittleEndian.AppendUint32(head, uint32(len(blob)))
		data = append(data, blob...)
	}
	head = append(head, make([]byte, certTableEntrySize)...)
	return append(head, data...)
}

// fakePlatform is a guest whose TEE is simulated: SEV-SNP reports come
// with a certificate table (or without), TDX quotes from a simulated
// enclave.
func fakePlatform(t *testing.T, tsm string, devices ...string) guestOS {
	snp := simSNP(t, "seed one", false)
	td := simTDX(t, "seed one", false)
	return guestOS{
		tsmProvider: func() (string, error) { return tsm, nil },
		exists: func(p string) bool {
			for _, d := range devices {
				if d == p {
					return true
				}
			}
			return false
		},
		quote: quoteBy(func(rd [64]byte) ([]byte, error) {
			r, err := snp.s.Report(rd)
			if err != nil {
				return nil, err
			}
			chain := snp.s.Chain()
			extra := [16]byte{0xec, 0xae} // another GUID: skipped
			tbl := certTable(map[[16]byte][]byte{guidVCEK: chain[0], guidASK: chain[1], guidARK: chain[2], extra: {8, 0, 0, 0, 0, 0, 0, 0}},
				guidARK, guidASK, guidVCEK, extra)
			return append(r, tbl...), nil
		}, td.t.Quote),
	}
}

// quoteBy is a guest driver: snp answers SEV-SNP requests and tdx TDX ones.
func quoteBy(snp, tdx func([64]byte) ([]byte, error)) func(attest.Platform, [64]byte) ([]byte, error) {
	return func(t attest.Platform, rd [64]byte) ([]byte, error) {
		if t == attest.PlatformSEVSNP {
			return snp(rd)
		}
		return tdx(rd)
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		tsm     string
		devices []string
		want    attest.Platform
		how     string
	}{
		{"sev_guest", nil, attest.PlatformSEVSNP, "configfs-tsm"},
		{"tdx_guest", []string{devSEVGuest}, attest.PlatformTDX, "configfs-tsm"},
		{"", []string{devSEVGuest}, attest.PlatformSEVSNP, devSEVGuest},
		{"", []string{devTDXGuest}, attest.PlatformTDX, devTDXGuest},
		{"", nil, "", ""},
		{"arm_cca_guest", nil, "", ""},
	} {
		got, how, err := fakePlatform(t, tc.tsm, tc.devices...).detect()
		if tc.want == "" {
			if !errors.Is(err, ErrNoHardware) {
				t.Errorf("detect(tsm %q, devices %q) = %s, %v; want ErrNoHardware", tc.tsm, tc.devices, got, err)
			}
			continue
		}
		if err != nil || got != tc.want || how != tc.how {
			t.Errorf("detect(tsm %q, devices %q) = %s by %s, %v; want %s by %s", tc.tsm, tc.devices, got, how, err, tc.want, tc.how)
		}
	}
}

// The SEV-SNP provider ships the report with the VCEK, ASK and ARK from
// the platform's certificate table; the evidence verifies (here, relabeled
// as simulated, against the simulated roots the fake platform signs with).
func TestSNPProvider(t *testing.T) {
	p, err := probe(fakePlatform(t, "sev_guest"), ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type() != attest.PlatformSEVSNP {
		t.Fatalf("probe type %s", p.Type())
	}
	rd := testReportData(6)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	chain := simSNP(t, "seed one", false).s.Chain()
	if len(hw.Certs) != 3 || !bytes.Equal(hw.Certs[0], chain[0]) || !bytes.Equal(hw.Certs[1], chain[1]) || !bytes.Equal(hw.Certs[2], chain[2]) {
		t.Errorf("evidence certificates are not VCEK, ASK, ARK")
	}
	_, err = mustVerifier(t, Options{}).Verify(hw, rd, testNow)
	wantErr(t, "simulated platform's report as real SEV-SNP evidence", err, ErrChain)
	hw.Type = attest.PlatformSimulatedSEVSNP
	if _, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: simSNP(t, "seed one", false).Roots()}).Verify(hw, rd, testNow); err != nil {
		t.Errorf("provider evidence does not verify: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Evidence(ctx, rd); !errors.Is(err, context.Canceled) {
		t.Errorf("Evidence(canceled context) = %v", err)
	}
}

// Without a certificate table the configured certificate is shipped; with
// neither, the provider refuses to produce unverifiable evidence.
func TestSNPProviderCertificate(t *testing.T) {
	pl := fakePlatform(t, "sev_guest")
	snp := simSNP(t, "seed one", false)
	pl.quote = quoteBy(func(rd [64]byte) ([]byte, error) { return snp.s.Report(rd) }, nil)
	p, err := newSNPProvider(pl, ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Evidence(t.Context(), testReportData(1)); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Evidence without any certificate = %v, want ErrNoCertificate", err)
	}
	vcek, err := x509.ParseCertificate(snp.s.VCEK())
	if err != nil {
		t.Fatal(err)
	}
	p, err = newSNPProvider(pl, ProviderOptions{SNPCertificate: sim.PEM(vcek)})
	if err != nil {
		t.Fatal(err)
	}
	hw, err := p.Evidence(t.Context(), testReportData(1))
	if err != nil || len(hw.Certs) != 1 {
		t.Fatalf("Evidence with a configured certificate: %v", err)
	}
	hw.Type = attest.PlatformSimulatedSEVSNP
	if _, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: snp.Roots()}).Verify(hw, testReportData(1), testNow); err != nil {
		t.Errorf("evidence with the configured VCEK does not verify: %v", err)
	}
	if _, err := newSNPProvider(pl, ProviderOptions{SNPCertificate: snp.RootsPEM()}); err == nil {
		t.Error("newSNPProvider accepted three certificates as the VCEK")
	}

	// A driver that answers another REPORT_DATA is refused.
	pl.quote = quoteBy(func(rd [64]byte) ([]byte, error) { rd[0] ^= 1; return snp.s.Report(rd) }, nil)
	p, _ = newSNPProvider(pl, ProviderOptions{SNPCertificate: snp.s.VCEK()})
	if _, err := p.Evidence(t.Context(), testReportData(1)); !errors.Is(err, ErrReportData) {
		t.Errorf("Evidence from a driver answering another REPORT_DATA = %v", err)
	}
}

func TestTDXProvider(t *testing.T) {
	p, err := probe(fakePlatform(t, "", devTDXGuest), ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd := testReportData(7)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	hw.Type = attest.PlatformSimulatedTDX
	if _, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: simTDX(t, "seed one", false).Roots()}).Verify(hw, rd, testNow); err != nil {
		t.Errorf("provider evidence does not verify: %v", err)
	}
	if _, err := newTDXProvider(fakePlatform(t, "sev_guest"), ProviderOptions{}); !errors.Is(err, ErrNoHardware) {
		t.Errorf("newTDXProvider on an SEV-SNP guest = %v, want ErrNoHardware", err)
	}
}

func TestNew(t *testing.T) {
	p, err := New(t.Context(), "none", ProviderOptions{})
	if p != nil || err != nil {
		t.Errorf(`New("none") = %v, %v; want nil, nil`, p, err)
	}
	if _, err := New(t.Context(), "sgx", ProviderOptions{}); err == nil || !strings.Contains(err.Error(), "want sev-snp") {
		t.Errorf(`New("sgx") = %v`, err)
	}
	for _, name := range []string{"simulated-sev-snp", "simulated-tdx"} {
		p, err := New(t.Context(), name, ProviderOptions{Simulated: sim.Options{Seed: []byte("seed one")}})
		if err != nil || string(p.Type()) != name {
			t.Fatalf("New(%q) = %v, %v", name, p, err)
		}
		if _, ok := p.(SimulatedProvider); !ok {
			t.Errorf("New(%q) is not a SimulatedProvider", name)
		}
	}
}

// SimulatedRoots derives from a seed the roots a seeded agent's evidence
// verifies against.
func TestSimulatedRoots(t *testing.T) {
	roots, err := SimulatedRoots([]byte("seed one"))
	if err != nil {
		t.Fatal(err)
	}
	v := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: roots})
	for _, p := range []SimulatedProvider{simSNP(t, "seed one", false), simTDX(t, "seed one", false)} {
		rd := testReportData(8)
		hw, err := p.Evidence(t.Context(), rd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(hw, rd, testNow); err != nil {
			t.Errorf("%s evidence against roots derived from its seed: %v", p.Type(), err)
		}
	}
	if _, err := SimulatedRoots(nil); err == nil {
		t.Error("SimulatedRoots(nil) succeeded")
	}
}

func TestParseSNPExtendedReport(t *testing.T) {
	snp := simSNP(t, "seed one", false)
	report, err := snp.s.Report(testReportData(1))
	if err != nil {
		t.Fatal(err)
	}
	chain := snp.s.Chain()
	for _, tc := range []struct {
		name  string
		table []byte
		want  [][]byte
	}{
		{"no table", nil, nil},
		{"full table", certTable(map[[16]byte][]byte{guidARK: chain[2], guidASK: chain[1], guidVCEK: chain[0]}, guidARK, guidASK, guidVCEK), chain},
		{"VCEK only", certTable(map[[16]byte][]byte{guidVCEK: chain[0]}, guidVCEK), chain[:1]},
		// Without the signer's certificate, the rest of the chain is
		// dropped: Certs[0] must be the signer's.
		{"ASK and ARK only", certTable(map[[16]byte][]byte{guidARK: chain[2], guidASK: chain[1]}, guidARK, guidASK), nil},
		{"a VLEK for a VCEK-signed report", certTable(map[[16]byte][]byte{guidVLEK: chain[0]}, guidVLEK), nil},
	} {
		hw, err := ParseSNPExtendedReport(append(bytes.Clone(report), tc.table...))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if hw.Type != attest.PlatformSEVSNP || !bytes.Equal(hw.Report, report) || len(hw.Certs) != len(tc.want) {
			t.Errorf("%s: evidence %s with %d certificates, want %d", tc.name, hw.Type, len(hw.Certs), len(tc.want))
			continue
		}
		for i := range tc.want {
			if !bytes.Equal(hw.Certs[i], tc.want[i]) {
				t.Errorf("%s: certificate %d differs", tc.name, i)
			}
		}
	}
	for name, in := range map[string][]byte{
		"short":             report[:100],
		"VCEK not DER":      append(bytes.Clone(report), certTable(map[[16]byte][]byte{guidVCEK: []byte("x")}, guidVCEK)...),
		"table without end": append(bytes.Clone(report), 1, 2, 3),
		"TDX quote":         sprEvidence(t).Report,
	} {
		if _, err := ParseSNPExtendedReport(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseSNPExtendedReport error %v, want ErrMalformed", name, err)
		}
	}
}
