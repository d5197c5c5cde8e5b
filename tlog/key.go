package tlog

import (
	"bytes"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"golang.org/x/mod/sumdb/note"
)

// Signature types of C2SP signed-note verifier keys (the byte before the
// public key, also hashed into the key ID).
const (
	TypeEd25519Cosig = 0x04 // Ed25519 cosignature/v1 (timestamped)
	TypeMLDSA44      = 0x06 // ML-DSA-44 subtree/v1 cosignature (timestamped)
)

// Sizes of ML-DSA-44 objects (FIPS 204).
const (
	SeedSize           = mldsa44.SeedSize      // 32
	mldsaPublicKeySize = mldsa44.PublicKeySize // 1312
	mldsaSigSize       = mldsa44.SignatureSize // 2420
)

// oidMLDSA44 is the algorithm identifier of ML-DSA-44 in PKCS#8 (RFC 9881).
var oidMLDSA44 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}

const (
	pemPrivate = "PRIVATE KEY"
	maxKeyPEM  = 16 << 10
	maxNameLen = 255 // cosigned_message carries names with a one-byte length
)

// PrivateKey is an ML-DSA-44 signing key with the name it signs under: a
// log's checkpoint key (name = the log's origin) or an ML-DSA-44 witness.
// It keeps the 32-byte seed.
type PrivateKey struct {
	name string
	seed [SeedSize]byte
	sk   *mldsa44.PrivateKey
	pub  *Verifier
}

// NewKeyFromSeed derives the key named name from a 32-byte seed (FIPS 204
// ML-DSA.KeyGen_internal). The name must be a valid signed-note key name
// (non-empty UTF-8, no spaces, no '+') of at most 255 bytes.
func NewKeyFromSeed(name string, seed [SeedSize]byte) (*PrivateKey, error) {
	if err := checkName("key name", name); err != nil {
		return nil, err
	}
	pk, sk := mldsa44.NewKeyFromSeed(&seed)
	v, err := newMLDSAVerifier(name, pk.Bytes())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{name: name, seed: seed, sk: sk, pub: v}, nil
}

// GenerateKey makes a new key named name with a seed read from rand
// (crypto/rand when nil).
func GenerateKey(name string, rand io.Reader) (*PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("generating log key: %w", err)
	}
	return NewKeyFromSeed(name, seed)
}

// Name returns the key's name.
func (k *PrivateKey) Name() string { return k.name }

// Verifier returns the matching verifier.
func (k *PrivateKey) Verifier() *Verifier { return k.pub }

// VerifierKey returns the C2SP verifier key
// "<name>+<8 hex key ID>+<base64(0x06 ‖ public key)>".
func (k *PrivateKey) VerifierKey() string { return k.pub.String() }

// MarshalPEM encodes the key as a PEM "PRIVATE KEY" block holding a PKCS#8
// PrivateKeyInfo with the seed-only ML-DSA-44 form of RFC 9881. The name is
// not in the file: it is configuration (a log's origin).
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := pki.MarshalPKIXPrivateKey(k.sk)
	if err != nil {
		return nil, fmt.Errorf("encoding log key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// ParsePrivateKeyPEM parses exactly one PEM "PRIVATE KEY" block holding an
// ML-DSA-44 PKCS#8 key in the seed-only form, or in the seed-and-expanded
// form (the halves must agree), and names it name. Expanded-only keys are
// refused: hvmon keeps the seed.
func ParsePrivateKeyPEM(name string, data []byte) (*PrivateKey, error) {
	if len(data) > maxKeyPEM {
		return nil, malformed("log key", fmt.Sprintf("larger than %d bytes", maxKeyPEM), nil)
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, malformed("log key", "no PEM block found", nil)
	case block.Type != pemPrivate:
		return nil, malformed("log key", fmt.Sprintf("PEM type %q, want %q", block.Type, pemPrivate), nil)
	case len(block.Headers) != 0:
		return nil, malformed("log key", "PEM headers are not allowed (encrypted keys are not supported)", nil)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, malformed("log key", "trailing data after the PEM block", nil)
	}
	var info struct {
		Version    int
		Algorithm  struct{ Algorithm asn1.ObjectIdentifier }
		PrivateKey []byte
	}
	if rest, err := asn1.Unmarshal(block.Bytes, &info); err != nil || len(rest) != 0 {
		return nil, malformed("log key", "not a DER PKCS#8 PrivateKeyInfo", err)
	}
	if info.Version != 0 || !info.Algorithm.Algorithm.Equal(oidMLDSA44) {
		return nil, &MalformedError{What: "log key", Reason: fmt.Sprintf("algorithm %v is not ML-DSA-44 (%v)", info.Algorithm.Algorithm, oidMLDSA44), Err: ErrKeyType}
	}
	sk, err := pki.UnmarshalPKIXPrivateKey(block.Bytes)
	if err != nil {
		return nil, malformed("log key", "bad ML-DSA-44 private key", err)
	}
	circlKey, ok := sk.(*mldsa44.PrivateKey)
	if !ok {
		return nil, &MalformedError{What: "log key", Reason: "not an ML-DSA-44 key", Err: ErrKeyType}
	}
	return NewKeyFromSeed(name, [SeedSize]byte(circlKey.Seed()))
}

// SignerOptions tune a note signer. The zero value is right for
// production.
type SignerOptions struct {
	// Now is the clock for cosignature timestamps; nil means time.Now.
	Now func() time.Time
	// Deterministic selects deterministic ML-DSA (reproducible test
	// vectors); the default is hedged signing with fresh randomness.
	Deterministic bool
}

func (o SignerOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// NoteSigner returns the key as a signed-note signer that writes C2SP
// ML-DSA-44 cosignatures (type 0x06): timestamp ‖ ML-DSA-44 signature over
// the subtree/v1 message of the checkpoint it is given, with the key's
// name as cosigner name. For a log key (name = origin) that is the log's
// own checkpoint signature; for a witness key it is a witness
// cosignature. Sign refuses a note text that is not exactly a checkpoint's
// three lines: extension lines would go unsigned.
func (k *PrivateKey) NoteSigner(o SignerOptions) note.Signer { return &noteSigner{k, o} }

type noteSigner struct {
	k *PrivateKey
	o SignerOptions
}

func (s *noteSigner) Name() string    { return s.k.name }
func (s *noteSigner) KeyHash() uint32 { return s.k.pub.hash }

func (s *noteSigner) Sign(text []byte) ([]byte, error) {
	b, err := parseBody(text)
	if err != nil {
		return nil, err
	}
	if b.extensions {
		return nil, malformed("checkpoint", "extension lines are not signed by ML-DSA-44 cosignatures; hvmon writes none", nil)
	}
	ts := s.o.now().Unix()
	if ts < 0 {
		return nil, fmt.Errorf("tlog: clock before 1970: %d", ts)
	}
	msg := subtreeMessage(s.k.name, uint64(ts), b.origin, b.size, b.root)
	sig := make([]byte, 8+mldsaSigSize)
	binary.BigEndian.PutUint64(sig, uint64(ts))
	if err := mldsa44.SignTo(s.k.sk, msg, nil, !s.o.Deterministic, sig[8:]); err != nil {
		return nil, fmt.Errorf("tlog: ML-DSA-44 sign: %w", err)
	}
	return sig, nil
}

// SignCheckpoint returns the signed checkpoint of the tree of size size
// and root root, with the key's name as origin and its cosignature as the
// one signature line.
func (k *PrivateKey) SignCheckpoint(size uint64, root [32]byte, o SignerOptions) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(FormatCheckpoint(k.name, size, root))}, k.NoteSigner(o))
}

// subtreeMessage is the C2SP cosigned_message of a checkpoint (start 0,
// end size): "subtree/v1\n\0" ‖ u8 len ‖ cosigner ‖ u64 timestamp ‖ u8 len
// ‖ origin ‖ u64 0 ‖ u64 size ‖ root.
func subtreeMessage(cosigner string, ts uint64, origin string, size uint64, root [32]byte) []byte {
	m := make([]byte, 0, 12+1+len(cosigner)+8+1+len(origin)+8+8+32)
	m = append(m, "subtree/v1\n\x00"...)
	m = append(m, byte(len(cosigner)))
	m = append(m, cosigner...)
	m = binary.BigEndian.AppendUint64(m, ts)
	m = append(m, byte(len(origin)))
	m = append(m, origin...)
	m = binary.BigEndian.AppendUint64(m, 0)
	m = binary.BigEndian.AppendUint64(m, size)
	return append(m, root[:]...)
}

// keyID is the C2SP key ID: the first four bytes, big-endian, of
// SHA-256(name ‖ 0x0A ‖ type ‖ public key).
func keyID(name string, typ byte, pk []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', typ})
	h.Write(pk)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// checkName applies the signed-note key name rules (non-empty UTF-8
// without Unicode spaces or '+') and the one-byte length of
// cosigned_message.
func checkName(what, name string) error {
	switch {
	case name == "" || !utf8.ValidString(name):
		return malformed(what, "empty or not UTF-8", nil)
	case strings.IndexFunc(name, unicode.IsSpace) >= 0 || strings.Contains(name, "+"):
		return malformed(what, fmt.Sprintf("%q has a space or '+'", name), nil)
	case len(name) > maxNameLen:
		return malformed(what, fmt.Sprintf("longer than %d bytes", maxNameLen), nil)
	}
	return nil
}

// b64 is the standard base64 encoding with padding (RFC 4648 §4).
var b64 = base64.StdEncoding

// decodeB64 decodes canonical standard base64: the one encoding that
// re-encodes to s.
func decodeB64(s string) ([]byte, bool) {
	b, err := b64.Strict().DecodeString(s)
	return b, err == nil && b64.EncodeToString(b) == s
}
