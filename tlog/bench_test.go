package tlog

import (
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"

	"hvmon.dev/hvmon/attest"
)

// Proof verification next to the bare signature checks it is made of.
// Run the three side by side:
//
//	go test -run '^$' -bench 'VerifyProof|Verify$' ./tlog

// BenchmarkVerifyProof verifies a proof of one entry in a tree of 300
// entries, with the log's ML-DSA-44 line and two witness lines (ML-DSA-44
// and Ed25519) all checked.
func BenchmarkVerifyProof(b *testing.B) {
	files, _ := generateVectors(b)
	proof, entry := files["entry-257.proof"], testEntry(257)
	p := testPolicy(b, 0, testWitnessKey(b).Verifier(), testEdVerifier(b))
	b.SetBytes(int64(len(proof)))
	for b.Loop() {
		if _, _, err := VerifyProof(p, entry, proof); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyProofLogOnly is the same proof under a policy that names
// no witness: the log's signature and the Merkle path only.
func BenchmarkVerifyProofLogOnly(b *testing.B) {
	files, _ := generateVectors(b)
	proof, entry := files["entry-257.proof"], testEntry(257)
	p := testPolicy(b, 0)
	for b.Loop() {
		if _, _, err := VerifyProof(p, entry, proof); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMLDSA44Verify is one bare ML-DSA-44 verification (circl) of a
// checkpoint's subtree/v1 message.
func BenchmarkMLDSA44Verify(b *testing.B) {
	k := testLogKey(b)
	msg := subtreeMessage(testOrigin, 1, testOrigin, 300, [32]byte{})
	sig := make([]byte, mldsaSigSize)
	if err := mldsa44.SignTo(k.sk, msg, nil, false, sig); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !mldsa44.Verify(k.pub.ml, msg, nil, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkMLDSA65Verify is one bare ML-DSA-65 verification with hvmon's
// report key type (attest), over a message of a report's size.
func BenchmarkMLDSA65Verify(b *testing.B) {
	k, err := attest.NewKeyFromSeed(make([]byte, attest.SeedSize))
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 4096)
	sig, err := k.Sign(nil, msg, nil)
	if err != nil {
		b.Fatal(err)
	}
	pk := k.PublicKey()
	for b.Loop() {
		if !pk.Verify(msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
