package tlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"golang.org/x/mod/sumdb/note"
)

// maxVerifierKey bounds a verifier key's text: an ML-DSA-44 key is about
// 1.8 KB.
const maxVerifierKey = 4 << 10

// Verifier is a C2SP cosignature verifier: an ML-DSA-44 key (type 0x06,
// subtree/v1 message) or an Ed25519 key (type 0x04, cosignature/v1
// message), with its name and key ID. It implements note.Verifier; its
// Verify takes the note text and the signature bytes after the key ID.
type Verifier struct {
	name string
	hash uint32
	typ  byte
	raw  []byte // the public key, without the type byte
	ml   *mldsa44.PublicKey
	ed   ed25519.PublicKey
}

var _ note.Verifier = (*Verifier)(nil)

func newMLDSAVerifier(name string, raw []byte) (*Verifier, error) {
	if len(raw) != mldsaPublicKeySize {
		return nil, malformed("verifier key", fmt.Sprintf("ML-DSA-44 key of %d bytes, want %d", len(raw), mldsaPublicKeySize), nil)
	}
	pk := new(mldsa44.PublicKey)
	if err := pk.UnmarshalBinary(raw); err != nil {
		return nil, malformed("verifier key", "not an ML-DSA-44 public key", err)
	}
	raw = bytes.Clone(raw)
	return &Verifier{name: name, hash: keyID(name, TypeMLDSA44, raw), typ: TypeMLDSA44, raw: raw, ml: pk}, nil
}

// NewEd25519Verifier returns the 0x04 cosignature verifier of an Ed25519
// witness key.
func NewEd25519Verifier(name string, pub ed25519.PublicKey) (*Verifier, error) {
	if err := checkName("verifier key", name); err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, malformed("verifier key", fmt.Sprintf("Ed25519 key of %d bytes, want %d", len(pub), ed25519.PublicKeySize), nil)
	}
	raw := bytes.Clone(pub)
	return &Verifier{name: name, hash: keyID(name, TypeEd25519Cosig, raw), typ: TypeEd25519Cosig, raw: raw, ed: raw}, nil
}

// ParseVerifierKey parses a C2SP verifier key
// "<name>+<8 lowercase hex key ID>+<base64(type ‖ public key)>" of type
// 0x06 (ML-DSA-44) or 0x04 (Ed25519 cosignature). Other types are
// ErrKeyType; a key ID that does not match the name and key is
// ErrMalformed. Surrounding white space (a trailing newline in a file) is
// ignored.
func ParseVerifierKey(vkey string) (*Verifier, error) {
	if len(vkey) > maxVerifierKey {
		return nil, malformed("verifier key", fmt.Sprintf("longer than %d bytes", maxVerifierKey), nil)
	}
	vkey = strings.TrimSpace(vkey)
	name, rest, ok1 := strings.Cut(vkey, "+")
	id, enc, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return nil, malformed("verifier key", "not name+keyid+key", nil)
	}
	if err := checkName("verifier key", name); err != nil {
		return nil, err
	}
	if len(id) != 8 || strings.ToLower(id) != id {
		return nil, malformed("verifier key", "key ID is not 8 lowercase hex digits", nil)
	}
	hash, err := strconv.ParseUint(id, 16, 32)
	if err != nil {
		return nil, malformed("verifier key", "key ID is not 8 lowercase hex digits", err)
	}
	key, ok := decodeB64(enc)
	if !ok || len(key) < 1 {
		return nil, malformed("verifier key", "key is not canonical base64", nil)
	}
	var v *Verifier
	switch key[0] {
	case TypeMLDSA44:
		v, err = newMLDSAVerifier(name, key[1:])
	case TypeEd25519Cosig:
		v, err = NewEd25519Verifier(name, key[1:])
	default:
		return nil, &MalformedError{What: "verifier key", Reason: fmt.Sprintf("type 0x%02x is neither ML-DSA-44 (0x06) nor an Ed25519 cosignature key (0x04)", key[0]), Err: ErrKeyType}
	}
	if err != nil {
		return nil, err
	}
	if v.hash != uint32(hash) {
		return nil, malformed("verifier key", fmt.Sprintf("key ID %s does not match the key (%08x)", id, v.hash), nil)
	}
	return v, nil
}

// LogVerifier parses a log's verifier key, which must be ML-DSA-44 (type
// 0x06): hvmon logs sign their checkpoints with nothing else.
func LogVerifier(vkey string) (*Verifier, error) {
	v, err := ParseVerifierKey(vkey)
	if err != nil {
		return nil, err
	}
	if v.typ != TypeMLDSA44 {
		return nil, &MalformedError{What: "log key", Reason: fmt.Sprintf("type 0x%02x, a log key must be ML-DSA-44 (0x06)", v.typ), Err: ErrKeyType}
	}
	return v, nil
}

// Name returns the key's name.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the key ID.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// Type returns TypeMLDSA44 or TypeEd25519Cosig.
func (v *Verifier) Type() byte { return v.typ }

// String returns the verifier key text.
func (v *Verifier) String() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash, b64.EncodeToString(append([]byte{v.typ}, v.raw...)))
}

// Equal reports whether two verifiers are the same name, type and key.
func (v *Verifier) Equal(o *Verifier) bool {
	return o != nil && v.name == o.name && v.typ == o.typ && bytes.Equal(v.raw, o.raw)
}

// Verify reports whether sig (timestamp ‖ signature) is a valid
// cosignature of the checkpoint whose note text is text. For ML-DSA-44 the
// signed message covers the origin, size and root only (extension lines
// are not signed; Policy.Open refuses them); for Ed25519 it covers the
// whole text.
func (v *Verifier) Verify(text, sig []byte) bool {
	ts, s, ok := splitTimestamp(sig)
	if !ok {
		return false
	}
	switch v.typ {
	case TypeMLDSA44:
		if len(s) != mldsaSigSize {
			return false
		}
		b, err := parseBody(text)
		if err != nil {
			return false
		}
		return mldsa44.Verify(v.ml, subtreeMessage(v.name, ts, b.origin, b.size, b.root), nil, s)
	case TypeEd25519Cosig:
		return len(s) == ed25519.SignatureSize && ed25519.Verify(v.ed, cosignatureV1Message(ts, text), s)
	}
	return false
}

// splitTimestamp splits a timestamped_signature; timestamps above 2^63-1
// are invalid.
func splitTimestamp(sig []byte) (uint64, []byte, bool) {
	if len(sig) < 8 {
		return 0, nil, false
	}
	ts := binary.BigEndian.Uint64(sig)
	return ts, sig[8:], ts <= math.MaxInt64
}

// cosignatureV1Message is the Ed25519 cosignature/v1 signed message:
// "cosignature/v1\ntime <ts>\n" followed by the note text.
func cosignatureV1Message(ts uint64, text []byte) []byte {
	m := make([]byte, 0, 32+len(text))
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, ts, 10)
	m = append(m, '\n')
	return append(m, text...)
}

// ed25519Cosigner writes 0x04 cosignatures.
type ed25519Cosigner struct {
	v  *Verifier
	sk ed25519.PrivateKey
	o  SignerOptions
}

// NewEd25519Cosigner returns a signed-note signer that writes Ed25519
// cosignature/v1 lines (type 0x04) under name, as C2SP witnesses do.
// hvmon verifies such witnesses; it signs with one only in tests and
// examples. Deterministic in o is irrelevant (Ed25519 is deterministic).
func NewEd25519Cosigner(name string, key ed25519.PrivateKey, o SignerOptions) (note.Signer, error) {
	v, err := NewEd25519Verifier(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &ed25519Cosigner{v: v, sk: key, o: o}, nil
}

func (s *ed25519Cosigner) Name() string    { return s.v.name }
func (s *ed25519Cosigner) KeyHash() uint32 { return s.v.hash }

func (s *ed25519Cosigner) Sign(text []byte) ([]byte, error) {
	ts := s.o.now().Unix()
	if ts < 0 {
		return nil, fmt.Errorf("tlog: clock before 1970: %d", ts)
	}
	sig := binary.BigEndian.AppendUint64(nil, uint64(ts))
	return append(sig, ed25519.Sign(s.sk, cosignatureV1Message(uint64(ts), text))...), nil
}

// Cosign appends the signature lines of signers to a signed checkpoint,
// keeping its existing lines (a signer's older line is replaced). It
// verifies nothing: it is how a witness (or a test playing one) adds its
// cosignature.
func Cosign(signed []byte, signers ...note.Signer) ([]byte, error) {
	if len(signed) > MaxCheckpointSize {
		return nil, malformed("checkpoint", fmt.Sprintf("larger than %d bytes", MaxCheckpointSize), nil)
	}
	// With no known verifier, a well-formed note always opens as an
	// UnverifiedNoteError holding all its lines.
	_, err := note.Open(signed, nil)
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, malformed("checkpoint", "not a signed note", err)
	}
	return note.Sign(unverified.Note, signers...)
}

// sigTime returns the timestamp of a verified signature line: bytes 4 to
// 12 of its decoding, which the first 16 base64 characters hold.
func sigTime(s note.Signature) time.Time {
	if len(s.Base64) < 16 {
		return time.Time{}
	}
	raw, err := b64.DecodeString(s.Base64[:16])
	if err != nil {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(raw[4:12])), 0).UTC()
}
