package main

import (
	"bytes"
	"strings"
	"testing"
)

// --skew 0 tolerates no clock skew: a report is valid up to its
// expires-at exactly and expired one second later, where the default
// minute still accepts it; a negative skew is a usage error. The report
// is the lifecycle vector's boot report: issued 12:01:00, expires
// 12:06:00.
func TestVerifySkewZero(t *testing.T) {
	const report = "../../policy/testdata/chain/lifecycle/01-hv-a-boot.cose"
	for _, tc := range []struct {
		at, skew string // skew "" leaves the flag out
		want     int
	}{
		{"2026-11-27T12:06:01Z", "", exitOK},
		{"2026-11-27T12:06:01Z", "0", exitFreshness},
		{"2026-11-27T12:06:01Z", "0s", exitFreshness},
		{"2026-11-27T12:06:00Z", "0", exitOK},
		{"2026-11-27T12:01:00Z", "0", exitOK},
		{"2026-11-27T12:00:59Z", "0", exitFreshness},
		{"2026-11-27T12:00:59Z", "1s", exitOK},
		{"2026-11-27T12:06:00Z", "-1s", exitUsage},
	} {
		args := []string{"verify", "--trust", "../../testdata/keys/host.pub", "--allow-host-measured", "--at", tc.at}
		if tc.skew != "" {
			args = append(args, "--skew", tc.skew)
		}
		var out bytes.Buffer
		if code := run(append(args, report), nil, &out, &out); code != tc.want {
			t.Errorf("hvmon %s: exit %d, want %d\n%s", strings.Join(args, " "), code, tc.want, out.String())
		}
	}
}
