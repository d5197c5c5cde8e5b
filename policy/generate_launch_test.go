package policy

import (
	"bytes"
	"strings"
	"testing"
)

// A policy generated from launch inputs loads, affirms a report whose
// SEV-SNP measurement is the computed one, and contraindicates another.
func TestGenerateLaunchRoundTrip(t *testing.T) {
	facts := snpFacts()
	text, err := GenerateLaunch(Launch{
		VM: "vm-1", Measurement: facts.Measurement, HostKeys: []string{"host.pub"},
		Inputs: []string{"firmware OVMF.fd sha256 00", "vcpus 4, EPYC-Milan"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("#   vcpus 4, EPYC-Milan\n")) {
		t.Errorf("the inputs are not in the policy:\n%s", text)
	}
	p, err := Parse(text, "/etc/hvmon/gen.hcl", Options{Hardware: &fakeHardware{facts: facts}, ReadFile: files(t)})
	if err != nil {
		t.Fatalf("generated policy does not parse: %v\n%s", err, text)
	}
	res := result(t)
	// The commented setting loads once uncommented.
	if _, err := Parse(bytes.Replace(text, []byte("# match_host_launch"), []byte("match_host_launch"), 1), "/etc/hvmon/gen.hcl", Options{Hardware: &fakeHardware{facts: facts}, ReadFile: files(t)}); err != nil {
		t.Errorf("with match_host_launch: %v", err)
	}
	v := p.At(testNow).AppraiseResult(res)
	if f := finding(t, v, "snp.measurement"); f.Status != Affirming {
		t.Errorf("snp.measurement = %s, want affirming\n%s", f.Status, text)
	}
	other := snpFacts()
	other.Measurement = make([]byte, 48)
	p, err = Parse(text, "/etc/hvmon/gen.hcl", Options{Hardware: &fakeHardware{facts: other}, ReadFile: files(t)})
	if err != nil {
		t.Fatal(err)
	}
	if v := p.At(testNow).AppraiseResult(res); v.Status != Contraindicated || finding(t, v, "snp.measurement").Status != Contraindicated {
		t.Errorf("another measurement: %s, want contraindicated", v.Status)
	}
}

func TestGenerateLaunchRefuses(t *testing.T) {
	good := Launch{VM: "vm-1", Measurement: make([]byte, 48), HostKeys: []string{"host.pub"}}
	for name, l := range map[string]Launch{
		"bad VM name":       {VM: "vm 1", Measurement: good.Measurement, HostKeys: good.HostKeys},
		"short measurement": {VM: "vm-1", Measurement: make([]byte, 32), HostKeys: good.HostKeys},
		"no host key":       {VM: "vm-1", Measurement: good.Measurement},
	} {
		if _, err := GenerateLaunch(l); err == nil || !strings.HasPrefix(err.Error(), "policy: ") {
			t.Errorf("%s: GenerateLaunch = %v, want an error", name, err)
		}
	}
}
