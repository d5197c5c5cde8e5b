package policy

import (
	"fmt"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// A policy generated from a golden report loads, pins what the report
// held, and affirms the report itself; another measurement, root or
// signer is caught.
func TestGenerateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts *HardwareFacts
		typ   attest.Platform
	}{
		{"sev-snp", snpFacts(), "sev-snp"},
		{"tdx", tdxFacts(), "tdx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := result(t)
			res.Guest.Hardware.Type, res.Guest.Platform = tc.typ, tc.typ
			text, err := Generate(Golden{Result: res, Hardware: tc.facts, HostKeys: []string{"host.pub"}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(text, "/etc/hvmon/gen.hcl", Options{Hardware: &fakeHardware{facts: tc.facts}, ReadFile: files(t)})
			if err != nil {
				t.Fatalf("generated policy does not parse: %v\n%s", err, text)
			}
			v := p.At(testNow).AppraiseResult(res)
			if v.Status != Affirming {
				t.Fatalf("golden report against its own policy: %s\n%+v\n%s", v.Status, v.Findings, text)
			}
			for _, check := range []string{"signer", "hardware.required", "hardware.type", "hardware.debug", "report.event", "region.a", "region.b"} {
				if finding(t, v, check).Status != Affirming {
					t.Errorf("%s not affirming", check)
				}
			}
			if tc.facts.SNP != nil {
				for _, check := range []string{"snp.measurement", "snp.tcb", "snp.guest_svn", "snp.vmpl", "snp.host_data"} {
					finding(t, v, check)
				}
			} else {
				for _, check := range []string{"tdx.mrtd", "tdx.rtmr0", "tdx.rtmr3", "tdx.mr_config_id", "tdx.tee_tcb_svn"} {
					finding(t, v, check)
				}
			}

			// Another region root and another measurement are caught.
			res.Guest.Claims[0].Snapshot.Root = rootA2
			other := *tc.facts
			other.Measurement = make([]byte, 48)
			if other.TDX != nil {
				td := *other.TDX
				td.MRTD = other.Measurement
				other.TDX = &td
			}
			p, _ = Parse(text, "/etc/hvmon/gen.hcl", Options{Hardware: &fakeHardware{facts: &other}, ReadFile: files(t)})
			v = p.At(testNow).AppraiseResult(res)
			if finding(t, v, "region.a").Reason != ReasonRootNotAllowed || v.Status != Contraindicated {
				t.Errorf("changed root: %+v", v.Findings)
			}
			mcheck := "snp.measurement"
			if other.TDX != nil {
				mcheck = "tdx.mrtd"
			}
			if finding(t, v, mcheck).Reason != ReasonMeasurementNot {
				t.Errorf("changed measurement: %+v", v.Findings)
			}
		})
	}
}

// A golden report from a debug guest gives a policy that still forbids
// debug, and says so.
func TestGenerateDebugGolden(t *testing.T) {
	f := snpFacts()
	f.Debug = true
	text, err := Generate(Golden{Result: result(t), Hardware: f, HostKeys: []string{"host.pub"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "DEBUG guest") || !strings.Contains(string(text), "allow_debug           = false") {
		t.Errorf("policy from a debug golden report:\n%s", text)
	}
	p := mustParse(t, string(text), &fakeHardware{facts: f})
	if v := p.At(testNow).AppraiseResult(result(t)); finding(t, v, "hardware.debug").Reason != ReasonDebugEnabled {
		t.Errorf("debug golden report against its own policy: %+v", v.Findings)
	}
}

// Without hardware evidence the generated policy does not require it, and
// keeps the signer's regions as reference values.
func TestGenerateWithoutHardware(t *testing.T) {
	res := result(t)
	res.Guest = nil
	res.Report.Claims = []attest.Claim{claim("w", rootA, "file", "vm-1")}
	text, err := Generate(Golden{Result: res, HostKeys: []string{"host.pub"}})
	if err != nil {
		t.Fatal(err)
	}
	v := mustParse(t, string(text), nil).At(testNow).AppraiseResult(res)
	if v.Status != Affirming || hasCheck(v, "hardware.required") || finding(t, v, "region.w").Status != Affirming {
		t.Errorf("golden report without hardware: %s %+v\n%s", v.Status, v.Findings, text)
	}
	if _, err := Generate(Golden{Result: &attest.Result{}}); err == nil {
		t.Error("Generate accepted a result that did not verify")
	}
}

// VM names become HCL strings and glob patterns that match exactly them,
// whatever they hold.
func TestGenerateNames(t *testing.T) {
	for _, name := range []string{"vm-1", `we"ird\name`, "a*b?[c]", "${var.x}", "%{ if true }x%{ endif }", "$${x}", "$$", "tab\tnew\nline", "ünï", "a/b"} {
		res := result(t)
		res.Report.Workload = name
		text, err := Generate(Golden{Result: res, Hardware: snpFacts(), HostKeys: []string{name + ".pub"}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(text, "/gen.hcl", Options{Hardware: &fakeHardware{facts: snpFacts()}, ReadFile: files(t)})
		if err != nil {
			t.Errorf("name %q: %v\n%s", name, err, text)
			continue
		}
		if got := p.VMPatterns(); len(got) != 1 || len(p.RulesFor(name).Regions) != 2 || len(p.RulesFor(name+"x").Regions) != 0 {
			t.Errorf("name %q: pattern %q does not match exactly the name", name, got)
		}
	}
}

// FuzzHCLString: any UTF-8 string survives quoting into HCL and parsing.
func FuzzHCLString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "${x}", "$${x}", "%{", "%%{", "\x00\x7f", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.Contains(fmt.Sprintf("%q", s), `\x`) { // valid UTF-8 only, as the format requires
			src := fmt.Sprintf("defaults {\n  required_regions = []\n}\nvm %s {\n}\n", hclString(s))
			p, err := Parse([]byte(src), "f.hcl", Options{})
			if s == "" {
				return
			}
			if err != nil {
				if strings.Contains(err.Error(), "not a valid name pattern") {
					return
				}
				t.Fatalf("hclString(%q) = %s does not parse: %v", s, hclString(s), err)
			}
			if got := p.VMPatterns()[0]; got != s {
				t.Fatalf("hclString(%q) parsed back as %q", s, got)
			}
		}
	})
}
