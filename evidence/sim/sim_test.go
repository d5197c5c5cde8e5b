package sim

import (
	"bytes"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevvalidate "github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
)

var (
	seedA = []byte("sim test seed A")
	seedB = []byte("sim test seed B")
	// at is inside every seeded chain's validity.
	at = DefaultNotBefore.AddDate(1, 0, 0)
)

// Seeded RSA key generation takes a fraction of a second per key; every
// test shares one chain per seed.
var (
	snpCache = map[string]*SNP{}
	snpMu    sync.Mutex
)

func seededSNP(t *testing.T, seed []byte) *SNP {
	t.Helper()
	snpMu.Lock()
	defer snpMu.Unlock()
	if s, ok := snpCache[string(seed)]; ok {
		return s
	}
	s, err := NewSNP(Options{Seed: seed})
	if err != nil {
		t.Fatalf("NewSNP(seed %q) = %v", seed, err)
	}
	snpCache[string(seed)] = s
	return s
}

func reportData(b byte) [64]byte {
	var rd [64]byte
	for i := range rd {
		rd[i] = b + byte(i)
	}
	return rd
}

// snpRoots pins a simulated chain the way go-sev-guest expects it.
func snpRoots(t *testing.T, s *SNP) map[string][]*trust.AMDRootCerts {
	t.Helper()
	r := trust.AMDRootCertsProduct(snpProductLine)
	r.ProductCerts = &trust.ProductCerts{Ark: s.ark, Ask: s.ask, Asvk: s.asvk}
	return map[string][]*trust.AMDRootCerts{snpProductLine: {r}}
}

func verifySNP(t *testing.T, report, vcek []byte, roots map[string][]*trust.AMDRootCerts, rd [64]byte) error {
	t.Helper()
	proto, err := abi.ReportToProto(report)
	if err != nil {
		return err
	}
	att := &spb.Attestation{Report: proto, CertificateChain: &spb.CertificateChain{VcekCert: vcek}}
	if err := sevverify.SnpAttestation(att, &sevverify.Options{DisableCertFetching: true, Now: at, TrustedRoots: roots}); err != nil {
		return err
	}
	return sevvalidate.SnpAttestation(att, &sevvalidate.Options{ReportData: rd[:], GuestPolicy: abi.SnpPolicy{SMT: true}})
}

func TestSNPVerifiesAgainstItsRoots(t *testing.T) {
	s := seededSNP(t, seedA)
	rd := reportData(1)
	report, err := s.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	if len(report) != abi.ReportSize {
		t.Fatalf("Report() is %d bytes, want %d", len(report), abi.ReportSize)
	}
	if err := verifySNP(t, report, s.VCEK(), snpRoots(t, s), rd); err != nil {
		t.Fatalf("simulated report does not verify against its own roots: %v", err)
	}
	other := seededSNP(t, seedB)
	if err := verifySNP(t, report, s.VCEK(), snpRoots(t, other), rd); err == nil {
		t.Fatal("simulated report verifies against another seed's roots")
	}
	if err := verifySNP(t, report, s.VCEK(), nil, rd); err == nil {
		t.Fatal("simulated report verifies against the embedded AMD roots")
	}
	if err := verifySNP(t, report, s.VCEK(), snpRoots(t, s), reportData(2)); err == nil {
		t.Fatal("simulated report validates with another REPORT_DATA")
	}
}

func TestSNPPolicy(t *testing.T) {
	s := seededSNP(t, seedA)
	report, err := s.Report(reportData(0))
	if err != nil {
		t.Fatal(err)
	}
	p, err := abi.ReportToProto(report)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := abi.ParseSnpPolicy(p.Policy)
	if err != nil || pol.Debug {
		t.Errorf("default simulated policy %#x: %+v, %v; want a non-debug policy", p.Policy, pol, err)
	}
	if !bytes.Equal(p.ChipId, s.chipID) {
		t.Errorf("CHIP_ID %x, want the VCEK's HWID %x", p.ChipId, s.chipID)
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	a1 := seededSNP(t, seedA)
	a2, err := NewSNP(Options{Seed: seedA})
	if err != nil {
		t.Fatal(err)
	}
	b := seededSNP(t, seedB)
	samePub := func(x, y *x509.Certificate) bool {
		return bytes.Equal(x.RawSubjectPublicKeyInfo, y.RawSubjectPublicKeyInfo) && bytes.Equal(x.RawSubject, y.RawSubject)
	}
	for i, c := range a1.Roots() {
		if !samePub(c, a2.Roots()[i]) {
			t.Errorf("root %d (%s) differs between two chains from the same seed", i, c.Subject.CommonName)
		}
		if samePub(c, b.Roots()[i]) {
			t.Errorf("root %d (%s) is the same for two seeds", i, c.Subject.CommonName)
		}
	}
	// A report from one instance verifies against the other instance's
	// roots: a verifier can derive the roots from the seed alone.
	rd := reportData(3)
	report, err := a2.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySNP(t, report, a2.VCEK(), snpRoots(t, a1), rd); err != nil {
		t.Errorf("report from a second chain of the same seed does not verify against the first's roots: %v", err)
	}

	t1, err := NewTDX(Options{Seed: seedA})
	if err != nil {
		t.Fatal(err)
	}
	t2, err := NewTDX(Options{Seed: seedA})
	if err != nil {
		t.Fatal(err)
	}
	if !samePub(t1.Root(), t2.Root()) {
		t.Error("TDX roots differ between two chains from the same seed")
	}
}

func TestSimulatedCertificatesSayTheyAreSimulated(t *testing.T) {
	s := seededSNP(t, seedA)
	for _, c := range s.Roots() {
		if c.Subject.SerialNumber != simulatedMark {
			t.Errorf("%s subject %q lacks the simulated mark", c.Subject.CommonName, c.Subject)
		}
	}
	td, err := NewTDX(Options{Seed: seedA})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{td.root, td.intermediate, td.pck} {
		if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != tdxOrganization {
			t.Errorf("%s subject %q lacks the simulated mark", c.Subject.CommonName, c.Subject)
		}
	}
}

func verifyTDX(t *testing.T, quote []byte, root *x509.Certificate, rd [64]byte) error {
	t.Helper()
	q, err := tdxabi.QuoteToProto(quote)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if err := tdxverify.TdxQuote(q, &tdxverify.Options{TrustedRoots: pool, Now: at}); err != nil {
		return err
	}
	return tdxvalidate.TdxQuote(q, &tdxvalidate.Options{TdQuoteBodyOptions: tdxvalidate.TdQuoteBodyOptions{ReportData: rd[:]}})
}

func TestTDXVerifiesAgainstItsRoot(t *testing.T) {
	td, err := NewTDX(Options{Seed: seedA})
	if err != nil {
		t.Fatal(err)
	}
	rd := reportData(7)
	quote, err := td.Quote(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTDX(t, quote, td.Root(), rd); err != nil {
		t.Fatalf("simulated quote does not verify against its own root: %v", err)
	}
	other, err := NewTDX(Options{Seed: seedB})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTDX(t, quote, other.Root(), rd); err == nil {
		t.Fatal("simulated quote verifies against another seed's root")
	}
	if err := verifyTDX(t, quote, td.Root(), reportData(8)); err == nil {
		t.Fatal("simulated quote validates with another REPORT_DATA")
	}
	q, _ := tdxabi.QuoteToProto(quote)
	if attrs := q.(*tpb.QuoteV4).TdQuoteBody.TdAttributes; attrs[0]&tdxAttributeDebug != 0 {
		t.Errorf("default simulated TD_ATTRIBUTES %x has DEBUG set", attrs)
	}
}

func TestDebugOption(t *testing.T) {
	td, err := NewTDX(Options{Seed: seedA, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	quote, err := td.Quote(reportData(0))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := tdxabi.QuoteToProto(quote)
	if attrs := q.(*tpb.QuoteV4).TdQuoteBody.TdAttributes; attrs[0]&tdxAttributeDebug == 0 {
		t.Errorf("Debug TD_ATTRIBUTES %x lack DEBUG", attrs)
	}
}

func TestOptions(t *testing.T) {
	if _, err := NewTDX(Options{Measurement: make([]byte, 47)}); err == nil {
		t.Error("NewTDX accepted a 47-byte measurement")
	}
	nb := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	td, err := NewTDX(Options{NotBefore: nb})
	if err != nil {
		t.Fatal(err)
	}
	if !td.Root().NotBefore.Equal(nb) || !td.NotAfter().Equal(nb.AddDate(leafYears, 0, 0)) {
		t.Errorf("validity %s..%s, want from %s", td.Root().NotBefore, td.NotAfter(), nb)
	}
}

// The launch values a host sets (HOST_DATA, MRCONFIGID) appear in the
// evidence, signed: what a policy's bind_vm_identity checks.
func TestLaunchValues(t *testing.T) {
	hostData := bytes.Repeat([]byte{0x4a}, HostDataSize)
	mrConfigID := bytes.Repeat([]byte{0x4b}, MRConfigIDSize)
	s, err := NewSNP(Options{Seed: seedB, HostData: hostData})
	if err != nil {
		t.Fatal(err)
	}
	report, err := s.Report(reportData(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := abi.ReportToProto(report)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.HostData, hostData) {
		t.Errorf("HOST_DATA = %x, want %x", p.HostData, hostData)
	}
	td, err := NewTDX(Options{Seed: seedA, MRConfigID: mrConfigID})
	if err != nil {
		t.Fatal(err)
	}
	quote, err := td.Quote(reportData(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTDX(t, quote, td.Root(), reportData(2)); err != nil {
		t.Fatalf("quote with MRCONFIGID does not verify: %v", err)
	}
	q, _ := tdxabi.QuoteToProto(quote)
	if got := q.(*tpb.QuoteV4).TdQuoteBody.MrConfigId; !bytes.Equal(got, mrConfigID) {
		t.Errorf("MRCONFIGID = %x, want %x", got, mrConfigID)
	}
	// Unset, they are zeros; a wrong size is refused.
	q0, _ := NewTDX(Options{Seed: seedA})
	quote, _ = q0.Quote(reportData(2))
	q, _ = tdxabi.QuoteToProto(quote)
	if got := q.(*tpb.QuoteV4).TdQuoteBody.MrConfigId; !bytes.Equal(got, make([]byte, MRConfigIDSize)) {
		t.Errorf("default MRCONFIGID = %x, want zeros", got)
	}
	if _, err := NewSNP(Options{HostData: make([]byte, 31)}); err == nil {
		t.Error("NewSNP accepted 31 bytes of host data")
	}
	if _, err := NewTDX(Options{MRConfigID: make([]byte, 32)}); err == nil {
		t.Error("NewTDX accepted a 32-byte MRCONFIGID")
	}
}
