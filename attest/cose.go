package attest

import (
	"crypto"
	"crypto/rand"
	"crypto/sha3"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// AlgMLDSA65 is the COSE algorithm identifier of ML-DSA-65 (RFC 9964). go-cose
// has no constant for it; its Signer and Verifier interfaces carry it.
const AlgMLDSA65 = cose.Algorithm(-49)

// Signer signs hvmon objects. *PrivateKey implements it; a key kept in an
// HSM or a future crypto/mldsa key can too.
type Signer interface {
	crypto.Signer
	KeyID() Digest
}

// coseSigner adapts a Signer to go-cose.
type coseSigner struct {
	s    Signer
	alg  cose.Algorithm // always AlgMLDSA65 outside tests
	opts crypto.SignerOpts
}

func (c coseSigner) Algorithm() cose.Algorithm { return c.alg }

func (c coseSigner) Sign(rnd io.Reader, toBeSigned []byte) ([]byte, error) {
	return c.s.Sign(rnd, toBeSigned, c.opts)
}

// SignOptions tune signing. The zero value is right for production.
type SignOptions struct {
	// Deterministic selects deterministic ML-DSA (reproducible vectors).
	Deterministic bool
}

func (o *SignOptions) signerOpts() crypto.SignerOpts {
	if o != nil && o.Deterministic {
		return deterministicSigning
	}
	return crypto.Hash(0)
}

// sign1 builds a tagged COSE_Sign1 over payload with the one protected header
// hvmon uses: {1: -49, 4: key id, 16: typ}, and an empty unprotected header.
func sign1(s Signer, typ string, payload []byte, opts *SignOptions) ([]byte, error) {
	kid := s.KeyID()
	return signWithHeader(s, protectedHeader{Alg: int64(AlgMLDSA65), Kid: kid[:], Typ: typ}, payload, opts)
}

// signWithHeader signs payload under any protected header; tests use it to
// build the hostile inputs Verify must refuse.
func signWithHeader(s Signer, hdr protectedHeader, payload []byte, opts *SignOptions) ([]byte, error) {
	inner, err := encMode.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("encoding protected header: %w", err)
	}
	raw, err := encMode.Marshal(inner) // go-cose keeps the protected header as its bstr wrapping
	if err != nil {
		return nil, fmt.Errorf("encoding protected header: %w", err)
	}
	// The size is fixed before signing (ML-DSA-65 signatures have one
	// length): an object Verify would refuse as too large is never signed.
	if n := sign1Size(len(raw), len(payload)); n > MaxReportSize {
		return nil, tooLarge(hdr.Typ, n)
	}
	msg := cose.NewSign1Message()
	msg.Headers.RawProtected = raw
	msg.Headers.Protected.SetAlgorithm(cose.Algorithm(hdr.Alg))
	msg.Headers.RawUnprotected = []byte{0xa0} // the empty map
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, coseSigner{s, cose.Algorithm(hdr.Alg), opts.signerOpts()}); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("encoding COSE_Sign1: %w", err)
	}
	if len(out) > MaxReportSize { // the finished size, whatever the estimate said
		return nil, tooLarge(hdr.Typ, len(out))
	}
	return out, nil
}

// sign1Size is the length of a tagged COSE_Sign1 whose protected header
// bstr is protLen bytes (head included) and whose payload is payloadLen
// bytes: tag, array head, protected, the empty unprotected map, payload,
// signature.
func sign1Size(protLen, payloadLen int) int {
	return 1 + 1 + protLen + 1 + bstrHeadLen(uint64(payloadLen)) + payloadLen + bstrHeadLen(signatureSize) + signatureSize
}

// checkSignedSize refuses a payload whose COSE_Sign1 under s would exceed
// MaxReportSize.
func checkSignedSize(s Signer, typ string, payload []byte) error {
	kid := s.KeyID()
	inner, err := encMode.Marshal(protectedHeader{Alg: int64(AlgMLDSA65), Kid: kid[:], Typ: typ})
	if err != nil {
		return fmt.Errorf("encoding protected header: %w", err)
	}
	if n := sign1Size(bstrLen(inner), len(payload)); n > MaxReportSize {
		return tooLarge(typ, n)
	}
	return nil
}

func tooLarge(typ string, n int) error {
	what := "report"
	if typ == typeGuestEvidence {
		what = "guest evidence"
	}
	return &MalformedError{What: what, Reason: fmt.Sprintf("the signed object would be %d bytes, more than %d (docs/FORMAT.md §10)", n, MaxReportSize), Err: ErrTooLarge}
}

// wireSign1 is the COSE_Sign1 array (RFC 9052 §4.2), without its tag.
type wireSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// envelope is a parsed, not yet verified, COSE_Sign1.
//
// Verification does not go through go-cose: its decoder parses headers into
// generic maps, which measured at 30% of a whole report verification here,
// and it accepts encodings hvmon must refuse (any header layout, any
// integer width). The strict, zero-copy decoder below (the form is fixed,
// so it reads four byte strings in shortest form) and toBeSigned are all of the
// COSE that verification needs; TestGoCOSEInterop checks that go-cose and
// this code agree on every signed object.
type envelope struct {
	raw wireSign1
	alg int64
	kid Digest
	typ string
}

// cborTagSign1 is the tag of COSE_Sign1 (RFC 9052), encoded as one byte.
const cborTagSign1 = 0xd2

// openEnvelope parses a tagged COSE_Sign1 strictly: size bound, tag 18,
// the exact deterministic encoding hvmon writes (no trailing bytes,
// definite shortest lengths), a protected header with exactly alg, kid (32
// bytes) and typ, an empty unprotected header, an attached payload, and a
// signature of ML-DSA-65 size. It checks no signature.
func openEnvelope(what string, data []byte) (*envelope, error) {
	if len(data) > MaxReportSize {
		return nil, malformed(what, fmt.Sprintf("larger than %d bytes", MaxReportSize), nil)
	}
	if len(data) == 0 || data[0] != cborTagSign1 {
		return nil, malformed(what, "not a tagged COSE_Sign1 (tag 18)", nil)
	}
	var e envelope
	var ok bool
	rest := data[1:]
	if len(rest) == 0 || rest[0] != 0x84 {
		return nil, malformed(what, "COSE_Sign1 is not a definite array of four items", nil)
	}
	if e.raw.Protected, rest, ok = readBstr(rest[1:]); !ok {
		return nil, malformed(what, "protected header is not a byte string in shortest form", nil)
	}
	if len(rest) == 0 || rest[0] != 0xa0 {
		return nil, malformed(what, "unprotected header must be an empty map", nil)
	}
	e.raw.Unprotected = rest[:1]
	if e.raw.Payload, rest, ok = readBstr(rest[1:]); !ok {
		return nil, malformed(what, "payload is not an attached byte string in shortest form", nil)
	}
	if e.raw.Signature, rest, ok = readBstr(rest); !ok {
		return nil, malformed(what, "signature is not a byte string in shortest form", nil)
	}
	if len(rest) != 0 {
		return nil, malformed(what, fmt.Sprintf("%d bytes after the COSE_Sign1", len(rest)), nil)
	}
	var hdr protectedHeader
	if err := decodeCanonical(what+" protected header", e.raw.Protected, &hdr); err != nil {
		return nil, err
	}
	if len(e.raw.Payload) == 0 {
		return nil, malformed(what, "payload is empty or detached", nil)
	}
	kid, err := toDigest(what, "protected header kid", hdr.Kid)
	if err != nil {
		return nil, err
	}
	if len(e.raw.Signature) != signatureSize {
		return nil, malformed(what, fmt.Sprintf("signature must be %d bytes, got %d", signatureSize, len(e.raw.Signature)), nil)
	}
	e.alg, e.kid, e.typ = hdr.Alg, kid, hdr.Typ
	return &e, nil
}

// sigStructurePrefix is the deterministic CBOR of a four-element array
// followed by the text string "Signature1".
var sigStructurePrefix = []byte("\x84\x6aSignature1")

// toBeSigned encodes the Sig_structure of RFC 9052 §4.4 in deterministic
// CBOR: ["Signature1", protected, external_aad, payload] with an empty
// external_aad.
func (e *envelope) toBeSigned() []byte {
	p, pl := e.raw.Protected, e.raw.Payload
	b := make([]byte, 0, len(sigStructurePrefix)+bstrLen(p)+1+bstrLen(pl))
	b = append(b, sigStructurePrefix...)
	b = appendBstr(b, p)
	b = append(b, 0x40) // empty external_aad
	return appendBstr(b, pl)
}

// bstrLen is the length of the deterministic encoding of a byte string.
func bstrLen(b []byte) int { return bstrHeadLen(uint64(len(b))) + len(b) }

// readBstr reads one byte string with a definite length in shortest form
// from the front of b. The value aliases b.
func readBstr(b []byte) (val, rest []byte, ok bool) {
	if len(b) == 0 || b[0]>>5 != 2 {
		return nil, nil, false
	}
	var n uint64
	var head int
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		n, head = uint64(ai), 1
	case ai == 24 && len(b) >= 2:
		n, head = uint64(b[1]), 2
	case ai == 25 && len(b) >= 3:
		n, head = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case ai == 26 && len(b) >= 5:
		n, head = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case ai == 27 && len(b) >= 9:
		n, head = binary.BigEndian.Uint64(b[1:]), 9
	default: // indefinite length (31), reserved values, or truncated
		return nil, nil, false
	}
	if n > uint64(len(b)-head) || head != bstrHeadLen(n) {
		return nil, nil, false
	}
	return b[head : head+int(n)], b[head+int(n):], true
}

// bstrHeadLen is the length of the shortest head of a byte string of n bytes.
func bstrHeadLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// appendBstr appends the deterministic encoding of a byte string.
func appendBstr(dst, b []byte) []byte {
	switch n := uint64(len(b)); {
	case n < 24:
		dst = append(dst, 0x40|byte(n))
	case n <= 0xff:
		dst = append(dst, 0x58, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x59, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		dst = append(dst, 0x5a, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x5b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, b...)
}

// payload returns the signed payload.
func (e *envelope) payload() []byte { return e.raw.Payload }

// verify checks the envelope's algorithm, type and signature under k.
func (e *envelope) verify(typ string, k *PublicKey) error {
	if e.alg != int64(AlgMLDSA65) {
		return fmt.Errorf("%w: alg %d, want %d (ML-DSA-65)", ErrAlgorithm, e.alg, int64(AlgMLDSA65))
	}
	if e.typ != typ {
		return fmt.Errorf("%w: content type %q, want %q", ErrSignature, e.typ, typ)
	}
	if !k.verify(e.toBeSigned(), e.raw.Signature) {
		return fmt.Errorf("%w: key %s", ErrSignature, k.KeyID())
	}
	return nil
}

// ReportHash is the identifier of a signed object, used by prev links:
// SHA3-256 of the complete tagged COSE_Sign1 bytes.
func ReportHash(signed []byte) Digest { return Digest(sha3.Sum256(signed)) }

// Sign encodes r in deterministic CBOR and signs it as a COSE_Sign1 with s.
// The attester identity and profile are set from s; times are truncated to
// whole seconds (event_at to milliseconds) as the format stores them.
// Sign refuses a report that Verify would reject as malformed.
func Sign(s Signer, r *Report, opts *SignOptions) ([]byte, error) {
	r.Attester.KeyID = s.KeyID()
	payload, err := encMode.Marshal(r.toWire())
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	if err := checkSignedSize(s, typeReport, payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	if _, err := decodeReport(payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return sign1(s, typeReport, payload, opts)
}

// SignGuestEvidence encodes g and signs it with the guest key s, whose
// public key must be g.GuestKey.
func SignGuestEvidence(s Signer, g *GuestEvidence, opts *SignOptions) ([]byte, error) {
	if KeyIDOf(g.GuestKey) != s.KeyID() {
		return nil, fmt.Errorf("refusing to sign: guest key in the payload is not the signing key")
	}
	payload, err := encMode.Marshal(g.toWire())
	if err != nil {
		return nil, fmt.Errorf("encoding guest evidence: %w", err)
	}
	if err := checkSignedSize(s, typeGuestEvidence, payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	if _, err := decodeGuestEvidence(payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return sign1(s, typeGuestEvidence, payload, opts)
}

// reportDataTag is the domain separation tag of the REPORT_DATA binding.
const reportDataTag = "hvmon guest evidence report-data v1\x00"

// GuestReportData returns the 64 bytes a guest puts in the hardware report's
// REPORT_DATA field: SHA3-512("hvmon guest evidence report-data v1" ‖ 0x00 ‖
// the canonical CBOR of g without its hardware evidence) (docs/FORMAT.md §8).
func GuestReportData(g *GuestEvidence) ([64]byte, error) {
	w := g.toWire()
	w.Hardware = nil
	b, err := encMode.Marshal(w)
	if err != nil {
		return [64]byte{}, fmt.Errorf("encoding guest evidence: %w", err)
	}
	h := sha3.New512()
	h.Write([]byte(reportDataTag))
	h.Write(b)
	var out [64]byte
	h.Sum(out[:0])
	return out, nil
}
