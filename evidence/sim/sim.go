// Package sim is simulated TEE hardware: an AMD SEV-SNP "secure processor"
// and an Intel TDX "quoting enclave" whose signing chains end in roots this
// package generates, not in AMD's or Intel's.
//
// The evidence it makes has the real structures (a 1184-byte SNP
// ATTESTATION_REPORT, a TDX quote v4 with its PCK chain) and verifies with
// the same code as real evidence, given the generated roots. It exists for
// tests, demonstrations and nested-virtualization setups where no TEE is
// available. Nothing it signs proves anything about hardware: a verifier
// must trust its roots explicitly, and hvmon's verifier does so only when
// told to accept simulated evidence.
//
// With Options.Seed the keys, names and validity dates are derived from the
// seed, so two processes given the same seed (an agent in a guest and a
// verifier on the host) agree on the roots without exchanging them. The
// certificate bytes themselves may still differ between runs, because the
// signature schemes are randomized; a root is trusted by its key and name,
// which are stable.
package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Options configure a simulated signer. The zero value makes a fresh random
// chain valid from an hour ago, for a non-debug guest.
type Options struct {
	// Seed, when set, derives every key from it (and, unless NotBefore is
	// set, fixes the validity start to DefaultNotBefore), so the same seed
	// always gives the same roots. Keys derived from a seed are as secret as
	// the seed: never use one outside tests and demonstrations.
	Seed []byte
	// NotBefore is the start of the certificates' validity. Zero means
	// DefaultNotBefore with a Seed, and one hour before now without.
	NotBefore time.Time
	// Debug simulates a debug guest: SNP policy bit DEBUG, TDX
	// TD_ATTRIBUTES.DEBUG. A verifier must refuse such evidence unless it
	// allows debug guests.
	Debug bool
	// Measurement is the launch measurement to report (SNP MEASUREMENT,
	// TDX MR_TD): 48 bytes. Nil means SHA3-384 of a fixed label.
	Measurement []byte
	// HostData is the SEV-SNP HOST_DATA the simulated host "launched" the
	// guest with: 32 bytes, nil for zeros. A real host sets it at launch
	// (hvmon puts the VM's identity there, attest.VMIdentityHostData).
	HostData []byte
	// MRConfigID is the TDX MRCONFIGID the simulated host launched the TD
	// with: 48 bytes, nil for zeros (attest.VMIdentityMRConfigID).
	MRConfigID []byte
}

// HostDataSize and MRConfigIDSize are the sizes of Options.HostData and
// Options.MRConfigID.
const (
	HostDataSize   = 32
	MRConfigIDSize = 48
)

// launchValue returns v, or n zero bytes when v is nil, and checks its size.
func launchValue(what string, v []byte, n int) ([]byte, error) {
	if v == nil {
		return make([]byte, n), nil
	}
	if len(v) != n {
		return nil, fmt.Errorf("%s must be %d bytes, got %d", what, n, len(v))
	}
	return append([]byte(nil), v...), nil
}

// DefaultNotBefore is the validity start of seeded chains without an
// explicit NotBefore. Root and intermediate certificates are valid for 25
// years from it, leaf certificates for 7.
var DefaultNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Validity periods, as in the real chains.
const (
	caYears   = 25
	leafYears = 7
)

// RSA key size of the simulated AMD ARK and ASK. AMD's are 4096 bits; 2048
// keeps seeded key generation (done here, not by crypto/rsa, which ignores
// caller randomness) fast enough for tests.
const rsaBits = 2048

// MeasurementSize is the size of Options.Measurement.
const MeasurementSize = 48

func (o Options) notBefore() time.Time {
	switch {
	case !o.NotBefore.IsZero():
		return o.NotBefore.UTC().Truncate(time.Second)
	case o.Seed != nil:
		return DefaultNotBefore
	default:
		return time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	}
}

func (o Options) measurement() ([]byte, error) {
	if o.Measurement == nil {
		m := sha3.Sum384([]byte("hvmon simulated guest launch measurement"))
		return m[:], nil
	}
	if len(o.Measurement) != MeasurementSize {
		return nil, fmt.Errorf("measurement must be %d bytes, got %d", MeasurementSize, len(o.Measurement))
	}
	return o.Measurement, nil
}

// keySource hands out the keys of one simulated chain: derived from a seed,
// or fresh from crypto/rand.
type keySource struct {
	seed []byte
}

// stream returns the deterministic byte stream for one named key.
func (k keySource) stream(label string) io.Reader {
	h := sha3.NewSHAKE256()
	h.Write([]byte("hvmon simulated hardware key v1\x00"))
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(k.seed)
	return h
}

// bytes returns n bytes for a non-secret value (chip id, PPID): derived
// from the seed, or random.
func (k keySource) bytes(label string, n int) []byte {
	b := make([]byte, n)
	r := io.Reader(rand.Reader)
	if k.seed != nil {
		r = k.stream(label)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		panic("sim: reading key material: " + err.Error()) // SHAKE and crypto/rand do not fail
	}
	return b
}

func (k keySource) ecdsa(label string, c elliptic.Curve) (*ecdsa.PrivateKey, error) {
	if k.seed == nil {
		return ecdsa.GenerateKey(c, rand.Reader)
	}
	r := k.stream(label)
	b := make([]byte, (c.Params().BitSize+7)/8)
	for range 64 {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		// Rejection sampling: a scalar that is zero or not below the
		// group order is refused, and the next one drawn.
		if key, err := ecdsa.ParseRawPrivateKey(c, b); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("sim: no valid scalar in 64 draws")
}

func (k keySource) rsa(label string) (*rsa.PrivateKey, error) {
	if k.seed == nil {
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	r := k.stream(label)
	one := big.NewInt(1)
	e := big.NewInt(65537)
	for range 16 {
		p, err := seededPrime(r, rsaBits/2)
		if err != nil {
			return nil, err
		}
		q, err := seededPrime(r, rsaBits/2)
		if err != nil {
			return nil, err
		}
		if p.Cmp(q) == 0 {
			continue
		}
		n := new(big.Int).Mul(p, q)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(e, phi)
		if n.BitLen() != rsaBits || d == nil {
			continue
		}
		key := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: int(e.Int64())}, D: d, Primes: []*big.Int{p, q}}
		key.Precompute()
		if key.Validate() == nil {
			return key, nil
		}
	}
	return nil, errors.New("sim: no valid RSA key in 16 attempts")
}

// seededPrime draws odd candidates of exactly bits bits, the top two bits
// set so that a product of two has twice the bits, until one is prime.
func seededPrime(r io.Reader, bits int) (*big.Int, error) {
	b := make([]byte, bits/8)
	p := new(big.Int)
	for range 1 << 16 {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		b[0] |= 0xc0
		b[len(b)-1] |= 1
		if p.SetBytes(b).ProbablyPrime(32) {
			return p, nil
		}
	}
	return nil, errors.New("sim: no prime found")
}

// serial returns a positive 128-bit certificate serial number.
func (k keySource) serial(label string) *big.Int {
	b := k.bytes("serial "+label, 16)
	b[0] &= 0x7f
	b[0] |= 0x01
	return new(big.Int).SetBytes(b)
}

// keyID is a subject key identifier: the first 20 bytes of SHA-256 over the
// public key's encoding.
func keyID(pub any) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(der)
	return h[:20], nil
}

// PEM encodes certificates as a sequence of CERTIFICATE blocks.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// simulatedMark is written into every simulated certificate's subject (the
// serialNumber attribute of AMD-style names, the organization of Intel-style
// ones), so that a person reading a certificate can tell it apart.
const simulatedMark = "hvmon simulated hardware"
