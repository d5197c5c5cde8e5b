package evidence

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

// The recorded Milan report verifies offline against the embedded AMD
// roots; it comes from a debug VM, so only with debug allowed.
func TestMilanReport(t *testing.T) {
	hw := milanEvidence(t)
	v := mustVerifier(t, Options{AllowDebugUnsafe: true})
	s, err := v.Verify(hw, milanReportData(), testNow)
	if err != nil {
		t.Fatalf("Verify(recorded Milan report) = %v (%s)", err, class(err))
	}
	wantMeas := "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
	if got := hex.EncodeToString(s.Measurement); got != wantMeas {
		t.Errorf("measurement %s, want %s", got, wantMeas)
	}
	if !s.Debug || s.Signer != "VCEK" || s.Product != "Milan" || s.Root != "embedded AMD Milan root" || s.Policy != "0xb0000" {
		t.Errorf("summary %+v: want a debug guest, VCEK, Milan, the embedded root, policy 0xb0000", s)
	}
	if want := "4405000000000002 (bootloader 2, tee 0, snp 5, microcode 68)"; s.TCB != want {
		t.Errorf("TCB %q, want %q", s.TCB, want)
	}

	if _, err := mustVerifier(t, Options{}).Verify(hw, milanReportData(), testNow); !errors.Is(err, ErrDebug) {
		t.Errorf("Verify without AllowDebugUnsafe = %v (%s), want ErrDebug", err, class(err))
	}
	if !errors.Is(ErrDebug, ErrPolicy) {
		t.Error("ErrDebug is not an ErrPolicy")
	}
	s, err = v.Verify(hw, testReportData(9), testNow)
	wantErr(t, "Verify with another REPORT_DATA", err, ErrReportData)
	if s == nil || s.Root == "" {
		t.Errorf("Verify with another REPORT_DATA returned no summary of the genuine evidence")
	}
	if s, err := v.Verify(flip(hw, 0x90), milanReportData(), testNow); s != nil || !errors.Is(err, ErrSignature) {
		t.Errorf("Verify(changed report) = %+v, %v; want no summary and ErrSignature", s, err)
	}
	if _, err := v.VerifyWithoutReportDataUnsafe(hw, testNow); err != nil {
		t.Errorf("VerifyWithoutReportDataUnsafe = %v", err)
	}
	for _, at := range []time.Time{time.Date(2022, 9, 23, 0, 0, 0, 0, time.UTC), time.Date(2029, 9, 25, 0, 0, 0, 0, time.UTC)} {
		_, err := v.Verify(hw, milanReportData(), at)
		wantErr(t, "Verify at "+at.Format(time.DateOnly)+", outside the VCEK's validity", err, ErrChain)
	}
}

// Every one-byte change of the recorded Milan report is refused, and a
// change in the signed part or the signature is a signature failure.
func TestMilanReportEveryByte(t *testing.T) {
	t.Parallel()
	hw := milanEvidence(t)
	v := mustVerifier(t, Options{AllowDebugUnsafe: true})
	counts := map[string]int{}
	for i := range hw.Report {
		_, err := v.Verify(flip(hw, i), milanReportData(), testNow)
		if err == nil {
			t.Fatalf("report with byte %#x flipped verifies", i)
		}
		counts[class(err)]++
		if (i >= 0x50 && i < 0x90) || (i >= 0x2a0 && i < 0x2a0+144) { // REPORT_DATA, signature r and s
			wantErr(t, "byte "+hex.EncodeToString([]byte{byte(i >> 8), byte(i)})+" flipped", err, ErrSignature)
		}
	}
	t.Logf("failures by class: %v", counts)
	// The VCEK certificate's signature (its last bytes) broken: a chain
	// failure.
	c := *hw
	cert := bytes.Clone(hw.Certs[0])
	cert[len(cert)-1] ^= 0x01
	c.Certs = []attest.HexBytes{cert}
	_, err := v.Verify(&c, milanReportData(), testNow)
	wantErr(t, "VCEK with its signature flipped", err, ErrChain)
}

func TestMilanReportShapes(t *testing.T) {
	hw := milanEvidence(t)
	v := mustVerifier(t, Options{AllowDebugUnsafe: true})
	for _, tc := range []struct {
		name string
		hw   attest.HardwareEvidence
		want error
	}{
		{"no certificate", attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: hw.Report}, ErrChain},
		{"certificate not DER", attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: hw.Report, Certs: []attest.HexBytes{[]byte("x")}}, ErrMalformed},
		{"truncated", attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: hw.Report[:SNPReportSize-1], Certs: hw.Certs}, ErrMalformed},
		{"trailing byte", attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: append(bytes.Clone(hw.Report), 0), Certs: hw.Certs}, ErrMalformed},
		{"labeled tdx", attest.HardwareEvidence{Type: attest.PlatformTDX, Report: hw.Report}, ErrTypeMismatch},
		{"unknown type", attest.HardwareEvidence{Type: "sev", Report: hw.Report, Certs: hw.Certs}, ErrUnknownType},
		{"labeled simulated", attest.HardwareEvidence{Type: attest.PlatformSimulatedSEVSNP, Report: hw.Report, Certs: hw.Certs}, ErrSimulatedNotTrusted},
	} {
		_, err := v.Verify(&tc.hw, milanReportData(), testNow)
		wantErr(t, tc.name, err, tc.want)
	}
	_, err := v.Verify(nil, milanReportData(), testNow)
	wantErr(t, "nil evidence", err, ErrMalformed)
}

// The recorded Sapphire Rapids quote verifies against the pinned Intel
// root without collateral.
func TestSPRQuote(t *testing.T) {
	hw := sprEvidence(t)
	rd := reportDataOf(t, hw)
	v := mustVerifier(t, Options{})
	s, err := v.Verify(hw, rd, testNow)
	if err != nil {
		t.Fatalf("Verify(recorded SPR quote) = %v (%s)", err, class(err))
	}
	if s.Debug || s.Signer != "PCK" || s.Root != "pinned Intel SGX Root CA" || s.TCB != "03000400000000000000000000000000" || len(s.RTMRs) != 4 {
		t.Errorf("summary %+v", s)
	}
	_, err = v.Verify(hw, testReportData(1), testNow)
	wantErr(t, "Verify with another REPORT_DATA", err, ErrReportData)
	_, err = v.Verify(hw, rd, time.Date(2029, 9, 21, 0, 0, 0, 0, time.UTC))
	wantErr(t, "Verify after the PCK certificate expired", err, ErrChain)

	// Pinned to another root (a simulated one), the real quote fails.
	other := mustVerifier(t, Options{IntelRoots: simTDX(t, "seed two", false).Roots()})
	_, err = other.Verify(hw, rd, testNow)
	wantErr(t, "Verify against another Intel root", err, ErrChain)

	_, err = v.Verify(&attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: hw.Report}, rd, testNow)
	wantErr(t, "quote labeled sev-snp", err, ErrTypeMismatch)
	_, err = v.Verify(&attest.HardwareEvidence{Type: attest.PlatformTDX, Report: hw.Report, Certs: milanEvidence(t).Certs}, rd, testNow)
	wantErr(t, "quote with certificates", err, ErrMalformed)
}

// Every one-byte change of the recorded quote's signed part (header, body,
// signature, attestation key, QE report and signature, QE authentication
// data, PCK chain) is refused; in the header and body it is a signature
// failure. The quote's trailing bytes are signed by nobody.
func TestSPRQuoteEveryByte(t *testing.T) {
	t.Parallel()
	hw := sprEvidence(t)
	rd := reportDataOf(t, hw)
	v := mustVerifier(t, Options{})
	signedEnd := quoteSignedStart + int(binary.LittleEndian.Uint32(hw.Report[quoteBodyEnd:quoteSignedStart]))
	// Every byte up to the PEM text of the PCK chain; in the chain, whose
	// bytes all fail the same way, every 11th and the last.
	pemAt := bytes.Index(hw.Report, []byte("-----BEGIN"))
	counts := map[string]int{}
	for i := range signedEnd {
		if i > pemAt && i < signedEnd-1 && (i-pemAt)%11 != 0 {
			continue
		}
		_, err := v.Verify(flip(hw, i), rd, testNow)
		if err == nil {
			t.Fatalf("quote with byte %#x flipped verifies", i)
		}
		counts[class(err)]++
		if i >= 8 && i < quoteBodyEnd { // header past the type fields, and body
			wantErr(t, "byte "+hex.EncodeToString([]byte{byte(i >> 8), byte(i)})+" flipped", err, ErrSignature)
		}
	}
	t.Logf("failures by class: %v", counts)
}

// The Intel root pinned here is the one go-tdx-guest embeds.
func TestPinnedIntelRootIsTheLibrarys(t *testing.T) {
	certs, err := ParseCertificates(readModuleFile(t, tdxGuestModule, "verify/trusted_root.pem"))
	if err != nil || len(certs) != 1 {
		t.Fatalf("go-tdx-guest's trusted_root.pem: %d certificates, %v", len(certs), err)
	}
	if got := sha256.Sum256(certs[0].Raw); got != intelRootSHA256 {
		t.Errorf("go-tdx-guest's root %s has SHA-256 %x, pinned %x", certs[0].Subject, got, intelRootSHA256)
	}
}

func TestSimulatedSNP(t *testing.T) {
	p := simSNP(t, "seed one", false)
	rd := testReportData(2)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if hw.Type != attest.PlatformSimulatedSEVSNP || len(hw.Report) != SNPReportSize || len(hw.Certs) != 3 {
		t.Fatalf("simulated evidence: type %s, %d-byte report, %d certificates", hw.Type, len(hw.Report), len(hw.Certs))
	}
	trusting := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()})
	s, err := trusting.Verify(hw, rd, testNow)
	if err != nil {
		t.Fatalf("Verify with AllowSimulated and the simulated roots = %v (%s)", err, class(err))
	}
	if s.Debug || s.Root != "simulated AMD Milan root" {
		t.Errorf("summary %+v", s)
	}
	simulatedRefusals(t, hw, rd, p.Roots(), simSNP(t, "seed two", false).Roots())
}

func TestSimulatedTDX(t *testing.T) {
	p := simTDX(t, "seed one", false)
	rd := testReportData(3)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	trusting := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()})
	s, err := trusting.Verify(hw, rd, testNow)
	if err != nil {
		t.Fatalf("Verify with AllowSimulated and the simulated root = %v (%s)", err, class(err))
	}
	if s.Debug || s.Root != "simulated Intel-style root" || s.Product != "FMSPC 00806f050000" {
		t.Errorf("summary %+v", s)
	}
	simulatedRefusals(t, hw, rd, p.Roots(), simTDX(t, "seed two", false).Roots())
}

// simulatedRefusals checks that simulated evidence passes nowhere but with
// AllowSimulated and its own roots.
func simulatedRefusals(t *testing.T, hw *attest.HardwareEvidence, rd [64]byte, roots, otherRoots []*x509.Certificate) {
	t.Helper()
	_, err := mustVerifier(t, Options{}).Verify(hw, rd, testNow)
	wantErr(t, "default verifier", err, ErrSimulatedNotTrusted)
	_, err = mustVerifier(t, Options{SimulatedRoots: roots}).Verify(hw, rd, testNow)
	wantErr(t, "roots without AllowSimulated", err, ErrSimulatedNotTrusted)
	_, err = mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: otherRoots}).Verify(hw, rd, testNow)
	wantErr(t, "AllowSimulated with another chain's roots", err, ErrChain)
	// Pinned as if they were real roots, simulated roots do not make
	// simulated evidence pass, nor relabeled evidence.
	real := Options{AMDRoots: nil, IntelRoots: roots}
	if hw.Type == attest.PlatformSimulatedSEVSNP {
		real = Options{AMDRoots: roots}
	}
	_, err = mustVerifier(t, real).Verify(hw, rd, testNow)
	wantErr(t, "simulated roots pinned as real ones", err, ErrSimulatedNotTrusted)
	relabeled := *hw
	relabeled.Type = map[attest.Platform]attest.Platform{attest.PlatformSimulatedSEVSNP: attest.PlatformSEVSNP, attest.PlatformSimulatedTDX: attest.PlatformTDX}[hw.Type]
	_, err = mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: roots}).Verify(&relabeled, rd, testNow)
	wantErr(t, "simulated evidence labeled real", err, ErrChain)

	trusting := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: roots})
	_, err = trusting.Verify(hw, testReportData(0xee), testNow)
	wantErr(t, "another REPORT_DATA", err, ErrReportData)
	_, err = trusting.Verify(hw, rd, time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC))
	wantErr(t, "before the chain's validity", err, ErrChain)
	// A change to the measurement is a signature failure.
	at := 0x90 // SNP MEASUREMENT
	if hw.Type == attest.PlatformSimulatedTDX {
		at = quoteHeaderSize + 0x88 // MR_TD
	}
	_, err = trusting.Verify(flip(hw, at), rd, testNow)
	wantErr(t, "measurement changed", err, ErrSignature)
}

func TestSimulatedDebug(t *testing.T) {
	for _, p := range []SimulatedProvider{simSNP(t, "debug", true), simTDX(t, "debug", true)} {
		rd := testReportData(4)
		hw, err := p.Evidence(t.Context(), rd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()}).Verify(hw, rd, testNow)
		wantErr(t, string(p.Type())+" debug guest", err, ErrDebug)
		s, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots(), AllowDebugUnsafe: true}).Verify(hw, rd, testNow)
		if err != nil || !s.Debug {
			t.Errorf("%s debug guest with AllowDebugUnsafe: %+v, %v", p.Type(), s, err)
		}
	}
}

func TestNewVerifierOptions(t *testing.T) {
	if _, err := NewVerifier(Options{AllowSimulated: true}); err == nil {
		t.Error("NewVerifier accepted AllowSimulated without SimulatedRoots")
	}
	if _, err := NewVerifier(Options{IntelRoots: []*x509.Certificate{}}); err == nil {
		t.Error("NewVerifier accepted empty IntelRoots")
	}
	td := simTDX(t, "seed two", false)
	if _, err := NewVerifier(Options{AMDRoots: td.Roots()}); err == nil {
		t.Error("NewVerifier accepted an Intel-style root as an AMD root")
	}
	snp := simSNP(t, "seed two", false).Roots()
	if _, err := NewVerifier(Options{AMDRoots: snp[2:]}); err == nil {
		t.Error("NewVerifier accepted an ARK without intermediates")
	}
	if _, err := NewVerifier(Options{AMDRoots: snp[:1]}); err == nil {
		t.Error("NewVerifier accepted an ASK without its ARK")
	}
	if _, err := NewVerifier(Options{AMDRoots: snp}); err != nil {
		t.Errorf("NewVerifier(simulated chain as AMD roots) = %v", err)
	}
}

// A zero time means now: the seeded simulated chains are valid now.
func TestZeroTimeMeansNow(t *testing.T) {
	p := simTDX(t, "seed one", false)
	rd := testReportData(5)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()}).Verify(hw, rd, time.Time{}); err != nil {
		t.Errorf("Verify at the zero time = %v", err)
	}
}

// One Verifier serves concurrent calls (go test -race checks the claim).
func TestVerifierConcurrent(t *testing.T) {
	p := simSNP(t, "seed one", false)
	v := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots(), AllowDebugUnsafe: true})
	spr, milan := sprEvidence(t), milanEvidence(t)
	sprRD := reportDataOf(t, spr)
	errs := make(chan error, 12)
	for i := range 12 {
		go func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = v.Verify(spr, sprRD, testNow)
			case 1:
				_, err = v.Verify(milan, milanReportData(), testNow)
			default:
				rd := testReportData(byte(i))
				var hw *attest.HardwareEvidence
				if hw, err = p.Evidence(t.Context(), rd); err == nil {
					_, err = v.Verify(hw, rd, testNow)
				}
			}
			errs <- err
		}()
	}
	for range 12 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
