package evidence_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
)

// A guest gets simulated TDX evidence bound to its REPORT_DATA; a verifier
// told to trust that simulation's root checks it, and one that is not
// refuses it.
func ExampleVerifier_Verify() {
	ctx := context.Background()
	p, err := evidence.NewSimulatedTDX(sim.Options{Seed: []byte("example")})
	if err != nil {
		panic(err)
	}
	var reportData [64]byte // attest.GuestReportData in hvmon's agent
	copy(reportData[:], "bound")
	hw, err := p.Evidence(ctx, reportData)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	v, err := evidence.NewVerifier(evidence.Options{AllowSimulated: true, SimulatedRoots: p.Roots()})
	if err != nil {
		panic(err)
	}
	s, err := v.Verify(hw, reportData, now)
	fmt.Println(s.Type, s.Root, "debug:", s.Debug, err)

	strict, _ := evidence.NewVerifier(evidence.Options{})
	_, err = strict.Verify(hw, reportData, now)
	fmt.Println(errors.Is(err, evidence.ErrSimulatedNotTrusted))
	// Output:
	// simulated-tdx simulated Intel-style root debug: false <nil>
	// true
}

// The roots of a seeded simulation can be derived anywhere from the seed,
// and exported as PEM for a verifier's configuration.
func ExampleParseCertificates() {
	p, err := evidence.NewSimulatedTDX(sim.Options{Seed: []byte("example")})
	if err != nil {
		panic(err)
	}
	roots, err := evidence.ParseCertificates(p.RootsPEM())
	fmt.Println(len(roots), roots[0].Subject.CommonName, roots[0].Subject.Organization, err)
	// Output: 1 Intel SGX Root CA [hvmon simulated hardware (not Intel)] <nil>
}

// "none" selects no hardware evidence: no provider, and no error.
func ExampleNew() {
	p, err := evidence.New(context.Background(), "none", evidence.ProviderOptions{})
	fmt.Println(p, err)
	// Output: <nil> <nil>
}

// Inspect decodes evidence without verifying anything.
func ExampleInspect() {
	p, err := evidence.NewSimulatedTDX(sim.Options{Seed: []byte("example"), Debug: true})
	if err != nil {
		panic(err)
	}
	hw, err := p.Evidence(context.Background(), [64]byte{})
	if err != nil {
		panic(err)
	}
	s, err := evidence.Inspect(hw)
	fmt.Println(s.Type, s.Signer, s.Debug, s.Attributes, err)
	// Output: simulated-tdx PCK true 0000000010000001 <nil>
}
