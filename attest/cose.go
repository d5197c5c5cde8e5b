package attest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha3"
	"fmt"
	"io"

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
	opts crypto.SignerOpts
}

func (c coseSigner) Algorithm() cose.Algorithm { return AlgMLDSA65 }

func (c coseSigner) Sign(rnd io.Reader, toBeSigned []byte) ([]byte, error) {
	return c.s.Sign(rnd, toBeSigned, c.opts)
}

// coseVerifier adapts a PublicKey to go-cose.
type coseVerifier struct{ k *PublicKey }

func (c coseVerifier) Algorithm() cose.Algorithm { return AlgMLDSA65 }

func (c coseVerifier) Verify(toBeSigned, sig []byte) error {
	if !c.k.verify(toBeSigned, sig) {
		return ErrSignature
	}
	return nil
}

// SignOptions tune signing. The zero value is right for production.
type SignOptions struct {
	// Deterministic selects deterministic ML-DSA (reproducible vectors).
	Deterministic bool
}

func (o *SignOptions) signerOpts() crypto.SignerOpts {
	if o != nil && o.Deterministic {
		return DeterministicSigning
	}
	return crypto.Hash(0)
}

// sign1 builds a tagged COSE_Sign1 over payload with the one protected header
// hvmon uses: {1: -49, 4: key id, 16: typ}, and an empty unprotected header.
func sign1(s Signer, typ string, payload []byte, opts *SignOptions) ([]byte, error) {
	kid := s.KeyID()
	hdr := protectedHeader{Alg: int64(AlgMLDSA65), Kid: kid[:], Typ: typ}
	inner, err := encMode.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("encoding protected header: %w", err)
	}
	raw, err := encMode.Marshal(inner) // go-cose keeps the protected header as its bstr wrapping
	if err != nil {
		return nil, fmt.Errorf("encoding protected header: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.RawProtected = raw
	msg.Headers.Protected.SetAlgorithm(AlgMLDSA65)
	msg.Headers.RawUnprotected = []byte{0xa0} // the empty map
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, coseSigner{s, opts.signerOpts()}); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("encoding COSE_Sign1: %w", err)
	}
	return out, nil
}

// envelope is a parsed, not yet verified, COSE_Sign1.
type envelope struct {
	msg *cose.Sign1Message
	alg int64
	kid Digest
	typ string
}

// openEnvelope parses a tagged COSE_Sign1 strictly: size bound, tag 18,
// definite lengths, no trailing bytes, the exact encoding hvmon writes,
// protected header with exactly alg, kid (32 bytes) and typ, empty
// unprotected header, attached payload, and a signature of ML-DSA-65 size.
// It checks no signature.
func openEnvelope(what string, data []byte) (*envelope, error) {
	if len(data) > MaxReportSize {
		return nil, malformed(what, fmt.Sprintf("larger than %d bytes", MaxReportSize), nil)
	}
	msg := cose.NewSign1Message()
	if err := msg.UnmarshalCBOR(data); err != nil {
		return nil, malformed(what, "not a tagged COSE_Sign1", err)
	}
	again, err := msg.MarshalCBOR()
	if err != nil || !bytes.Equal(again, data) {
		return nil, malformed(what, "COSE_Sign1 not in deterministic encoding", err)
	}
	var inner []byte
	if err := decMode.Unmarshal(msg.Headers.RawProtected, &inner); err != nil {
		return nil, malformed(what, "protected header is not a byte string", err)
	}
	var hdr protectedHeader
	if err := decodeCanonical(what+" protected header", inner, &hdr); err != nil {
		return nil, err
	}
	if !bytes.Equal(msg.Headers.RawUnprotected, []byte{0xa0}) {
		return nil, malformed(what, "unprotected header must be empty", nil)
	}
	kid, err := toDigest(what, "protected header kid", hdr.Kid)
	if err != nil {
		return nil, err
	}
	if len(msg.Signature) != SignatureSize {
		return nil, malformed(what, fmt.Sprintf("signature must be %d bytes, got %d", SignatureSize, len(msg.Signature)), nil)
	}
	return &envelope{msg: msg, alg: hdr.Alg, kid: kid, typ: hdr.Typ}, nil
}

// verify checks the envelope's algorithm, type and signature under k.
func (e *envelope) verify(typ string, k *PublicKey) error {
	if e.alg != int64(AlgMLDSA65) {
		return fmt.Errorf("%w: alg %d, want %d (ML-DSA-65)", ErrAlgorithm, e.alg, int64(AlgMLDSA65))
	}
	if e.typ != typ {
		return fmt.Errorf("%w: content type %q, want %q", ErrSignature, e.typ, typ)
	}
	if err := e.msg.Verify(nil, coseVerifier{k}); err != nil {
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
	if _, err := decodeReport(payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return sign1(s, TypeReport, payload, opts)
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
	if _, err := decodeGuestEvidence(payload); err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return sign1(s, TypeGuestEvidence, payload, opts)
}

// ReportDataTag is the domain separation tag of the REPORT_DATA binding.
const ReportDataTag = "hvmon guest evidence report-data v1\x00"

// GuestReportData returns the 64 bytes a guest puts in the hardware report's
// REPORT_DATA field: SHA3-512(ReportDataTag || canonical CBOR of g without
// its hardware evidence).
func GuestReportData(g *GuestEvidence) ([64]byte, error) {
	w := g.toWire()
	w.Hardware = nil
	b, err := encMode.Marshal(w)
	if err != nil {
		return [64]byte{}, fmt.Errorf("encoding guest evidence: %w", err)
	}
	h := sha3.New512()
	h.Write([]byte(ReportDataTag))
	h.Write(b)
	var out [64]byte
	h.Sum(out[:0])
	return out, nil
}
