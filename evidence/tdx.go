package evidence

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sync"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxclient "github.com/google/go-tdx-guest/client"
	"github.com/google/go-tdx-guest/pcs"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/tee"
)

// tdxKind is Intel TDX: quotes v4 signed by the quoting enclave's
// attestation key, which a PCK certificate chain up to Intel's SGX Root CA
// vouches for.
type tdxKind struct{}

func (tdxKind) String() string { return "TDX" }

func (tdxKind) recognize(b []byte) string {
	if looksLikeTDXQuote(b) {
		return "a TDX quote"
	}
	return ""
}

func (tdxKind) parse(hw *attest.HardwareEvidence) (parsedEvidence, error) {
	q, err := parseTDX(hw)
	if err != nil {
		return nil, err
	}
	return tdxEvidence{q}, nil
}

func (tdxKind) guest() (string, string) { return "tdx_guest", devTDXGuest }

func (tdxKind) quote(rd [64]byte) ([]byte, error) {
	qp, err := tdxclient.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoHardware, err)
	}
	return tdxclient.GetRawQuote(qp, rd)
}

func (tdxKind) provider(g guestOS, opts ProviderOptions) (Provider, error) {
	p, err := newTDXProvider(g, opts)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (tdxKind) simulated(opts sim.Options) (SimulatedProvider, error) {
	p, err := NewSimulatedTDX(opts)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// devTDXGuest is the TDX guest device of Linux.
const devTDXGuest = "/dev/tdx_guest"

// MaxQuoteSize bounds a TDX quote. Real quotes are 4 to 8 KiB, most of it
// the PCK certificate chain.
const MaxQuoteSize = 64 << 10

// The layout of a TDX quote v4 (Intel TDX DCAP quote format): header,
// TD quote body, the size of the signed data, then the signed data:
// signature, attestation key, and the certification data (type, size, QE
// report, its signature, QE authentication data, PCK chain).
const (
	quoteHeaderSize    = 0x30
	quoteBodyEnd       = 0x278
	quoteSignedStart   = 0x27c
	quoteSigAndKeySize = 0x80
	typeAndSizeSize    = 6
	qeReportSize       = 0x180
	qeSignatureSize    = 0x40
	tdAttributesOffset = quoteHeaderSize + 0x78
	tdAttributeDebug   = 1 // TD_ATTRIBUTES bit 0, TUD.DEBUG
)

// looksLikeTDXQuote reports whether b starts like a TDX quote v4: version
// 4, ECDSA P-256 attestation key, TEE type TDX.
func looksLikeTDXQuote(b []byte) bool {
	return len(b) >= 8 && binary.LittleEndian.Uint16(b[0:2]) == tdxabi.QuoteVersion &&
		binary.LittleEndian.Uint16(b[2:4]) == tdxabi.AttestationKeyType &&
		binary.LittleEndian.Uint32(b[4:8]) == tdxabi.TeeTDX
}

// checkQuoteLayout walks the nested sizes of a quote v4 and refuses one
// whose sizes point outside it, before go-tdx-guest's parser (which slices
// without checking) sees it. Bytes after the signed data are allowed, as
// the parser allows them; nothing signs them.
func checkQuoteLayout(b []byte) error {
	if len(b) < tdxabi.QuoteMinSize {
		return fmt.Errorf("%d bytes, less than the %d of the smallest quote", len(b), tdxabi.QuoteMinSize)
	}
	if v := binary.LittleEndian.Uint16(b[0:2]); v != tdxabi.QuoteVersion {
		return fmt.Errorf("quote version %d, want %d", v, tdxabi.QuoteVersion)
	}
	size := uint64(binary.LittleEndian.Uint32(b[quoteBodyEnd:quoteSignedStart]))
	if quoteSignedStart+size > uint64(len(b)) {
		return fmt.Errorf("signed data of %d bytes runs past the end", size)
	}
	signed := b[quoteSignedStart : quoteSignedStart+size]
	if len(signed) < quoteSigAndKeySize+typeAndSizeSize {
		return fmt.Errorf("signed data of %d bytes is too short", len(signed))
	}
	certSize := uint64(binary.LittleEndian.Uint32(signed[quoteSigAndKeySize+2 : quoteSigAndKeySize+typeAndSizeSize]))
	cert := signed[quoteSigAndKeySize+typeAndSizeSize:]
	if certSize != uint64(len(cert)) {
		return fmt.Errorf("certification data is %d bytes, its size field says %d", len(cert), certSize)
	}
	authAt := qeReportSize + qeSignatureSize
	if len(cert) < authAt+2 {
		return fmt.Errorf("certification data of %d bytes is too short", len(cert))
	}
	chainAt := authAt + 2 + int(binary.LittleEndian.Uint16(cert[authAt:authAt+2]))
	if chainAt+typeAndSizeSize > len(cert) {
		return fmt.Errorf("QE authentication data runs past the certification data")
	}
	return nil
}

// parseTDX parses TDX hardware evidence: Report is one quote v4, which
// carries its PCK certificate chain; Certs must be empty.
func parseTDX(hw *attest.HardwareEvidence) (*tpb.QuoteV4, error) {
	raw := []byte(hw.Report)
	if len(raw) > MaxQuoteSize {
		return nil, fmt.Errorf("%w: TDX quote is %d bytes, more than %d", ErrMalformed, len(raw), MaxQuoteSize)
	}
	if !looksLikeTDXQuote(raw) {
		return nil, fmt.Errorf("%w: not a TDX quote v4 (version 4, ECDSA P-256 key, TEE type TDX)", ErrMalformed)
	}
	if err := checkQuoteLayout(raw); err != nil {
		return nil, fmt.Errorf("%w: TDX quote: %v", ErrMalformed, err)
	}
	if len(hw.Certs) > 0 {
		return nil, fmt.Errorf("%w: TDX evidence carries %d certificate(s); its chain belongs in the quote", ErrMalformed, len(hw.Certs))
	}
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: TDX quote: %v", ErrMalformed, err)
	}
	q4, ok := q.(*tpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("%w: TDX quote: unsupported format %T", ErrMalformed, q)
	}
	return q4, nil
}

// pckChain returns the quote's PCK chain: leaf, intermediate, root.
func pckChain(q *tpb.QuoteV4) ([]*x509.Certificate, error) {
	rest := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var out []*x509.Certificate
	for len(out) < 3 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PCK chain has %d certificate(s), want 3", len(out))
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PCK chain certificate %d: %v", len(out), err)
		}
		out = append(out, c)
	}
	return out, nil
}

// tdxRoots picks the trust anchors for a quote: the configured roots, or,
// for real TDX evidence without configured roots, the quote's own root if
// it is the pinned Intel SGX Root CA.
func tdxRoots(q *tpb.QuoteV4, configured []*x509.Certificate, pinIntel bool) ([]*x509.Certificate, error) {
	if !pinIntel {
		if len(configured) == 0 {
			return nil, fmt.Errorf("%w: no TDX roots configured", ErrChain)
		}
		return configured, nil
	}
	chain, err := pckChain(q)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChain, err)
	}
	if !isPinnedIntelRoot(chain[2]) {
		return nil, fmt.Errorf("%w: the quote's root %q is not the pinned Intel SGX Root CA", ErrChain, chain[2].Subject)
	}
	return chain[2:], nil
}

// chainVerifies reports whether the quote's PCK chain verifies to roots at
// now, by the rules go-tdx-guest applies to it.
func chainVerifies(q *tpb.QuoteV4, roots []*x509.Certificate, now time.Time) error {
	chain, err := pckChain(q)
	if err != nil {
		return err
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: certPool(roots), Intermediates: certPool(chain[1:2]), CurrentTime: now}); err != nil {
		return err
	}
	if _, err := pcs.PckCertificateExtensions(chain[0]); err != nil {
		return err
	}
	return nil
}

// tdxEvidence is TDX evidence, parsed but not verified.
type tdxEvidence struct{ q *tpb.QuoteV4 }

// verify implements parsedEvidence: the chain ends in the configured roots,
// the pinned Intel SGX Root CA, or the simulated roots.
func (e tdxEvidence) verify(v *Verifier, simulated bool, rd *[64]byte, now time.Time) (string, error) {
	configured, pin := v.intel, v.intel == nil
	if simulated {
		configured, pin = v.simIntel, false
	}
	roots, err := tdxRoots(e.q, configured, pin)
	if err != nil {
		return "", err
	}
	err = v.verifyTDX(e.q, roots, rd, now)
	if !genuine(err) {
		return "", err
	}
	return tdxRootName(simulated, pin), err
}

func tdxRootName(simulated, pinned bool) string {
	switch {
	case simulated:
		return "simulated Intel-style root"
	case pinned:
		return "pinned Intel SGX Root CA"
	default:
		return "configured Intel root"
	}
}

// verifyTDX checks the quote's PCK chain against roots at now, the QE
// report's signature and binding of the attestation key, the quote's
// signature, then the rules: debug, REPORT_DATA (unless rd is nil), the
// collateral when configured, and go-tdx-guest's field checks (XFAM and
// TD_ATTRIBUTES bits).
func (v *Verifier) verifyTDX(q *tpb.QuoteV4, roots []*x509.Certificate, rd *[64]byte, now time.Time) error {
	err := tdxverify.TdxQuote(q, &tdxverify.Options{
		// Never nil: a nil pool makes the library use its embedded
		// root and log about it to standard output.
		TrustedRoots: certPool(roots),
		Now:          now,
	})
	if err != nil {
		if cerr := chainVerifies(q, roots, now); cerr != nil {
			return fmt.Errorf("%w: TDX PCK chain: %v", ErrChain, err)
		}
		return fmt.Errorf("%w: TDX quote: %v", ErrSignature, err)
	}
	attrs := binary.LittleEndian.Uint64(q.GetTdQuoteBody().GetTdAttributes())
	if attrs&tdAttributeDebug != 0 && !v.opts.AllowDebugUnsafe {
		return fmt.Errorf("%w: TDX TD_ATTRIBUTES %016x has DEBUG set", ErrDebug, attrs)
	}
	got := q.GetTdQuoteBody().GetReportData()
	if rd != nil && subtle.ConstantTimeCompare(got, rd[:]) != 1 {
		return fmt.Errorf("%w: TDX REPORT_DATA is %x, want %x", ErrReportData, got, rd[:])
	}
	if c := v.opts.TDXCollateral; c != nil {
		// A second pass, now that the chain and signatures are known
		// good: what fails here is the collateral's verdict.
		err := tdxverify.TdxQuote(q, &tdxverify.Options{
			TrustedRoots:  certPool(roots),
			Now:           now,
			GetCollateral: true,
			Getter:        collateralGetter{c},
		})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCollateral, err)
		}
	}
	vo := &tdxvalidate.Options{}
	if rd != nil {
		vo.TdQuoteBodyOptions.ReportData = rd[:]
	}
	if err := tdxvalidate.TdxQuote(q, vo); err != nil {
		return fmt.Errorf("%w: TDX: %v", ErrPolicy, err)
	}
	return nil
}

// summary implements parsedEvidence.
func (e tdxEvidence) summary() *Summary {
	q := e.q
	b := q.GetTdQuoteBody()
	attrs := binary.LittleEndian.Uint64(b.GetTdAttributes())
	s := &Summary{
		Signer:      "PCK",
		Measurement: b.GetMrTd(),
		ReportData:  b.GetReportData(),
		Debug:       attrs&tdAttributeDebug != 0,
		TCB:         hex.EncodeToString(b.GetTeeTcbSvn()),
		Attributes:  fmt.Sprintf("%016x", attrs),
		MRConfigID:  b.GetMrConfigId(),
	}
	for _, r := range b.GetRtmrs() {
		s.RTMRs = append(s.RTMRs, bytes.Clone(r))
	}
	if chain, err := pckChain(q); err == nil {
		if exts, err := pcs.PckCertificateExtensions(chain[0]); err == nil {
			s.Product = "FMSPC " + exts.FMSPC
		}
	}
	return s
}

// facts implements parsedEvidence.
func (e tdxEvidence) facts() *tee.Facts {
	b := e.q.GetTdQuoteBody()
	attrs := binary.LittleEndian.Uint64(b.GetTdAttributes())
	t := &tee.TDXFacts{
		MRTD:          bytes.Clone(b.GetMrTd()),
		MRConfigID:    bytes.Clone(b.GetMrConfigId()),
		MROwner:       bytes.Clone(b.GetMrOwner()),
		MROwnerConfig: bytes.Clone(b.GetMrOwnerConfig()),
		MRSeam:        bytes.Clone(b.GetMrSeam()),
		TDAttributes:  attrs,
		XFAM:          binary.LittleEndian.Uint64(b.GetXfam()),
		TEETCBSVN:     bytes.Clone(b.GetTeeTcbSvn()),
	}
	for i, m := range b.GetRtmrs() {
		if i < len(t.RTMRs) {
			t.RTMRs[i] = bytes.Clone(m)
		}
	}
	return &tee.Facts{Measurement: t.MRTD, Debug: attrs&tdAttributeDebug != 0, TDX: t}
}

// tdxProvider gets TDX quotes from the guest driver.
type tdxProvider struct {
	g   guestOS
	log hclog.Logger
	mu  sync.Mutex
}

func newTDXProvider(g guestOS, opts ProviderOptions) (*tdxProvider, error) {
	if err := g.has(tdxKind{}); err != nil {
		return nil, err
	}
	return &tdxProvider{g: g, log: opts.logger()}, nil
}

// Type implements Provider.
func (t *tdxProvider) Type() attest.Platform { return attest.PlatformTDX }

// Evidence implements Provider. The request cannot be interrupted once it
// reached the driver; ctx is checked before.
func (t *tdxProvider) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := t.g.quote(attest.PlatformTDX, reportData)
	if err != nil {
		return nil, fmt.Errorf("TDX quote: %w", err)
	}
	hw := &attest.HardwareEvidence{Type: attest.PlatformTDX, Report: bytes.Clone(raw)}
	q, err := parseTDX(hw)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(q.GetTdQuoteBody().GetReportData(), reportData[:]) {
		return nil, fmt.Errorf("%w: the driver returned a quote for another REPORT_DATA", ErrReportData)
	}
	return hw, nil
}

// SimulatedTDX is the simulated-tdx provider.
type SimulatedTDX struct{ t *sim.TDX }

// NewSimulatedTDX returns a provider of simulated TDX evidence: quote v4
// structures (TD_ATTRIBUTES without DEBUG unless opts.Debug) whose PCK
// chain ends in a generated Intel-style root.
func NewSimulatedTDX(opts sim.Options) (*SimulatedTDX, error) {
	t, err := sim.NewTDX(opts)
	if err != nil {
		return nil, err
	}
	return &SimulatedTDX{t}, nil
}

// Type implements Provider.
func (p *SimulatedTDX) Type() attest.Platform { return attest.PlatformSimulatedTDX }

// Evidence implements Provider.
func (p *SimulatedTDX) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := p.t.Quote(reportData)
	if err != nil {
		return nil, err
	}
	return &attest.HardwareEvidence{Type: attest.PlatformSimulatedTDX, Report: q}, nil
}

// Roots implements SimulatedProvider.
func (p *SimulatedTDX) Roots() []*x509.Certificate { return []*x509.Certificate{p.t.Root()} }

// RootsPEM implements SimulatedProvider.
func (p *SimulatedTDX) RootsPEM() []byte { return p.t.RootPEM() }
