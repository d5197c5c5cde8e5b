package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/verify/trust"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/tee"
)

// The table has exactly the platforms attest knows; each kind has one real
// and one simulated type, and New makes a provider of every simulated one.
func TestKinds(t *testing.T) {
	platforms := attest.HardwarePlatforms()
	if len(kinds) != len(platforms) {
		t.Errorf("kinds has %d types, attest.HardwarePlatforms %d", len(kinds), len(platforms))
	}
	for _, p := range platforms {
		k, err := kindOf(p)
		if err != nil {
			t.Errorf("no kind for %s: %v", p, err)
			continue
		}
		var twins []attest.Platform
		for _, o := range platforms {
			if kinds[o] == k {
				twins = append(twins, o)
			}
		}
		if len(twins) != 2 || twins[0].Simulated() || !twins[1].Simulated() || realType(k) != twins[0] {
			t.Errorf("%s kind %s: types %q (the real one, then the simulated one), real type %q", p, k, twins, realType(k))
		}
		if tsm, dev := k.guest(); tsm == "" || !strings.HasPrefix(dev, "/dev/") {
			t.Errorf("%s kind %s: guest interfaces %q, %q", p, k, tsm, dev)
		}
		if !slices.Contains(ProviderNames(), string(p)) {
			t.Errorf("ProviderNames %q lacks %s", ProviderNames(), p)
		}
		if !p.Simulated() {
			continue
		}
		prov, err := New(t.Context(), string(p), ProviderOptions{Simulated: sim.Options{Seed: []byte("seed one")}})
		if err != nil || prov.Type() != p {
			t.Errorf("New(%s) = %v, %v", p, prov, err)
		}
	}
	if _, err := kindOf("sgx"); !errors.Is(err, ErrUnknownType) {
		t.Errorf(`kindOf("sgx") = %v, want ErrUnknownType`, err)
	}
}

// TrustOptions is the one way from configuration to a verifier: it
// enforces tee.Trust's rules, reads the roots and derives the seed's.
func TestTrustOptions(t *testing.T) {
	seed := []byte("seed one, sixteen bytes or more")
	snp := simSNP(t, string(seed), false)
	rd := testReportData(3)
	hw, err := snp.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}

	// Roots derived from the seed verify the seeded agent's evidence.
	opts, err := TrustOptions(tee.Trust{AllowSimulated: true, SimulatedSeed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustVerifier(t, opts).Verify(hw, rd, testNow); err != nil {
		t.Errorf("evidence against the roots of its seed: %v", err)
	}
	// So do the roots given as a file.
	opts, err = TrustOptions(tee.Trust{AllowSimulated: true, SimulatedRoots: []tee.File{{Name: "sim.pem", Data: snp.RootsPEM()}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustVerifier(t, opts).Verify(hw, rd, testNow); err != nil {
		t.Errorf("evidence against its roots from a file: %v", err)
	}

	// The rules every configuration shares.
	if _, err := TrustOptions(tee.Trust{SimulatedSeed: seed}); !errors.Is(err, tee.ErrSimulatedNotAllowed) {
		t.Errorf("a seed without AllowSimulated: %v", err)
	}
	if _, err := TrustOptions(tee.Trust{AllowSimulated: true}); !errors.Is(err, tee.ErrNoSimulatedRoots) {
		t.Errorf("AllowSimulated without roots: %v", err)
	}
	// A file that holds no certificate is named in the error.
	if _, err := TrustOptions(tee.Trust{IntelRoots: []tee.File{{Name: "junk.pem", Data: []byte("junk")}}}); err == nil || !strings.Contains(err.Error(), `"junk.pem"`) {
		t.Errorf("junk Intel roots: %v", err)
	}

	// AMD roots from a file replace the built-in ones; debug follows the
	// trust.
	milan := tee.File{Name: "ask_ark_milan.pem", Data: trust.AskArkMilanVcekBytes}
	opts, err = TrustOptions(tee.Trust{AMDRoots: []tee.File{milan}})
	if err != nil || len(opts.AMDRoots) != 2 || opts.IntelRoots != nil || opts.AllowSimulated || opts.AllowDebugUnsafe {
		t.Fatalf("TrustOptions(AMD roots) = %+v, %v", opts, err)
	}
	_, err = mustVerifier(t, opts).VerifyWithoutReportDataUnsafe(milanEvidence(t), testNow)
	wantErr(t, "the debug Milan report without AllowDebugUnsafe", err, ErrDebug)
	opts, err = TrustOptions(tee.Trust{AMDRoots: []tee.File{milan}, AllowDebugUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := mustVerifier(t, opts).VerifyWithoutReportDataUnsafe(milanEvidence(t), testNow); err != nil || s.Root != "pinned AMD Milan root" {
		t.Errorf("the Milan report against the Milan roots from a file: %+v, %v", s, err)
	}
}
