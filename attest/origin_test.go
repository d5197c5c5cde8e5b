package attest

import "testing"

// TestWhichOriginsCount is the table of docs/FORMAT.md §9.1: whether a
// claim of each origin may satisfy an expected root under each verifier
// setting. Verify (TestWhoseMeasurements) and package policy
// (TestVerifyAndAppraiseCountTheSameClaims) both apply this one rule.
func TestWhichOriginsCount(t *testing.T) {
	type modes struct{ def, allowHostMeasured, requireHardware, both bool }
	for _, tc := range []struct {
		origin Origin
		want   modes
	}{
		{OriginHardware, modes{true, true, true, true}},
		{OriginSigner, modes{true, true, false, false}},
		{OriginHost, modes{false, true, false, false}},
		{OriginGuestUnbacked, modes{false, true, false, false}},
	} {
		for _, m := range []struct {
			name string
			opts VerifyOptions
			want bool
		}{
			{"default", VerifyOptions{}, tc.want.def},
			{"AllowHostMeasured", VerifyOptions{AllowHostMeasured: true}, tc.want.allowHostMeasured},
			{"RequireHardware", VerifyOptions{RequireHardware: true}, tc.want.requireHardware},
			{"both", VerifyOptions{AllowHostMeasured: true, RequireHardware: true}, tc.want.both},
		} {
			if got := m.opts.counts(tc.origin); got != m.want {
				t.Errorf("origin %s, %s: counts = %t, want %t", tc.origin, m.name, got, m.want)
			}
		}
	}
}
