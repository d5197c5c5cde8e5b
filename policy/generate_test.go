package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// A policy generated from a golden report loads, pins what the report
// held, and affirms the report itself; another measurement, root or
// signer is caught.
func TestGenerateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts *tee.Facts
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

// A golden report's VM name becomes a pattern that matches exactly that
// name; a name outside the VM name rule is refused.
func TestGenerateNames(t *testing.T) {
	for _, name := range []string{"vm-1", "db_prod.example.com", "tenant+a@zone:2", "6f1c1d2e-0000-4000-8000-000000000001"} {
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
	for _, name := range []string{`we"ird\name`, "a*b?[c]", "${var.x}", "tab\tnew\nline", "\u00fcn\u00ef", "a/b", "vm-1 "} {
		res := result(t)
		res.Report.Workload = name
		if _, err := Generate(Golden{Result: res, Hardware: snpFacts(), HostKeys: []string{"h.pub"}}); !errors.Is(err, attest.ErrInvalidVMName) {
			t.Errorf("Generate for VM %q = %v, want ErrInvalidVMName", name, err)
		}
	}
}

// TestGeneratedPolicyNamesOneVM: a policy from policy init affirms its
// golden VM and contraindicates every other VM, whether renamed slightly
// (a trailing space, a look-alike letter: invalid_vm_name) or another
// valid name (unknown_vm), even when that VM's report is otherwise the
// golden one; an admin adds a VM deliberately with a vm block.
func TestGeneratedPolicyNamesOneVM(t *testing.T) {
	golden := result(t)
	text, err := Generate(Golden{Result: golden, Hardware: snpFacts(), HostKeys: []string{"host.pub"}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(text), &fakeHardware{facts: snpFacts()})
	if v := p.At(testNow).AppraiseResult(golden); v.Status != Affirming {
		t.Fatalf("the golden report: %s %+v", v.Status, v.Findings)
	}
	for name, reason := range map[string]string{
		"vm-1 ":      ReasonInvalidVMName,
		"v\u043c-1":  ReasonInvalidVMName,
		"vm-1\u200b": ReasonInvalidVMName,
		"vm-2":       ReasonUnknownVM,
		"VM-1":       ReasonUnknownVM,
	} {
		res := result(t)
		renamed(name)(res)
		v := p.At(testNow).AppraiseResult(res)
		if v.Status != Contraindicated || !hasReason(v, reason) {
			t.Errorf("report for %q under the generated policy: %s %+v, want contraindicated with %s", name, v.Status, v.Findings, reason)
		}
	}
	// The admin accepts vm-2 by adding a block for it.
	p = mustParse(t, string(text)+"vm \"vm-2\" {\n}\n", &fakeHardware{facts: snpFacts()})
	res := result(t)
	renamed("vm-2")(res)
	if v := p.At(testNow).AppraiseResult(res); v.Status != Affirming || finding(t, v, "vm.known").Reason != ReasonKnownVM {
		t.Errorf("vm-2 after the admin added its block: %s %+v", v.Status, v.Findings)
	}
}

// A golden report whose hardware carries its VM's identity gives a policy
// that binds it; one without, a policy that says how to.
func TestGenerateIdentity(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts *tee.Facts
		bound bool
	}{
		{"snp bound", withIdentity("vm-1")(snpFacts()), true},
		{"snp not bound", snpFacts(), false},
		{"tdx bound", withTDXIdentity("vm-1")(nil), true},
		{"tdx not bound", tdxFacts(), false},
	} {
		res := result(t)
		if tc.facts.TDX != nil {
			res.Guest.Hardware.Type, res.Guest.Platform = "tdx", "tdx"
		}
		text, err := Generate(Golden{Result: res, Hardware: tc.facts, HostKeys: []string{"host.pub"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(text), "\n  bind_vm_identity = true\n"); got != tc.bound {
			t.Errorf("%s: bind_vm_identity written %v, want %v\n%s", tc.name, got, tc.bound, text)
		}
		if !tc.bound && !strings.Contains(string(text), "# bind_vm_identity = true") {
			t.Errorf("%s: no hint how to bind the identity", tc.name)
		}
		p := mustParse(t, string(text), &fakeHardware{facts: tc.facts})
		if v := p.At(testNow).AppraiseResult(res); v.Status != Affirming {
			t.Errorf("%s: golden report against its policy: %s %+v", tc.name, v.Status, v.Findings)
		}
		if tc.bound {
			// The same evidence relabelled for another VM: the identity
			// gives it away even under a block that names that VM.
			p := mustParse(t, string(text)+"vm \"vm-2\" {\n  bind_vm_identity = true\n}\n", &fakeHardware{facts: tc.facts})
			other := result(t)
			if tc.facts.TDX != nil {
				other.Guest.Hardware.Type, other.Guest.Platform = "tdx", "tdx"
			}
			renamed("vm-2")(other)
			if v := p.At(testNow).AppraiseResult(other); finding(t, v, "vm.identity").Reason != ReasonIdentityMismatch {
				t.Errorf("%s: relabelled evidence: %+v", tc.name, v.Findings)
			}
		}
	}
}

func hasReason(v Verdict, reason string) bool {
	for _, f := range v.Findings {
		if f.Reason == reason {
			return true
		}
	}
	return false
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
