package policy

import (
	"encoding/hex"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// snp.host_launch: the measurement the host computed from its launch
// inputs against the hardware's.
func TestHostLaunch(t *testing.T) {
	const base = `trust { host_keys = ["host.pub"] }
vm "vm-1" {
  snp {
    %s
  }
}
`
	match := hex.EncodeToString(snpFacts().Measurement)
	other := strings.Repeat("ab", 48)
	for _, c := range []struct {
		name, rule string
		facts      map[string]string
		status     Status // "" for no finding
		reason     string
	}{
		{"no rule, no facts", "", nil, "", ""},
		{"no rule, agreeing", "", map[string]string{"launch_expected_measurement": match}, "", ""},
		{"no rule, disagreeing", "", map[string]string{"launch_expected_measurement": other}, Warning, ReasonLaunchMismatch},
		{"rule, agreeing", "match_host_launch = true", map[string]string{"launch_expected_measurement": match}, Affirming, ReasonLaunchMatch},
		{"rule, disagreeing", "match_host_launch = true", map[string]string{"launch_expected_measurement": other}, Contraindicated, ReasonLaunchMismatch},
		{"rule, unknown", "match_host_launch = true", map[string]string{"launch_inputs_error": "firmware: open /x: no such file"}, Contraindicated, ReasonLaunchUnknown},
		{"rule, no observations", "match_host_launch = true", nil, Contraindicated, ReasonLaunchUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, strings.Replace(base, "%s", c.rule, 1), &fakeHardware{facts: snpFacts()})
			res := result(t)
			if c.facts != nil {
				res.Report.Host = &attest.Observations{Host: "h", Facts: c.facts}
			}
			v := p.At(testNow).AppraiseResult(res)
			var got []Finding
			for _, f := range v.Findings {
				if f.Check == "snp.host_launch" {
					got = append(got, f)
				}
			}
			switch {
			case c.status == "" && len(got) != 0:
				t.Fatalf("findings %+v, want none", got)
			case c.status == "":
			case len(got) != 1 || got[0].Status != c.status || got[0].Reason != c.reason:
				t.Fatalf("findings %+v, want one %s %s", got, c.status, c.reason)
			}
			if c.reason == ReasonLaunchUnknown && c.facts != nil && !strings.Contains(got[0].Detail, "no such file") {
				t.Errorf("detail %q does not say why", got[0].Detail)
			}
		})
	}
}
