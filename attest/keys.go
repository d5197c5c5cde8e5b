package attest

import (
	"bytes"
	"crypto"
	"crypto/sha3"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"

	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// oidMLDSA65 is the algorithm identifier of ML-DSA-65 in SPKI and PKCS#8
// (RFC 9881).
var oidMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}

// Sizes of ML-DSA-65 objects (FIPS 204).
const (
	publicKeySize = mldsa65.PublicKeySize // 1952
	signatureSize = mldsa65.SignatureSize // 3309
	SeedSize      = mldsa65.SeedSize      // 32
)

// PEM block types. They are the standard PKCS#8 and SPKI labels (RFC 7468),
// so OpenSSL 3.5+ and other tools read hvmon keys.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// PublicKey is an ML-DSA-65 public key.
type PublicKey struct {
	pk  *mldsa65.PublicKey
	raw []byte
	id  Digest
}

// newPublicKey parses a raw (FIPS 204 encoded) ML-DSA-65 public key.
func newPublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) != publicKeySize {
		return nil, malformed("public key", fmt.Sprintf("want %d bytes, got %d", publicKeySize, len(raw)), nil)
	}
	pk := new(mldsa65.PublicKey)
	if err := pk.UnmarshalBinary(raw); err != nil {
		return nil, malformed("public key", "not an ML-DSA-65 key", err)
	}
	raw = bytes.Clone(raw)
	return &PublicKey{pk: pk, raw: raw, id: KeyIDOf(raw)}, nil
}

// KeyIDOf returns the key id of a raw public key: SHA3-256 of its bytes.
func KeyIDOf(raw []byte) Digest { return Digest(sha3.Sum256(raw)) }

// Bytes returns the raw public key (1952 bytes).
func (k *PublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// KeyID returns SHA3-256 of the raw public key.
func (k *PublicKey) KeyID() Digest { return k.id }

// Equal reports whether two public keys are the same.
func (k *PublicKey) Equal(o *PublicKey) bool { return o != nil && bytes.Equal(k.raw, o.raw) }

// verify checks an ML-DSA-65 signature with the empty context string, as
// RFC 9964 requires for COSE.
func (k *PublicKey) verify(msg, sig []byte) bool {
	return len(sig) == signatureSize && mldsa65.Verify(k.pk, msg, nil, sig)
}

// Verify checks an ML-DSA-65 signature over msg with the empty context
// string.
func (k *PublicKey) Verify(msg, sig []byte) bool { return k.verify(msg, sig) }

// PrivateKey is an ML-DSA-65 private key kept in its 32-byte seed form. It
// implements crypto.Signer with hedged (randomized) signing; the package's
// Sign signs deterministically, for reproducible test vectors, when
// SignOptions.Deterministic is set.
type PrivateKey struct {
	sk   *mldsa65.PrivateKey
	seed [SeedSize]byte
	pub  *PublicKey
}

// GenerateKey makes a new key from rand (crypto/rand when nil).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	if rand == nil {
		return NewKeyFromSeed(nil)
	}
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	return NewKeyFromSeed(seed[:])
}

// NewKeyFromSeed derives a key from a 32-byte seed (FIPS 204 ML-DSA.KeyGen_internal).
// A nil seed draws one from crypto/rand.
func NewKeyFromSeed(seed []byte) (*PrivateKey, error) {
	var s [SeedSize]byte
	if seed == nil {
		_, sk, err := mldsa65.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("generating key: %w", err)
		}
		copy(s[:], sk.Seed())
	} else {
		if len(seed) != SeedSize {
			return nil, malformed("private key", fmt.Sprintf("seed must be %d bytes, got %d", SeedSize, len(seed)), nil)
		}
		copy(s[:], seed)
	}
	pk, sk := mldsa65.NewKeyFromSeed(&s)
	raw := pk.Bytes()
	return &PrivateKey{sk: sk, seed: s, pub: &PublicKey{pk: pk, raw: raw, id: KeyIDOf(raw)}}, nil
}

// PublicKey returns the matching public key.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Public implements crypto.Signer; it returns a *PublicKey.
func (k *PrivateKey) Public() crypto.PublicKey { return k.pub }

// KeyID returns the key id of the public key.
func (k *PrivateKey) KeyID() Digest { return k.pub.id }

// deterministicSigning, passed as opts to PrivateKey.Sign, selects the
// deterministic variant of ML-DSA. hvmon uses it only to make reproducible
// test vectors.
var deterministicSigning crypto.SignerOpts = deterministic{}

type deterministic struct{}

func (deterministic) HashFunc() crypto.Hash { return 0 }

// Sign implements crypto.Signer: an ML-DSA-65 signature over msg (pure
// ML-DSA, empty context). opts must not name a hash. The randomness of
// hedged signing comes from crypto/rand; rand is not used.
func (k *PrivateKey) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, fmt.Errorf("ML-DSA-65 signs messages, not %v digests", opts.HashFunc())
	}
	_, det := opts.(deterministic)
	sig := make([]byte, signatureSize)
	if err := mldsa65.SignTo(k.sk, msg, nil, !det, sig); err != nil {
		return nil, fmt.Errorf("ML-DSA-65 sign: %w", err)
	}
	return sig, nil
}

// MarshalPrivateKeyPEM encodes the key as a PEM "PRIVATE KEY" block holding
// a PKCS#8 PrivateKeyInfo with the seed-only ML-DSA-65 private key form of
// RFC 9881.
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	der, err := pki.MarshalPKIXPrivateKey(k.sk)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes the key as a PEM "PUBLIC KEY" block holding an
// SPKI with the ML-DSA-65 OID and no parameters.
func MarshalPublicKeyPEM(k *PublicKey) ([]byte, error) {
	der, err := pki.MarshalPKIXPublicKey(k.pk)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// maxKeyPEM bounds key files; an ML-DSA-65 SPKI is about 2.7 KB in PEM.
const maxKeyPEM = 16 << 10

// ParsePrivateKeyPEM parses exactly one PEM "PRIVATE KEY" block holding an
// ML-DSA-65 PKCS#8 key in the seed-only form, or in the seed-and-expanded
// form (which OpenSSL writes by default; the two halves must agree).
// Expanded-only keys are refused: hvmon keeps the seed.
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	der, err := onePEM(data, pemPrivate, "private key")
	if err != nil {
		return nil, err
	}
	var info struct {
		Version    int
		Algorithm  struct{ Algorithm asn1.ObjectIdentifier }
		PrivateKey []byte
	}
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, malformed("private key", "not a DER PKCS#8 PrivateKeyInfo", err)
	}
	if info.Version != 0 || !info.Algorithm.Algorithm.Equal(oidMLDSA65) {
		return nil, malformed("private key", fmt.Sprintf("algorithm %v is not ML-DSA-65 (%v)", info.Algorithm.Algorithm, oidMLDSA65), nil)
	}
	sk, err := pki.UnmarshalPKIXPrivateKey(der)
	if err != nil {
		return nil, malformed("private key", "bad ML-DSA-65 private key", err)
	}
	circlKey, ok := sk.(*mldsa65.PrivateKey)
	if !ok {
		return nil, malformed("private key", "not an ML-DSA-65 key", nil)
	}
	return NewKeyFromSeed(circlKey.Seed())
}

// ParsePublicKeyPEM parses exactly one PEM "PUBLIC KEY" block holding a DER
// SPKI with the ML-DSA-65 OID and absent parameters.
func ParsePublicKeyPEM(data []byte) (*PublicKey, error) {
	der, err := onePEM(data, pemPublic, "public key")
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm struct{ Algorithm asn1.ObjectIdentifier }
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 {
		return nil, malformed("public key", "not a DER SubjectPublicKeyInfo", err)
	}
	if !spki.Algorithm.Algorithm.Equal(oidMLDSA65) {
		return nil, malformed("public key", fmt.Sprintf("algorithm %v is not ML-DSA-65 (%v)", spki.Algorithm.Algorithm, oidMLDSA65), nil)
	}
	pub, err := newPublicKey(spki.PublicKey.RightAlign())
	if err != nil {
		return nil, err
	}
	// Only the one DER encoding is accepted: no parameters, no padding bits,
	// no BER length forms.
	canon, err := pki.MarshalPKIXPublicKey(pub.pk)
	if err != nil || !bytes.Equal(canon, der) {
		return nil, malformed("public key", "non-canonical SPKI encoding", err)
	}
	return pub, nil
}

// onePEM returns the bytes of the single PEM block of the given type; any
// other block, header or trailing data is an error.
func onePEM(data []byte, typ, what string) ([]byte, error) {
	if len(data) > maxKeyPEM {
		return nil, malformed(what, fmt.Sprintf("larger than %d bytes", maxKeyPEM), nil)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, malformed(what, "no PEM block found", nil)
	}
	if block.Type != typ {
		return nil, malformed(what, fmt.Sprintf("PEM type %q, want %q", block.Type, typ), nil)
	}
	if len(block.Headers) != 0 {
		return nil, malformed(what, "PEM headers are not allowed (encrypted keys are not supported)", nil)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, malformed(what, "trailing data after the PEM block", nil)
	}
	return block.Bytes, nil
}
