package evidence

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	sevclient "github.com/google/go-sev-guest/client"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevvalidate "github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/tee"
)

// snpKind is AMD SEV-SNP: 1184-byte attestation reports signed by the
// chip's VCEK (or a VLEK), certified by AMD's ASK (or ASVK) and ARK.
type snpKind struct{}

func (snpKind) String() string { return "SEV-SNP" }

func (snpKind) recognize(b []byte) string {
	if looksLikeSNPReport(b) {
		return "an SEV-SNP report"
	}
	return ""
}

func (snpKind) parse(hw *attest.HardwareEvidence) (parsedEvidence, error) {
	e, err := parseSNP(hw)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (snpKind) guest() (string, string) { return "sev_guest", devSEVGuest }

func (snpKind) quote(rd [64]byte) ([]byte, error) {
	qp, err := sevclient.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoHardware, err)
	}
	return qp.GetRawQuote(rd)
}

func (snpKind) provider(g guestOS, opts ProviderOptions) (Provider, error) {
	p, err := newSNPProvider(g, opts)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (snpKind) simulated(opts sim.Options) (SimulatedProvider, error) {
	p, err := NewSimulatedSNP(opts)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// devSEVGuest is the SEV-SNP guest device of Linux.
const devSEVGuest = "/dev/sev-guest"

// SNPReportSize is the size of an SEV-SNP ATTESTATION_REPORT.
const SNPReportSize = abi.ReportSize

// snpReportDataAt is the offset of REPORT_DATA in the report.
const snpReportDataAt = 0x50

// snpEvidence is SEV-SNP evidence, parsed but not verified.
type snpEvidence struct {
	raw    []byte
	report *spb.Report
	signer abi.ReportSigner
	ek     *x509.Certificate // the VCEK or VLEK certificate, Certs[0]
	policy abi.SnpPolicy
}

// looksLikeSNPReport reports whether b has the shape of an SEV-SNP report:
// its size, a known version and the ECDSA P-384 signature algorithm.
func looksLikeSNPReport(b []byte) bool {
	if len(b) != SNPReportSize {
		return false
	}
	v := binary.LittleEndian.Uint32(b[0:4])
	return v >= abi.ReportVersion2 && v <= abi.ReportVersion5 && abi.SignatureAlgo(b) == abi.SignEcdsaP384Sha384
}

// parseSNP parses SEV-SNP hardware evidence: Report is exactly one
// ATTESTATION_REPORT (reserved bytes zero, known version and signature
// algorithm); Certs[0] is the certificate of the key the report names as
// its signer (VCEK or VLEK), and any further certificates (the ASK or ASVK
// and the ARK, as the platform handed them out) are carried but never
// trusted: the chain is checked against pinned roots.
func parseSNP(hw *attest.HardwareEvidence) (*snpEvidence, error) {
	raw := []byte(hw.Report)
	if len(raw) != SNPReportSize {
		return nil, fmt.Errorf("%w: SEV-SNP report is %d bytes, want %d", ErrMalformed, len(raw), SNPReportSize)
	}
	if err := abi.ValidateReportFormat(raw); err != nil {
		return nil, fmt.Errorf("%w: SEV-SNP report: %v", ErrMalformed, err)
	}
	if a := abi.SignatureAlgo(raw); a != abi.SignEcdsaP384Sha384 {
		return nil, fmt.Errorf("%w: SEV-SNP report: signature algorithm %d, want %d (ECDSA P-384 with SHA-384)", ErrMalformed, a, abi.SignEcdsaP384Sha384)
	}
	r, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: SEV-SNP report: %v", ErrMalformed, err)
	}
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("%w: SEV-SNP report: %v", ErrMalformed, err)
	}
	if info.SigningKey != abi.VcekReportSigner && info.SigningKey != abi.VlekReportSigner {
		return nil, fmt.Errorf("%w: SEV-SNP report: signing key %v, want VCEK or VLEK", ErrMalformed, info.SigningKey)
	}
	pol, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("%w: SEV-SNP report: %v", ErrMalformed, err)
	}
	e := &snpEvidence{raw: raw, report: r, signer: info.SigningKey, policy: pol}
	if len(hw.Certs) == 0 {
		return e, nil
	}
	for i, c := range hw.Certs {
		cert, err := x509.ParseCertificate(c)
		if err != nil {
			return nil, fmt.Errorf("%w: SEV-SNP certificate %d: %v", ErrMalformed, i, err)
		}
		if i == 0 {
			e.ek = cert
		}
	}
	return e, nil
}

// ParseSNPExtendedReport builds SEV-SNP hardware evidence from what the
// firmware returns for an extended report request: the 1184-byte report,
// then the platform's certificate table (configfs-tsm's outblob followed by
// its auxblob, or the report and data pages of the extended guest
// request). The evidence carries the report, then the signer's certificate
// (VCEK or VLEK, as the report names it), then the ASK and ARK when the
// table has them. Without a table, or without the signer's certificate in
// it, Certs is empty.
func ParseSNPExtendedReport(b []byte) (*attest.HardwareEvidence, error) {
	if err := notOtherKind(snpKind{}, attest.PlatformSEVSNP, b); err != nil {
		return nil, err
	}
	if len(b) < SNPReportSize {
		return nil, fmt.Errorf("%w: SEV-SNP extended report of %d bytes is shorter than a report", ErrMalformed, len(b))
	}
	hw := &attest.HardwareEvidence{Type: attest.PlatformSEVSNP, Report: bytes.Clone(b[:SNPReportSize])}
	e, err := parseSNP(hw)
	if err != nil {
		return nil, err
	}
	table, err := parseCertTable(b[SNPReportSize:])
	if err != nil {
		return nil, err
	}
	ek, chain := table.vcek, [][]byte{table.ask, table.ark}
	if e.signer == abi.VlekReportSigner {
		ek, chain = table.vlek, [][]byte{table.ark} // the table has no slot for the ASVK
	}
	if ek == nil {
		return hw, nil
	}
	for _, c := range append([][]byte{ek}, chain...) {
		if c == nil {
			continue
		}
		if _, err := x509.ParseCertificate(c); err != nil {
			return nil, fmt.Errorf("%w: SEV-SNP certificate table: %v", ErrMalformed, err)
		}
		hw.Certs = append(hw.Certs, c)
	}
	return hw, nil
}

// attestation returns the report and its signer's certificate in
// go-sev-guest's form, fresh for each library call.
func (e *snpEvidence) attestation() *spb.Attestation {
	chain := &spb.CertificateChain{}
	if e.signer == abi.VlekReportSigner {
		chain.VlekCert = e.ek.Raw
	} else {
		chain.VcekCert = e.ek.Raw
	}
	return &spb.Attestation{Report: e.report, CertificateChain: chain}
}

// verify implements parsedEvidence: the chain ends in the pinned AMD
// roots of the report's product line, or the simulated ones.
func (e *snpEvidence) verify(v *Verifier, simulated bool, rd *[64]byte, now time.Time) (string, error) {
	roots, origin := v.amd, "pinned AMD"
	if simulated {
		roots, origin = v.simAMD, "simulated AMD"
	} else if v.opts.AMDRoots == nil {
		origin = "embedded AMD"
	}
	err := v.verifySNP(e, roots, rd, now)
	if !genuine(err) {
		return "", err
	}
	return fmt.Sprintf("%s %s root", origin, e.productLine()), err
}

// verifySNP checks the report's signature and the signer's certificate
// chain against roots at now, then the rules: debug, REPORT_DATA (unless
// rd is nil), and go-sev-guest's consistency checks (the VCEK's TCB is the
// reported TCB, the chip id is the VCEK's, committed firmware is not newer
// than current).
func (v *Verifier) verifySNP(e *snpEvidence, roots amdRoots, rd *[64]byte, now time.Time) error {
	if e.ek == nil {
		return fmt.Errorf("%w: no %v certificate in the evidence", ErrChain, e.signer)
	}
	trusted := roots.trusted(e.signer)
	if len(trusted) == 0 {
		// An empty map would make go-sev-guest fall back to its
		// embedded AMD roots.
		return fmt.Errorf("%w: no AMD roots configured for %v-signed reports", ErrChain, e.signer)
	}
	err := sevverify.SnpAttestation(e.attestation(), &sevverify.Options{
		DisableCertFetching: true,
		Now:                 now,
		TrustedRoots:        trusted,
	})
	if err != nil {
		// The library reports chain and signature failures alike; tell
		// them apart by checking the signature alone.
		if serr := sevverify.SnpReportSignature(e.raw, e.ek); serr != nil {
			return fmt.Errorf("%w: SEV-SNP report not signed by the %v in the evidence: %v", ErrSignature, e.signer, serr)
		}
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	if e.policy.Debug && !v.opts.AllowDebugUnsafe {
		return fmt.Errorf("%w: SEV-SNP guest policy %#x has DEBUG set", ErrDebug, e.report.GetPolicy())
	}
	if rd != nil && subtle.ConstantTimeCompare(e.report.GetReportData(), rd[:]) != 1 {
		return fmt.Errorf("%w: SEV-SNP REPORT_DATA is %x, want %x", ErrReportData, e.report.GetReportData(), rd[:])
	}
	// The guest policy bound here is the most permissive one: debug was
	// decided above, and the others (SMT, migration agent, ABI version)
	// are for appraisal against reference values, not for verification.
	vo := &sevvalidate.Options{
		GuestPolicy:               abi.SnpPolicy{SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true},
		PermitProvisionalFirmware: true,
	}
	if rd != nil {
		vo.ReportData = rd[:]
	}
	if err := sevvalidate.SnpAttestation(e.attestation(), vo); err != nil {
		return fmt.Errorf("%w: SEV-SNP: %v", ErrPolicy, err)
	}
	return nil
}

// productLine is the AMD product line the report or its signer's
// certificate names, or "".
func (e *snpEvidence) productLine() string {
	if fms := e.report.GetCpuid1EaxFms(); fms != 0 {
		return kds.ProductLineFromFms(fms)
	}
	if e.ek == nil {
		return ""
	}
	exts, err := kds.CertificateExtensions(e.ek, e.signer)
	if err != nil {
		return ""
	}
	p, err := kds.ParseProductName(exts.ProductName, e.signer)
	if err != nil {
		return ""
	}
	return kds.ProductLine(p)
}

// summary implements parsedEvidence.
func (e *snpEvidence) summary() *Summary {
	r := e.report
	vmpl := r.GetVmpl()
	tcb := kds.TCBVersion(r.GetReportedTcb())
	line := e.productLine()
	tcbText := fmt.Sprintf("%016x", uint64(tcb))
	if line == "Milan" || line == "Genoa" {
		// The layout of the TCB version before Turin.
		p := kds.DecomposeTCBVersion(tcb)
		tcbText += fmt.Sprintf(" (bootloader %d, tee %d, snp %d, microcode %d)", p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl)
	}
	return &Summary{
		Signer:      e.signer.String(),
		Product:     line,
		Measurement: r.GetMeasurement(),
		ReportData:  r.GetReportData(),
		Debug:       e.policy.Debug,
		TCB:         tcbText,
		Policy:      fmt.Sprintf("%#x", r.GetPolicy()),
		HostData:    r.GetHostData(),
		VMPL:        &vmpl,
	}
}

// facts implements parsedEvidence.
func (e *snpEvidence) facts() *tee.Facts {
	r := e.report
	s := &tee.SNPFacts{
		Policy:         r.GetPolicy(),
		SMT:            e.policy.SMT,
		MigrateMA:      e.policy.MigrateMA,
		ABIMajor:       e.policy.ABIMajor,
		ABIMinor:       e.policy.ABIMinor,
		SingleSocket:   e.policy.SingleSocket,
		ReportedTCBRaw: r.GetReportedTcb(),
		GuestSVN:       r.GetGuestSvn(),
		VMPL:           r.GetVmpl(),
		HostData:       bytes.Clone(r.GetHostData()),
		IDKeyDigest:    bytes.Clone(r.GetIdKeyDigest()),
		Product:        e.productLine(),
		Signer:         e.signer.String(),
	}
	if s.Product == "Milan" || s.Product == "Genoa" {
		// The layout of the TCB version before Turin.
		p := kds.DecomposeTCBVersion(kds.TCBVersion(s.ReportedTCBRaw))
		s.ReportedTCB = tee.TCBParts{Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
		s.TCBKnown = true
	}
	return &tee.Facts{Measurement: bytes.Clone(r.GetMeasurement()), Debug: e.policy.Debug, SNP: s}
}

// snpProvider gets SEV-SNP extended reports from the guest driver.
type snpProvider struct {
	g    guestOS
	log  hclog.Logger
	cert *x509.Certificate // configured VCEK/VLEK, or nil
	mu   sync.Mutex        // one request at a time: the driver serializes anyway
}

func newSNPProvider(g guestOS, opts ProviderOptions) (*snpProvider, error) {
	if err := g.has(snpKind{}); err != nil {
		return nil, err
	}
	s := &snpProvider{g: g, log: opts.logger()}
	if opts.SNPCertificate != nil {
		certs, err := ParseCertificates(opts.SNPCertificate)
		if err != nil {
			return nil, fmt.Errorf("SNP certificate: %w", err)
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("SNP certificate: %d certificates, want the VCEK or VLEK only", len(certs))
		}
		s.cert = certs[0]
	}
	return s, nil
}

// Type implements Provider.
func (s *snpProvider) Type() attest.Platform { return attest.PlatformSEVSNP }

// Evidence implements Provider. The request cannot be interrupted once it
// reached the driver; ctx is checked before.
func (s *snpProvider) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := s.g.quote(attest.PlatformSEVSNP, reportData)
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP report: %w", err)
	}
	return s.assemble(raw, reportData)
}

// assemble turns what the driver returned (a report, then a certificate
// table) into hardware evidence, falling back on the configured
// certificate when the platform supplied none.
func (s *snpProvider) assemble(raw []byte, reportData [64]byte) (*attest.HardwareEvidence, error) {
	hw, err := ParseSNPExtendedReport(raw)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(hw.Report[snpReportDataAt:snpReportDataAt+64], reportData[:]) {
		return nil, fmt.Errorf("%w: the driver returned a report for another REPORT_DATA", ErrReportData)
	}
	if len(hw.Certs) == 0 && s.cert != nil {
		s.log.Debug("platform supplied no certificate; using the configured one")
		hw.Certs = []attest.HexBytes{s.cert.Raw}
	}
	if len(hw.Certs) == 0 {
		return nil, fmt.Errorf("%w: the host supplied none and none is configured", ErrNoCertificate)
	}
	return hw, nil
}

// SimulatedSNP is the simulated-sev-snp provider.
type SimulatedSNP struct{ s *sim.SNP }

// NewSimulatedSNP returns a provider of simulated SEV-SNP evidence: real
// report structures (non-debug policy unless opts.Debug) signed by a
// generated AMD-style chain, shipped with its VCEK, ASK and ARK.
func NewSimulatedSNP(opts sim.Options) (*SimulatedSNP, error) {
	s, err := sim.NewSNP(opts)
	if err != nil {
		return nil, err
	}
	return &SimulatedSNP{s}, nil
}

// Type implements Provider.
func (p *SimulatedSNP) Type() attest.Platform { return attest.PlatformSimulatedSEVSNP }

// Evidence implements Provider.
func (p *SimulatedSNP) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := p.s.Report(reportData)
	if err != nil {
		return nil, err
	}
	hw := &attest.HardwareEvidence{Type: attest.PlatformSimulatedSEVSNP, Report: r}
	for _, c := range p.s.Chain() {
		hw.Certs = append(hw.Certs, c)
	}
	return hw, nil
}

// Roots implements SimulatedProvider.
func (p *SimulatedSNP) Roots() []*x509.Certificate { return p.s.Roots() }

// RootsPEM implements SimulatedProvider.
func (p *SimulatedSNP) RootsPEM() []byte { return p.s.RootsPEM() }
