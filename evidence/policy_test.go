package evidence

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tee"
)

// PolicyHardware is package policy's Hardware, although this package does
// not import policy (only its tests do).
var _ policy.Hardware = PolicyHardware{}

// The recorded Milan report's launch measurement and REPORTED_TCB.
const (
	milanMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
)

// parsePolicy parses policy text whose named files are served from files.
func parsePolicy(t *testing.T, src string, files map[string][]byte) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src), "/policies/test.hcl", policy.Options{
		Hardware: PolicyHardware{},
		ReadFile: func(name string) ([]byte, error) {
			for k, v := range files {
				if strings.HasSuffix(name, "/"+k) {
					return v, nil
				}
			}
			return nil, errors.New("no such file")
		},
	})
	if err != nil {
		t.Fatalf("policy.Parse:\n%s\n%v", src, err)
	}
	return p
}

func findingOf(t *testing.T, v policy.Verdict, check string) policy.Finding {
	t.Helper()
	for _, f := range v.Findings {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no %s finding in %+v", check, v.Findings)
	return policy.Finding{}
}

// The recorded Milan report (a debug VM), verified by a policy's verifier
// and appraised: its measurement and TCB pass when pinned, and its debug
// policy is contraindicated unless the policy allows debug guests.
func TestPolicyMilan(t *testing.T) {
	hw := milanEvidence(t)
	ev, err := PolicyHardware{}.Verifier(tee.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	// The policy's verifier leaves debug to appraisal; the chain and
	// signature still have to verify.
	if _, err := ev.(*Verifier).VerifyWithoutReportDataUnsafe(hw, testNow); err != nil {
		t.Fatalf("policy verifier on the recorded Milan report: %v", err)
	}
	if _, err := ev.(*Verifier).VerifyWithoutReportDataUnsafe(flip(hw, 0x90), testNow); !errors.Is(err, ErrSignature) {
		t.Fatalf("policy verifier on a changed measurement: %v, want ErrSignature", err)
	}
	f, err := PolicyHardware{}.Facts(hw)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(f.Measurement) != milanMeasurement || !f.Debug || f.SNP == nil || f.TDX != nil {
		t.Fatalf("facts = %+v", f)
	}
	if s := f.SNP; len(s.IDKeyDigest) != 48 || len(s.HostData) != 32 || !s.TCBKnown || s.ReportedTCB != (tee.TCBParts{Bootloader: 2, TEE: 0, SNP: 5, Microcode: 68}) || s.Product != "Milan" || s.Signer != "VCEK" || s.Policy != 0xb0000 || !s.SMT || s.MigrateMA {
		t.Fatalf("SNP facts = %+v", s)
	}

	pinned := `defaults {
  snp {
    measurements = ["` + milanMeasurement + `"]
    minimum_tcb {
      bootloader = 2
      snp        = 5
      microcode  = 68
    }
    vmpl = 0
    allow_debug = true
  }
}`
	v := parsePolicy(t, pinned, nil).AppraiseHardware("milan", f)
	for _, check := range []string{"snp.measurement", "snp.tcb", "snp.vmpl", "snp.smt", "snp.migration_agent", "hardware.simulated"} {
		if g := findingOf(t, v, check); g.Status != policy.Affirming {
			t.Errorf("%s = %+v, want affirming", check, g)
		}
	}
	if g := findingOf(t, v, "hardware.debug"); g.Status != policy.Warning || v.Status != policy.Warning || v.Err() != nil {
		t.Errorf("debug guest allowed by the policy: %+v, verdict %s", g, v.Status)
	}

	// Debug forbidden (the default): contraindicated, exit class 5.
	v = parsePolicy(t, strings.Replace(pinned, "allow_debug = true", "", 1), nil).AppraiseHardware("milan", f)
	if g := findingOf(t, v, "hardware.debug"); g.Status != policy.Contraindicated || g.Reason != policy.ReasonDebugEnabled {
		t.Errorf("debug finding = %+v, want contraindicated %s", g, policy.ReasonDebugEnabled)
	}
	if v.Status != policy.Contraindicated || !errors.Is(v.Err(), attest.ErrAppraisal) {
		t.Errorf("verdict %s, Err %v", v.Status, v.Err())
	}

	// Another measurement, a higher TCB.
	other := strings.Replace(strings.Replace(pinned, milanMeasurement, strings.Repeat("00", 48), 1), "microcode  = 68", "microcode  = 69", 1)
	v = parsePolicy(t, other, nil).AppraiseHardware("milan", f)
	if findingOf(t, v, "snp.measurement").Reason != policy.ReasonMeasurementNot || findingOf(t, v, "snp.tcb").Reason != policy.ReasonTCBTooLow {
		t.Errorf("other measurement and TCB: %+v", v.Findings)
	}
}

// The recorded Sapphire Rapids quote's fields, appraised.
func TestPolicySPR(t *testing.T) {
	hw := sprEvidence(t)
	f, err := PolicyHardware{}.Facts(hw)
	if err != nil {
		t.Fatal(err)
	}
	if f.Debug || f.TDX == nil || len(f.TDX.MRTD) != 48 || !bytes.Equal(f.Measurement, f.TDX.MRTD) || hex.EncodeToString(f.TDX.TEETCBSVN) != "03000400000000000000000000000000" {
		t.Fatalf("facts = %+v %+v", f, f.TDX)
	}
	if len(f.TDX.MRSeam) != 48 || f.TDX.XFAM == 0 || f.TDX.TDAttributes&1 != 0 {
		t.Errorf("TDX facts: MRSEAM %x, XFAM %x, TD_ATTRIBUTES %x", f.TDX.MRSeam, f.TDX.XFAM, f.TDX.TDAttributes)
	}
	for i, r := range f.TDX.RTMRs {
		if len(r) != 48 {
			t.Errorf("RTMR%d is %d bytes", i, len(r))
		}
	}
	src := `defaults {
  tdx {
    mrtd  = ["` + hex.EncodeToString(f.TDX.MRTD) + `"]
    rtmr0 = ["` + hex.EncodeToString(f.TDX.RTMRs[0]) + `"]
    minimum_tee_tcb_svn = "03000400000000000000000000000000"
  }
}`
	v := parsePolicy(t, src, nil).AppraiseHardware("spr", f)
	if v.Status != policy.Affirming {
		t.Errorf("recorded quote against its own values: %s %+v", v.Status, v.Findings)
	}
	v = parsePolicy(t, strings.Replace(src, `"03000400`, `"03000500`, 1), nil).AppraiseHardware("spr", f)
	if findingOf(t, v, "tdx.tee_tcb_svn").Reason != policy.ReasonSVNTooLow || v.Status != policy.Contraindicated {
		t.Errorf("higher minimum TEE TCB SVN: %+v", v.Findings)
	}
	if _, err := (PolicyHardware{}).Facts(&attest.HardwareEvidence{Type: "sgx"}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Facts of an unknown type: %v", err)
	}
}

// Simulated evidence in a whole report: refused by a policy without
// allow_simulated (verification fails, exit class 3), accepted with it and
// the simulated roots, and a simulated debug guest is contraindicated.
func TestPolicySimulated(t *testing.T) {
	hostPEM, err := attest.MarshalPublicKeyPEM(fixedKey(t, 0x48).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		p     SimulatedProvider
		debug bool
	}{
		{"snp", simSNP(t, "seed one", false), false},
		{"tdx", simTDX(t, "seed one", false), false},
		{"snp debug", simSNP(t, "seed one", true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed, _ := boundReport(t, tc.p, nil)
			files := map[string][]byte{"host.pub": hostPEM, "sim.pem": tc.p.RootsPEM()}
			verify := func(src string) (*policy.Policy, *attest.Result, error) {
				pol := parsePolicy(t, src, files)
				opts, err := pol.VerifyOptions(attest.VerifyOptions{Now: testNow.Add(time.Minute)})
				if err != nil {
					t.Fatal(err)
				}
				res, err := attest.Verify(signed, opts)
				return pol, res, err
			}
			_, _, err := verify(`trust { host_keys = ["host.pub"] }`)
			if !errors.Is(err, attest.ErrBinding) || !errors.Is(err, ErrSimulatedNotTrusted) {
				t.Errorf("policy without allow_simulated: %v, want ErrBinding and ErrSimulatedNotTrusted", err)
			}
			pol, res, err := verify(`trust { host_keys = ["host.pub"] }
hardware_roots {
  allow_simulated = true
  simulated       = ["sim.pem"]
}`)
			if err != nil {
				t.Fatalf("policy with allow_simulated and the simulated roots: %v", err)
			}
			v := pol.At(testNow.Add(time.Minute)).AppraiseResult(res)
			if g := findingOf(t, v, "hardware.simulated"); g.Status != policy.Affirming || g.Reason != policy.ReasonSimulatedAllowed {
				t.Errorf("simulated finding %+v", g)
			}
			want := policy.Affirming
			if tc.debug {
				want = policy.Contraindicated
				if g := findingOf(t, v, "hardware.debug"); g.Reason != policy.ReasonDebugEnabled {
					t.Errorf("simulated debug guest: %+v", g)
				}
			}
			if v.Status != want {
				t.Errorf("verdict %s, want %s: %+v", v.Status, want, v.Findings)
			}
		})
	}
}
