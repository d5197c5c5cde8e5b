package evidence

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"

	"hvmon.dev/hvmon/attest"
)

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
	if looksLikeSNPReport(raw) {
		return nil, fmt.Errorf("%w: %s evidence holds an SEV-SNP report", ErrTypeMismatch, hw.Type)
	}
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

func tdxSummary(t attest.Platform, q *tpb.QuoteV4) *Summary {
	b := q.GetTdQuoteBody()
	attrs := binary.LittleEndian.Uint64(b.GetTdAttributes())
	s := &Summary{
		Type:        t,
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
