package evidence

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

// guestKey and hostKey are fixed ML-DSA-65 keys for the end-to-end tests.
func fixedKey(t testing.TB, b byte) *attest.PrivateKey {
	t.Helper()
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{b}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// boundReport runs the agent's and the host's side of one event: guest
// evidence over GuestReportData (computed without the hardware entry),
// hardware evidence from p over it, the guest's signature, then the host's
// report embedding it. tamper, when set, changes the hardware evidence
// after the binding.
func boundReport(t *testing.T, p Provider, tamper func(hw *attest.HardwareEvidence)) ([]byte, *attest.PrivateKey) {
	t.Helper()
	gk, hk := fixedKey(t, 0x47), fixedKey(t, 0x48)
	nonce := bytes.Repeat([]byte{0x4e}, 32)
	taken := testNow.Add(-time.Second)
	g := &attest.GuestEvidence{
		IssuedAt: testNow, Nonce: nonce, Event: attest.EventBoot, VM: "vm-1",
		Platform: p.Type(), GuestKey: gk.PublicKey().Bytes(), Seq: 1,
		Claims: []attest.Claim{{
			Region:   attest.Region{ID: "weights", Size: 4096, Source: "test:weights"},
			Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{1}, Size: 4096, TakenAt: taken, PageSize: 4096},
			Workload: "vm-1", Platform: p.Type(),
		}},
	}
	rd, err := attest.GuestReportData(g)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(hw)
	}
	g.Hardware = hw
	guest, err := attest.SignGuestEvidence(gk, g, &attest.SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &attest.Report{
		IssuedAt: testNow, ExpiresAt: testNow.Add(5 * time.Minute), Nonce: nonce,
		Event: attest.EventBoot, Workload: "vm-1", Platform: p.Type(),
		Attester: attest.Identity{Name: "host-1"}, Seq: 1, Guest: guest,
	}
	signed, err := attest.Sign(hk, r, &attest.SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	return signed, hk
}

func TestAttestEndToEnd(t *testing.T) {
	for _, p := range []SimulatedProvider{simSNP(t, "seed one", false), simTDX(t, "seed one", false)} {
		t.Run(string(p.Type()), func(t *testing.T) {
			signed, hk := boundReport(t, p, nil)
			opts := attest.VerifyOptions{
				TrustedKeys: []*attest.PublicKey{hk.PublicKey()},
				Now:         testNow.Add(time.Minute),
				Evidence:    mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()}),
			}
			res, err := attest.Verify(signed, opts)
			if err != nil || !res.Valid {
				t.Fatalf("attest.Verify = %v; checks %+v", err, res.Checks)
			}
			if res.Guest == nil || res.Guest.Hardware == nil || res.Guest.Hardware.Type != p.Type() {
				t.Errorf("verified guest evidence %+v lacks the %s hardware evidence", res.Guest, p.Type())
			}

			// The same report, with a verifier that does not trust
			// simulated evidence, or none at all: a binding failure.
			opts.Evidence = mustVerifier(t, Options{})
			_, err = attest.Verify(signed, opts)
			if !errors.Is(err, attest.ErrBinding) || !errors.Is(err, ErrSimulatedNotTrusted) {
				t.Errorf("attest.Verify without trusting simulated evidence = %v, want ErrBinding and ErrSimulatedNotTrusted", err)
			}
			opts.Evidence = nil
			if _, err := attest.Verify(signed, opts); !errors.Is(err, attest.ErrBinding) {
				t.Errorf("attest.Verify without an evidence verifier = %v, want ErrBinding", err)
			}
		})
	}
}

// Hardware evidence requested with another REPORT_DATA than the guest
// evidence's: a binding failure, even though the hardware evidence itself
// is genuine and the guest signed it.
func TestAttestTamperedReportData(t *testing.T) {
	for _, p := range []SimulatedProvider{simSNP(t, "seed one", false), simTDX(t, "seed one", false)} {
		t.Run(string(p.Type()), func(t *testing.T) {
			signed, hk := boundReport(t, p, func(hw *attest.HardwareEvidence) {
				rd := reportDataOf(t, hw)
				rd[0] ^= 0x80
				other, err := p.Evidence(t.Context(), rd)
				if err != nil {
					t.Fatal(err)
				}
				*hw = *other
			})
			_, err := attest.Verify(signed, attest.VerifyOptions{
				TrustedKeys: []*attest.PublicKey{hk.PublicKey()},
				Now:         testNow.Add(time.Minute),
				Evidence:    mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: p.Roots()}),
			})
			if !errors.Is(err, attest.ErrBinding) || !errors.Is(err, ErrReportData) {
				t.Errorf("attest.Verify with hardware evidence for another REPORT_DATA = %v, want ErrBinding and ErrReportData", err)
			}
			if errors.Is(err, attest.ErrMalformed) {
				t.Errorf("attest.Verify error %v is also malformed: one class per error", err)
			}
		})
	}
}
