package policy

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

// TestVerifyAndAppraiseCountTheSameClaims: for every origin a claim can
// have (docs/FORMAT.md §9.1), attest.Verify's expected roots and a
// policy's region rule agree on whether the claim counts, under
// require_hardware and without it. Both go through
// attest.Result.CountedClaims; this test fails if either grows a rule of
// its own.
func TestVerifyAndAppraiseCountTheSameClaims(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	const vm, region = "vm-1", "weights"
	nonce := make([]byte, 32)
	issued := testNow.Add(-time.Minute)
	report := func(p attest.Platform, obs bool, claims []attest.Claim, guest []byte) []byte {
		t.Helper()
		r := &attest.Report{IssuedAt: issued, ExpiresAt: issued.Add(5 * time.Minute), Nonce: nonce, Event: attest.EventBoot,
			Workload: vm, Platform: p, Attester: attest.Identity{Name: "hv-1"}, Claims: claims, Guest: guest}
		if obs {
			r.Host = &attest.Observations{Host: "hv-1", EventAt: issued, Agent: attest.AgentOK}
		}
		b, err := attest.Sign(host, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	guest := func(p attest.Platform, hw *attest.HardwareEvidence) []byte {
		t.Helper()
		g := &attest.GuestEvidence{IssuedAt: issued, Nonce: nonce, Event: attest.EventBoot, VM: vm, Platform: p,
			Claims: []attest.Claim{claim(region, rootA, p, vm)}, GuestKey: gk.PublicKey().Bytes(), Hardware: hw}
		b, err := attest.SignGuestEvidence(gk, g, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type counts struct{ requireHardware, allowHostMeasured bool }
	for _, tc := range []struct {
		name   string
		origin attest.Origin
		signed []byte
		want   counts // whether the claim counts under each policy mode
	}{
		{"signer's own claim (hvmon attest)", attest.OriginSigner,
			report("file", false, []attest.Claim{claim(region, rootA, "file", vm)}, nil), counts{false, true}},
		{"host report, claim labelled host", attest.OriginHost,
			report(attest.PlatformHost, true, []attest.Claim{claim(region, rootA, attest.PlatformHost, vm)}, nil), counts{false, true}},
		{"host report, claim labelled sev-snp", attest.OriginHost,
			report("sev-snp", true, []attest.Claim{claim(region, rootA, "sev-snp", vm)}, nil), counts{false, true}},
		{"platform host, no observations", attest.OriginHost,
			report(attest.PlatformHost, false, []attest.Claim{claim(region, rootA, attest.PlatformHost, vm)}, nil), counts{false, true}},
		{"guest evidence without hardware", attest.OriginGuestUnbacked,
			report(attest.PlatformHost, true, nil, guest(attest.PlatformNone, nil)), counts{false, true}},
		{"guest evidence with hardware", attest.OriginHardware,
			report(attest.PlatformHost, true, nil, guest("sev-snp", &attest.HardwareEvidence{Type: "sev-snp", Report: []byte("report")})), counts{true, true}},
	} {
		for _, requireHardware := range []bool{true, false} {
			name := fmt.Sprintf("%s, require_hardware = %t", tc.name, requireHardware)
			want := tc.want.allowHostMeasured
			if requireHardware {
				want = tc.want.requireHardware
			}
			p := mustParse(t, fmt.Sprintf(`trust { host_keys = ["host.pub"] }
defaults {
  require_hardware = %t
  region %q { roots = [%q] }
}`, requireHardware, region, rootA), &fakeHardware{facts: snpFacts()}).At(testNow)
			base, err := p.VerifyOptions(attest.VerifyOptions{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}

			// Verify, with the options a policy of this mode stands for
			// and the region's root expected.
			o := base
			o.RequireHardware, o.AllowHostMeasured = requireHardware, !requireHardware
			o.Strict = true
			o.Expected = []attest.Expectation{{RegionID: region, Roots: []attest.Digest{rootA}}}
			_, verr := attest.Verify(tc.signed, o)
			verified := verr == nil
			if verr != nil && !errors.Is(verr, attest.ErrIncomplete) && !errors.Is(verr, attest.ErrNoHardware) {
				t.Fatalf("%s: Verify = %v, want nil, ErrIncomplete or ErrNoHardware", name, verr)
			}

			// Appraise: verify as hvmon verify --policy does (no expected
			// roots, no hardware required: the policy decides), then
			// appraise.
			res, err := attest.Verify(tc.signed, base)
			if err != nil {
				t.Fatalf("%s: Verify without expectations = %v", name, err)
			}
			if outer, g := attest.Origins(res.Report, res.Guest); outer != tc.origin && g != tc.origin {
				t.Fatalf("%s: origins %q, %q, want %q among them", name, outer, g, tc.origin)
			}
			v := p.AppraiseResult(res)
			f := finding(t, v, "region."+region)
			appraised := f.Status == Affirming && f.Reason == ReasonRootAllowed
			if !appraised && f.Reason != ReasonRegionMissing {
				t.Fatalf("%s: region finding %s/%s (%s), want root_allowed or region_missing", name, f.Status, f.Reason, f.Detail)
			}
			if requireHardware {
				// The hardware.regions finding names the same claims as
				// not counting.
				hr := finding(t, v, "hardware.regions")
				if (hr.Status == Affirming) != appraised {
					t.Errorf("%s: hardware.regions is %s/%s (%s) while the region rule says counted = %t", name, hr.Status, hr.Reason, hr.Detail, appraised)
				}
			}

			if verified != appraised {
				t.Errorf("%s: Verify says counted = %t (%v), appraisal says %t (%s)", name, verified, verr, appraised, f.Reason)
			}
			if appraised != want {
				t.Errorf("%s: counted = %t, docs/FORMAT.md §9.1 says %t", name, appraised, want)
			}
		}
	}
}
