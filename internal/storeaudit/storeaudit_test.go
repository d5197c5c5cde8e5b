package storeaudit

import (
	"errors"
	"os"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
)

// TestVerifyStored: a vector report expired long ago verifies as of its
// own issued-at, whatever opts.Now says; under the wrong key it fails in
// the trust class; bytes that do not decode give an empty Result.
func TestVerifyStored(t *testing.T) {
	b, err := os.ReadFile("../../policy/testdata/chain/clean/01-hv-a-boot.cose")
	if err != nil {
		t.Fatal(err)
	}
	hv, err := keyfile.LoadPublic("../../testdata/keys/host.pub")
	if err != nil {
		t.Fatal(err)
	}
	other, err := keyfile.LoadPublic("../../testdata/keys/other.pub")
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyStored(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{hv}})
	if err != nil || !res.Valid || res.Report.Workload != "vm-1" {
		t.Fatalf("VerifyStored(01-hv-a-boot, host.pub): valid %v, err %v", res.Valid, err)
	}
	if _, err := VerifyStored(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{other}}); !errors.Is(err, attest.ErrUntrustedKey) {
		t.Errorf("VerifyStored under other.pub: %v, want ErrUntrustedKey", err)
	}
	res, err = VerifyStored([]byte("not a report"), attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{hv}})
	if err == nil || res == nil || res.Report != nil {
		t.Errorf("VerifyStored(garbage): %+v, %v; want an empty result and an error", res, err)
	}
}

func TestAboutReport(t *testing.T) {
	v := policy.Verdict{Findings: []policy.Finding{
		{Check: "drift", Status: policy.Warning, Subject: "weights", Detail: "root differs"},
		{Check: "vm", Status: policy.Affirming, Subject: "vm-1"},
	}}
	got := AboutReport(v, "vm-1")
	if got[0].Subject != "" || got[0].Detail != "weights: root differs" || got[1].Subject != "" || got[1].Detail != "" {
		t.Errorf("AboutReport: %+v", got)
	}
	if v.Findings[0].Subject != "weights" {
		t.Error("AboutReport changed its input")
	}
}
