package attest

import (
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// The envelope budget: Verify of a 16-region report may cost at most 10%
// more than a raw ML-DSA-65 verification of the same payload. Run the two
// side by side: go test -run '^$' -bench 'Sign|Verify' ./attest

func BenchmarkSign16Regions(b *testing.B) {
	k := testKey(b, 1)
	r := testReport(16)
	for b.Loop() {
		if _, err := Sign(k, r, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCirclSignRaw(b *testing.B) {
	k := testKey(b, 1)
	payload := mustEncode(b, testReport(16).toWire())
	sig := make([]byte, signatureSize)
	for b.Loop() {
		if err := mldsa65.SignTo(k.sk, payload, nil, true, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify16Regions(b *testing.B) {
	k := testKey(b, 1)
	signed := mustSign(b, k, testReport(16))
	o := opts(k)
	b.SetBytes(int64(len(signed)))
	for b.Loop() {
		if _, err := Verify(signed, o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCirclVerifyRaw(b *testing.B) {
	k := testKey(b, 1)
	payload := mustEncode(b, testReport(16).toWire())
	sig := make([]byte, signatureSize)
	if err := mldsa65.SignTo(k.sk, payload, nil, false, sig); err != nil {
		b.Fatal(err)
	}
	pk := k.PublicKey().pk
	b.SetBytes(int64(len(payload) + len(sig)))
	for b.Loop() {
		if !mldsa65.Verify(pk, payload, nil, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkEnvelopeVerify16Regions is the envelope alone: strict COSE
// parsing, header checks, Sig_structure and the ML-DSA-65 verification,
// without decoding the payload. Compare with BenchmarkCirclVerifyRaw.
func BenchmarkEnvelopeVerify16Regions(b *testing.B) {
	k := testKey(b, 1)
	signed := mustSign(b, k, testReport(16))
	pk := k.PublicKey()
	b.SetBytes(int64(len(signed)))
	for b.Loop() {
		env, err := openEnvelope("report", signed)
		if err != nil {
			b.Fatal(err)
		}
		if err := env.verify(typeReport, pk); err != nil {
			b.Fatal(err)
		}
	}
}
