//go:build integration

package integration

import (
	"encoding/hex"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
)

// The test guest's agent produces simulated SEV-SNP evidence from a fixed
// seed; the host side trusts exactly that seed's roots.
const (
	evidenceType  = "simulated-sev-snp"
	simulatedSeed = "68766d6f6e20696e746567726174696f6e2074657374207365656421"
)

// evidenceVerifier returns a verifier that trusts the simulated roots of
// simulatedSeed and nothing simulated besides.
func evidenceVerifier(t testing.TB) attest.EvidenceVerifier {
	t.Helper()
	seed, _ := hex.DecodeString(simulatedSeed)
	roots, err := evidence.SimulatedRoots(seed)
	if err != nil {
		t.Fatal(err)
	}
	v, err := evidence.NewVerifier(evidence.Options{AllowSimulated: true, SimulatedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// realRootsVerifier trusts AMD's and Intel's real roots only.
func realRootsVerifier(t *testing.T) attest.EvidenceVerifier {
	v, err := evidence.NewVerifier(evidence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
