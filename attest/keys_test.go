package attest

import (
	"bytes"
	"crypto"
	"crypto/sha3"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"testing"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	k := testKey(t, 7)
	priv, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := MarshalPublicKeyPEM(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivateKeyPEM(priv)
	if err != nil {
		t.Fatalf("ParsePrivateKeyPEM = %v", err)
	}
	p2, err := ParsePublicKeyPEM(pub)
	if err != nil {
		t.Fatalf("ParsePublicKeyPEM = %v", err)
	}
	if !k2.PublicKey().Equal(k.PublicKey()) || !p2.Equal(k.PublicKey()) {
		t.Fatal("keys changed in a PEM round trip")
	}
	if p2.KeyID() != KeyIDOf(p2.Bytes()) || p2.KeyID() != Digest(sha3.Sum256(k.PublicKey().Bytes())) {
		t.Error("key id is not SHA3-256 of the raw public key")
	}
	// Seed-only PKCS#8 (RFC 9881): the private key field is [0] IMPLICIT OCTET STRING of 32 bytes.
	block, _ := pem.Decode(priv)
	if block.Type != "PRIVATE KEY" || !bytes.Contains(block.Bytes, append([]byte{0x80, 0x20}, k.seed[:]...)) {
		t.Errorf("private key is not in the seed-only form: % x", block.Bytes)
	}
	if len(block.Bytes) != 54 {
		t.Errorf("seed-only PKCS#8 is %d bytes, want 54", len(block.Bytes))
	}
}

func TestParsePrivateKeyForms(t *testing.T) {
	k := testKey(t, 7)
	oid := struct{ Algorithm asn1.ObjectIdentifier }{oidMLDSA65}
	wrap := func(inner []byte) []byte {
		der, err := asn1.Marshal(struct {
			Version    int
			Algorithm  struct{ Algorithm asn1.ObjectIdentifier }
			PrivateKey []byte
		}{0, oid, inner})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	expanded := k.sk.Bytes()
	both, _ := asn1.Marshal(struct{ Seed, Expanded []byte }{k.seed[:], expanded})
	got, err := ParsePrivateKeyPEM(wrap(both))
	if err != nil || !got.PublicKey().Equal(k.PublicKey()) {
		t.Errorf("seed+expanded form (as OpenSSL writes it): %v", err)
	}
	other := testKey(t, 8)
	mismatched, _ := asn1.Marshal(struct{ Seed, Expanded []byte }{k.seed[:], other.sk.Bytes()})
	expOnly, _ := asn1.Marshal(expanded)
	for name, in := range map[string][]byte{
		"expanded only":   wrap(expOnly),
		"mismatched both": wrap(mismatched),
		"short seed":      wrap([]byte{0x80, 0x1f}),
		"public key":      mustPEM(t, k.PublicKey()),
		"wrong label":     bytes.Replace(wrap(both), []byte("PRIVATE KEY"), []byte("ML-DSA PRIVATE KEY"), 2),
		"trailing":        append(wrap(both), "junk"...),
		"empty":           nil,
		"encrypted":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}),
	} {
		if _, err := ParsePrivateKeyPEM(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParsePrivateKeyPEM = %v, want ErrMalformed", name, err)
		}
	}
}

func mustPEM(t testing.TB, k *PublicKey) []byte {
	b, err := MarshalPublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMangledKeys changes every byte of the encoded public and private keys:
// each change must be refused as malformed or give another key, never
// panic or yield the original key.
func TestMangledKeys(t *testing.T) {
	k := testKey(t, 7)
	for _, tc := range []struct {
		name  string
		pem   []byte
		parse func([]byte) (*PublicKey, error)
	}{
		{"public", mustPEM(t, k.PublicKey()), ParsePublicKeyPEM},
		{"private", func() []byte { b, _ := MarshalPrivateKeyPEM(k); return b }(), func(b []byte) (*PublicKey, error) {
			p, err := ParsePrivateKeyPEM(b)
			if err != nil {
				return nil, err
			}
			return p.PublicKey(), nil
		}},
	} {
		block, _ := pem.Decode(tc.pem)
		for i := range block.Bytes {
			der := bytes.Clone(block.Bytes)
			der[i] ^= 0x01
			got, err := tc.parse(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}))
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("%s key, byte %d: error %v is not ErrMalformed", tc.name, i, err)
				}
				continue
			}
			if got.Equal(k.PublicKey()) {
				t.Errorf("%s key, byte %d changed: still parses to the original key", tc.name, i)
			}
		}
	}
}

func TestParsePublicKeyStrict(t *testing.T) {
	k := testKey(t, 7)
	good := mustPEM(t, k.PublicKey())
	block, _ := pem.Decode(good)
	withParams, _ := asn1.Marshal(struct {
		Algorithm struct {
			Algorithm asn1.ObjectIdentifier
			Params    asn1.RawValue
		}
		PublicKey asn1.BitString
	}{struct {
		Algorithm asn1.ObjectIdentifier
		Params    asn1.RawValue
	}{oidMLDSA65, asn1.NullRawValue}, asn1.BitString{Bytes: k.PublicKey().Bytes(), BitLength: publicKeySize * 8}})
	otherOID, _ := asn1.Marshal(struct {
		Algorithm struct{ Algorithm asn1.ObjectIdentifier }
		PublicKey asn1.BitString
	}{struct{ Algorithm asn1.ObjectIdentifier }{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}}, asn1.BitString{Bytes: k.PublicKey().Bytes(), BitLength: publicKeySize * 8}})
	for name, in := range map[string][]byte{
		"NULL parameters": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: withParams}),
		"ML-DSA-44 OID":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherOID}),
		"two blocks":      append(bytes.Clone(good), good...),
		"truncated DER":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes[:len(block.Bytes)-1]}),
		"oversize":        bytes.Repeat([]byte("A"), maxKeyPEM+1),
	} {
		if _, err := ParsePublicKeyPEM(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParsePublicKeyPEM = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := newPublicKey(make([]byte, 10)); !errors.Is(err, ErrMalformed) {
		t.Errorf("newPublicKey(10 bytes) = %v, want ErrMalformed", err)
	}
}

func TestSigning(t *testing.T) {
	k := testKey(t, 7)
	msg := []byte("message")
	s1, _ := k.Sign(nil, msg, deterministicSigning)
	s2, _ := k.Sign(nil, msg, deterministicSigning)
	h1, _ := k.Sign(nil, msg, nil)
	h2, _ := k.Sign(nil, msg, nil)
	if !bytes.Equal(s1, s2) {
		t.Error("deterministic signing is not deterministic")
	}
	if bytes.Equal(h1, h2) {
		t.Error("hedged signing gave the same signature twice")
	}
	for _, s := range [][]byte{s1, h1} {
		if !k.PublicKey().Verify(msg, s) {
			t.Error("signature does not verify")
		}
	}
	if k.PublicKey().Verify([]byte("other"), s1) || testKey(t, 8).PublicKey().Verify(msg, s1) {
		t.Error("signature verifies for another message or key")
	}
	for i := range s1 {
		m := bytes.Clone(s1)
		m[i] ^= 0x80
		if k.PublicKey().Verify(msg, m) {
			t.Fatalf("signature with byte %d changed still verifies", i)
		}
	}
	if _, err := k.Sign(nil, msg, cryptoSHA256{}); err == nil {
		t.Error("Sign accepted a pre-hashed message")
	}
	g1, _ := GenerateKey(nil)
	g2, _ := GenerateKey(nil)
	if g1.PublicKey().Equal(g2.PublicKey()) {
		t.Error("GenerateKey returned the same key twice")
	}
}

type cryptoSHA256 struct{}

func (cryptoSHA256) HashFunc() crypto.Hash { return crypto.SHA256 }
