package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

const hexMeas = "4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d"

func zeros(n int) string { return strings.Repeat("00", n) }

// Every rule, with a report that passes it and one that fails it. Each
// failing case is the attack or mistake the rule stops.
func TestAppraiseRules(t *testing.T) {
	other := testKey(t, 2).KeyID()
	for _, tc := range []struct {
		name   string
		policy string
		mutate func(r *attest.Result)
		facts  func(f *tee.Facts) *tee.Facts
		check  string
		status Status
		reason string
	}{
		// Signer.
		{name: "signer in policy", policy: `trust { host_keys = ["host.pub"] }`, check: "signer", status: Affirming, reason: ReasonKeyInPolicy},
		{name: "signer by key id", policy: fmt.Sprintf(`trust { host_key_ids = [%q] }`, testKey(t, 1).KeyID()), check: "signer", status: Affirming, reason: ReasonKeyInPolicy},
		{name: "signer pinned by the caller only", policy: fmt.Sprintf(`trust { host_key_ids = [%q] }`, other), check: "signer", status: Warning, reason: ReasonKeyNotInPolicy},
		{name: "signer, policy without keys", policy: ``, check: "signer", status: None},

		// Hardware evidence required (the default).
		{name: "hardware present", check: "hardware.required", status: Affirming, reason: ReasonHardwarePresent},
		{name: "no guest evidence", mutate: func(r *attest.Result) { r.Guest = nil }, check: "hardware.required", status: Contraindicated, reason: ReasonNoGuestEvidence},
		{name: "guest without hardware (platform none)", mutate: func(r *attest.Result) { r.Guest.Hardware, r.Guest.Platform = nil, "none" }, check: "hardware.required", status: Contraindicated, reason: ReasonNoHardware},
		{name: "guest regions only", check: "hardware.regions", status: Affirming, reason: ReasonGuestRegionsOnly},
		{name: "host-measured regions", mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("c", rootA, attest.PlatformHost, "vm-1")}
		}, check: "hardware.regions", status: Contraindicated, reason: ReasonHostMeasured},
		{name: "signer-measured regions", mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("c", rootA, "file", "vm-1")}
		}, check: "hardware.regions", status: Contraindicated, reason: ReasonUnbackedRegions},

		// Evidence type and simulation.
		{name: "type allowed", policy: `defaults { hardware_types = ["sev-snp", "tdx"] }`, check: "hardware.type", status: Affirming, reason: ReasonTypeAllowed},
		{name: "type not allowed", policy: `defaults { hardware_types = ["tdx"] }`, check: "hardware.type", status: Contraindicated, reason: ReasonTypeNotAllowed},
		{name: "real hardware", check: "hardware.simulated", status: Affirming, reason: ReasonRealHardware},
		{name: "simulated without allow_simulated", mutate: func(r *attest.Result) { r.Guest.Hardware.Type = "simulated-sev-snp" },
			check: "hardware.simulated", status: Contraindicated, reason: ReasonSimulated},
		{name: "simulated with allow_simulated", policy: `hardware_roots {
  allow_simulated = true
  simulated_seed  = "` + zeros(16) + `"
}`, mutate: func(r *attest.Result) { r.Guest.Hardware.Type = "simulated-sev-snp" },
			check: "hardware.simulated", status: Affirming, reason: ReasonSimulatedAllowed},
		{name: "facts unreadable", facts: func(*tee.Facts) *tee.Facts { return nil }, check: "hardware.facts", status: Contraindicated, reason: ReasonHardwareUnreadable},

		// Debug.
		{name: "not debug", check: "hardware.debug", status: Affirming, reason: ReasonDebugDisabled},
		{name: "debug forbidden by default", facts: func(f *tee.Facts) *tee.Facts { f.Debug = true; return f }, check: "hardware.debug", status: Contraindicated, reason: ReasonDebugEnabled},
		{name: "debug allowed", policy: `defaults { snp { allow_debug = true } }`, facts: func(f *tee.Facts) *tee.Facts { f.Debug = true; return f },
			check: "hardware.debug", status: Warning, reason: ReasonDebugAllowed},
		{name: "tdx debug forbidden", facts: func(*tee.Facts) *tee.Facts { f := tdxFacts(); f.Debug = true; return f },
			check: "hardware.debug", status: Contraindicated, reason: ReasonDebugEnabled},
		{name: "snp allow_debug does not allow a debug TD", policy: `defaults { snp { allow_debug = true } }`,
			facts: func(*tee.Facts) *tee.Facts { f := tdxFacts(); f.Debug = true; return f },
			check: "hardware.debug", status: Contraindicated, reason: ReasonDebugEnabled},

		// Age and events.
		{name: "fresh", policy: `defaults { max_age = "5m" }`, check: "report.max_age", status: Affirming, reason: ReasonFresh},
		{name: "too old", policy: `defaults { max_age = "5m" }`, mutate: func(r *attest.Result) { r.Report.IssuedAt = testNow.Add(-6 * time.Minute) },
			check: "report.max_age", status: Contraindicated, reason: ReasonTooOld},
		{name: "event allowed", policy: `defaults { allowed_events = ["boot", "periodic"] }`, check: "report.event", status: Affirming, reason: ReasonEventAllowed},
		{name: "event not allowed", policy: `defaults { allowed_events = ["boot", "periodic"] }`, mutate: func(r *attest.Result) { r.Report.Event = attest.EventRestore },
			check: "report.event", status: Contraindicated, reason: ReasonEventNotAllowed},
		{name: "no event allowed", policy: `defaults { allowed_events = [] }`, check: "report.event", status: Contraindicated, reason: ReasonEventNotAllowed},

		// Regions.
		{name: "root in the set", policy: fmt.Sprintf(`defaults { region "a" { roots = [%q, %q] } }`, rootA2, rootA), check: "region.a", status: Affirming, reason: ReasonRootAllowed},
		{name: "root outside the set", policy: fmt.Sprintf(`defaults { region "a" { roots = [%q] } }`, rootA2), check: "region.a", status: Contraindicated, reason: ReasonRootNotAllowed},
		{name: "root outside the set, warning", policy: fmt.Sprintf(`defaults { region "a" { 
  roots = [%q]
  on_mismatch = "warning"
} }`, rootA2), check: "region.a", status: Warning, reason: ReasonRootNotAllowed},
		{name: "region missing", policy: fmt.Sprintf(`defaults { region "z" { roots = [%q] } }`, rootA), check: "region.z", status: Contraindicated, reason: ReasonRegionMissing},
		{name: "optional region missing", policy: fmt.Sprintf(`defaults { region "z" {
  roots = [%q]
  required = false
} }`, rootA), check: "region.z", status: None, reason: ReasonRegionOptional},
		{name: "required region present", policy: `defaults { required_regions = ["b"] }`, check: "region.b", status: Affirming, reason: ReasonRegionPresent},
		{name: "required region missing", policy: `defaults { required_regions = ["z"] }`, check: "region.z", status: Contraindicated, reason: ReasonRegionMissing},
		{name: "host claims the expected root of a missing guest region", policy: fmt.Sprintf(`defaults { region "z" { roots = [%q] } }`, rootA), mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("z", rootA, attest.PlatformHost, "vm-1")}
		}, check: "region.z", status: Contraindicated, reason: ReasonRegionMissing},
		{name: "host-measured region counts without require_hardware", policy: fmt.Sprintf(`defaults {
  require_hardware = false
  region "z" { roots = [%q] }
}`, rootA), mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("z", rootA, attest.PlatformHost, "vm-1")}
			r.Guest = nil
		}, check: "region.z", status: Affirming, reason: ReasonRootAllowed},

		// SEV-SNP.
		{name: "snp measurement allowed", policy: `defaults { snp { measurements = ["` + hexMeas + `"] } }`, check: "snp.measurement", status: Affirming, reason: ReasonMeasurementAllowed},
		{name: "snp measurement not allowed", policy: `defaults { snp { measurements = ["` + zeros(48) + `"] } }`, check: "snp.measurement", status: Contraindicated, reason: ReasonMeasurementNot},
		{name: "snp tcb at the minimum", policy: `defaults { snp { minimum_tcb {
  bootloader = 3
  snp = 8
  microcode = 115
} } }`, check: "snp.tcb", status: Affirming, reason: ReasonTCBOK},
		{name: "snp tcb below the minimum", policy: `defaults { snp { minimum_tcb {
  bootloader = 3
  snp = 9
} } }`, check: "snp.tcb", status: Contraindicated, reason: ReasonTCBTooLow},
		{name: "snp tcb of unknown layout", policy: `defaults { snp { minimum_tcb { snp = 1 } } }`, facts: func(f *tee.Facts) *tee.Facts { f.SNP.TCBKnown = false; return f },
			check: "snp.tcb", status: Contraindicated, reason: ReasonTCBUnknown},
		{name: "snp guest svn ok", policy: `defaults { snp { minimum_guest_svn = 2 } }`, check: "snp.guest_svn", status: Affirming, reason: ReasonSVNOK},
		{name: "snp guest svn too low", policy: `defaults { snp { minimum_guest_svn = 3 } }`, check: "snp.guest_svn", status: Contraindicated, reason: ReasonSVNTooLow},
		{name: "snp smt allowed by default", check: "snp.smt", status: Affirming, reason: ReasonSMTAllowed},
		{name: "snp smt not allowed", policy: `defaults { snp { allow_smt = false } }`, check: "snp.smt", status: Contraindicated, reason: ReasonSMTNotAllowed},
		{name: "snp no migration agent", check: "snp.migration_agent", status: Affirming, reason: ReasonMAAllowed},
		{name: "snp migration agent forbidden by default", facts: func(f *tee.Facts) *tee.Facts { f.SNP.MigrateMA = true; return f },
			check: "snp.migration_agent", status: Contraindicated, reason: ReasonMANotAllowed},
		{name: "snp migration agent allowed", policy: `defaults { snp { allow_migration_agent = true } }`, facts: func(f *tee.Facts) *tee.Facts { f.SNP.MigrateMA = true; return f },
			check: "snp.migration_agent", status: Affirming, reason: ReasonMAAllowed},
		{name: "snp host data", policy: `defaults { snp { host_data = ["` + zeros(32) + `"] } }`, check: "snp.host_data", status: Affirming, reason: ReasonValueAllowed},
		{name: "snp other host data", policy: `defaults { snp { host_data = ["` + strings.Repeat("11", 32) + `"] } }`, check: "snp.host_data", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "snp id key digest", policy: `defaults { snp { id_key_digests = ["` + zeros(48) + `"] } }`, check: "snp.id_key_digest", status: Affirming, reason: ReasonValueAllowed},
		{name: "snp other id key digest", policy: `defaults { snp { id_key_digests = ["` + strings.Repeat("ab", 48) + `"] } }`, check: "snp.id_key_digest", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "snp single socket", policy: `defaults { snp { require_single_socket = true } }`, facts: func(f *tee.Facts) *tee.Facts { f.SNP.SingleSocket = true; return f },
			check: "snp.single_socket", status: Affirming, reason: ReasonValueAllowed},
		{name: "snp not single socket", policy: `defaults { snp { require_single_socket = true } }`, check: "snp.single_socket", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "snp vmpl", policy: `defaults { snp { vmpl = 0 } }`, check: "snp.vmpl", status: Affirming, reason: ReasonValueAllowed},
		{name: "snp other vmpl", policy: `defaults { snp { vmpl = 0 } }`, facts: func(f *tee.Facts) *tee.Facts { f.SNP.VMPL = 2; return f },
			check: "snp.vmpl", status: Contraindicated, reason: ReasonValueNotAllowed},

		// TDX.
		{name: "tdx mrtd allowed", policy: `defaults { tdx { mrtd = ["` + hexMeas + `"] } }`, facts: tdx, check: "tdx.mrtd", status: Affirming, reason: ReasonMeasurementAllowed},
		{name: "tdx mrtd not allowed", policy: `defaults { tdx { mrtd = ["` + zeros(48) + `"] } }`, facts: tdx, check: "tdx.mrtd", status: Contraindicated, reason: ReasonMeasurementNot},
		{name: "tdx rtmr2 allowed", policy: `defaults { tdx { rtmr2 = ["` + strings.Repeat("12", 48) + `"] } }`, facts: tdx, check: "tdx.rtmr2", status: Affirming, reason: ReasonMeasurementAllowed},
		{name: "tdx rtmr2 not allowed", policy: `defaults { tdx { rtmr2 = ["` + strings.Repeat("13", 48) + `"] } }`, facts: tdx, check: "tdx.rtmr2", status: Contraindicated, reason: ReasonMeasurementNot},
		{name: "tdx mr_config_id", policy: `defaults { tdx { mr_config_id = ["` + zeros(48) + `"] } }`, facts: tdx, check: "tdx.mr_config_id", status: Affirming, reason: ReasonValueAllowed},
		{name: "tdx other mr_config_id", policy: `defaults { tdx { mr_config_id = ["` + strings.Repeat("01", 48) + `"] } }`, facts: tdx, check: "tdx.mr_config_id", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "tdx mr_owner", policy: `defaults { tdx { mr_owner = ["` + zeros(48) + `"] } }`, facts: tdx, check: "tdx.mr_owner", status: Affirming, reason: ReasonValueAllowed},
		{name: "tdx other mr_owner", policy: `defaults { tdx { mr_owner = ["` + strings.Repeat("01", 48) + `"] } }`, facts: tdx, check: "tdx.mr_owner", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "tdx mr_seam", policy: `defaults { tdx { mr_seam = ["` + strings.Repeat("5e", 48) + `"] } }`, facts: tdx, check: "tdx.mr_seam", status: Affirming, reason: ReasonMeasurementAllowed},
		{name: "tdx other mr_seam", policy: `defaults { tdx { mr_seam = ["` + strings.Repeat("5f", 48) + `"] } }`, facts: tdx, check: "tdx.mr_seam", status: Contraindicated, reason: ReasonMeasurementNot},
		{name: "tdx xfam", policy: `defaults { tdx { xfam = "0000000000061ae7" } }`, facts: tdx, check: "tdx.xfam", status: Affirming, reason: ReasonValueAllowed},
		{name: "tdx other xfam", policy: `defaults { tdx { xfam = "00000000000602e7" } }`, facts: tdx, check: "tdx.xfam", status: Contraindicated, reason: ReasonValueNotAllowed},
		{name: "tdx tee tcb svn ok", policy: `defaults { tdx { minimum_tee_tcb_svn = "03000400000000000000000000000000" } }`, facts: tdx, check: "tdx.tee_tcb_svn", status: Affirming, reason: ReasonSVNOK},
		{name: "tdx tee tcb svn too low", policy: `defaults { tdx { minimum_tee_tcb_svn = "03000500000000000000000000000000" } }`, facts: tdx, check: "tdx.tee_tcb_svn", status: Contraindicated, reason: ReasonSVNTooLow},
		{name: "tdx td attributes", policy: `defaults { tdx { td_attributes = "0000000010000000" } }`, facts: tdx, check: "tdx.td_attributes", status: Affirming, reason: ReasonValueAllowed},
		{name: "tdx other td attributes", policy: `defaults { tdx { td_attributes = "0000000000000000" } }`, facts: tdx, check: "tdx.td_attributes", status: Contraindicated, reason: ReasonValueNotAllowed},

		// Which VM.
		{name: "VM name with a trailing space", mutate: renamed("vm-1 "), check: "vm.name", status: Contraindicated, reason: ReasonInvalidVMName},
		{name: "VM name with a zero-width space", mutate: renamed("vm-1\u200b"), check: "vm.name", status: Contraindicated, reason: ReasonInvalidVMName},
		{name: "VM name with a Cyrillic look-alike letter", policy: `vm "vm-1" { require_hardware = false }
vm "*" { require_hardware = false }`, mutate: renamed("v\u043c-1"), check: "vm.name", status: Contraindicated, reason: ReasonInvalidVMName},
		{name: "known VM", policy: `vm "vm-1" { max_age = "1h" }`, check: "vm.known", status: Affirming, reason: ReasonKnownVM},
		{name: "unknown VM", policy: `vm "vm-2" { max_age = "1h" }`, check: "vm.known", status: Contraindicated, reason: ReasonUnknownVM},
		{name: "unknown VM, required explicitly", policy: `defaults { require_vm_block = true }`, check: "vm.known", status: Contraindicated, reason: ReasonUnknownVM},
		{name: "identity bound (SEV-SNP HOST_DATA)", policy: `vm "vm-1" { bind_vm_identity = true }`, facts: withIdentity("vm-1"),
			check: "vm.identity", status: Affirming, reason: ReasonIdentityBound},
		{name: "identity of another VM (SEV-SNP)", policy: `vm "vm-1" { bind_vm_identity = true }`, facts: withIdentity("vm-2"),
			check: "vm.identity", status: Contraindicated, reason: ReasonIdentityMismatch},
		{name: "no identity set at launch", policy: `defaults { bind_vm_identity = true }`,
			check: "vm.identity", status: Contraindicated, reason: ReasonIdentityMismatch},
		{name: "identity bound (TDX MRCONFIGID)", policy: `defaults { bind_vm_identity = true }`, facts: withTDXIdentity("vm-1"),
			check: "vm.identity", status: Affirming, reason: ReasonIdentityBound},
		{name: "identity of another VM (TDX)", policy: `defaults { bind_vm_identity = true }`, facts: withTDXIdentity("vm-1 "),
			check: "vm.identity", status: Contraindicated, reason: ReasonIdentityMismatch},
		{name: "identity without hardware evidence", policy: `defaults {
  bind_vm_identity = true
  require_hardware = false
}`, mutate: func(r *attest.Result) { r.Guest.Hardware, r.Guest.Platform = nil, "none" }, check: "vm.identity", status: Contraindicated, reason: ReasonIdentityUnbound},
		{name: "identity, evidence unreadable", policy: `defaults { bind_vm_identity = true }`, facts: func(*tee.Facts) *tee.Facts { return nil },
			check: "vm.identity", status: Contraindicated, reason: ReasonIdentityUnbound},

		// Whose measurements: only the guest's, under hardware evidence.
		{name: "guest region without hardware evidence satisfies no region rule", policy: fmt.Sprintf(`defaults { region "a" { roots = [%q] } }`, rootA),
			mutate: func(r *attest.Result) { r.Guest.Hardware, r.Guest.Platform = nil, "none" }, check: "region.a", status: Contraindicated, reason: ReasonRegionMissing},
		{name: "guest regions without hardware evidence are unbacked", mutate: func(r *attest.Result) { r.Guest.Hardware, r.Guest.Platform = nil, "none" },
			check: "hardware.regions", status: Contraindicated, reason: ReasonUnbackedRegions},
		{name: "host claim labelled sev-snp", mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("z", rootA, "sev-snp", "vm-1")}
			r.Report.Platform = "sev-snp"
		}, check: "hardware.regions", status: Contraindicated, reason: ReasonUnbackedRegions},
		{name: "host claim labelled sev-snp satisfies no region rule", policy: fmt.Sprintf(`defaults { region "z" { roots = [%q] } }`, rootA), mutate: func(r *attest.Result) {
			r.Report.Claims = []attest.Claim{claim("z", rootA, "sev-snp", "vm-1")}
			r.Report.Platform = "sev-snp"
		}, check: "region.z", status: Contraindicated, reason: ReasonRegionMissing},

		// Per-VM blocks.
		{name: "vm block applies", policy: `vm "vm-*" { allowed_events = ["periodic"] }`, check: "report.event", status: Contraindicated, reason: ReasonEventNotAllowed},
		{name: "vm block overrides the defaults", policy: `defaults { allowed_events = ["periodic"] }
vm "vm-1" { allowed_events = ["boot"] }`, check: "report.event", status: Affirming, reason: ReasonEventAllowed},
		{name: "later vm block wins", policy: `vm "vm-1" { allowed_events = ["boot"] }
vm "*" { allowed_events = ["periodic"] }`, check: "report.event", status: Contraindicated, reason: ReasonEventNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := snpFacts()
			if tc.facts != nil {
				facts = tc.facts(facts)
			}
			if facts != nil && facts.TDX != nil {
				tc.mutate = chain(func(r *attest.Result) { r.Guest.Hardware.Type, r.Guest.Platform = "tdx", "tdx" }, tc.mutate)
			}
			p := mustParse(t, tc.policy, &fakeHardware{facts: facts})
			res := result(t)
			if tc.mutate != nil {
				tc.mutate(res)
			}
			v := p.At(testNow).AppraiseResult(res)
			f := finding(t, v, tc.check)
			if f.Status != tc.status || f.Reason != tc.reason {
				t.Errorf("%s = %s/%s (%s), want %s/%s", tc.check, f.Status, f.Reason, f.Detail, tc.status, tc.reason)
			}
			if Worse(v.Status, f.Status) != v.Status {
				t.Errorf("overall status %s is better than finding %s", v.Status, f.Status)
			}
			if (v.Status == Contraindicated) != errors.Is(v.Err(), attest.ErrAppraisal) {
				t.Errorf("verdict %s: Err() = %v", v.Status, v.Err())
			}
		})
	}
}

func tdx(*tee.Facts) *tee.Facts { return tdxFacts() }

// renamed gives the report (and its guest evidence) another VM name.
func renamed(name string) func(*attest.Result) {
	return func(r *attest.Result) {
		r.Report.Workload, r.Guest.VM = name, name
		for i := range r.Guest.Claims {
			r.Guest.Claims[i].Workload = name
		}
	}
}

// withIdentity gives SEV-SNP facts the HOST_DATA of VM name.
func withIdentity(name string) func(*tee.Facts) *tee.Facts {
	return func(f *tee.Facts) *tee.Facts {
		h := attest.VMIdentityHostData(name)
		f.SNP.HostData = h[:]
		return f
	}
}

// withTDXIdentity gives TDX facts the MRCONFIGID of VM name.
func withTDXIdentity(name string) func(*tee.Facts) *tee.Facts {
	return func(*tee.Facts) *tee.Facts {
		f := tdxFacts()
		m := attest.VMIdentityMRConfigID(name)
		f.TDX.MRConfigID = m[:]
		return f
	}
}

func chain(fs ...func(*attest.Result)) func(*attest.Result) {
	return func(r *attest.Result) {
		for _, f := range fs {
			if f != nil {
				f(r)
			}
		}
	}
}

// A report that did not verify is never appraised as anything but
// contraindicated, whatever it claims.
func TestAppraiseUnverified(t *testing.T) {
	p := mustParse(t, `defaults { require_hardware = false }`, nil)
	for _, res := range []*attest.Result{nil, {Valid: false, Report: result(t).Report}, {Valid: true}} {
		v := p.AppraiseResult(res)
		if v.Status != Contraindicated || len(v.Findings) != 1 || v.Findings[0].Reason != ReasonNotVerified {
			t.Errorf("AppraiseResult(%+v) = %+v, want one %s finding", res, v, ReasonNotVerified)
		}
	}
}

// The overall status is the worst finding: all affirming, a warning, a
// contraindication.
func TestVerdictStatus(t *testing.T) {
	pass := fmt.Sprintf(`trust { host_keys = ["host.pub"] }
defaults {
  region "a" { roots = [%q] }
  region "b" {
    roots = [%q]
    on_mismatch = "warning"
  }
}`, rootA, rootB)
	for _, tc := range []struct {
		name   string
		mutate func(r *attest.Result)
		want   Status
	}{
		{"affirming", nil, Affirming},
		{"warning", func(r *attest.Result) { r.Guest.Claims[1].Snapshot.Root = rootA2 }, Warning},
		{"contraindicated", func(r *attest.Result) {
			r.Guest.Claims[1].Snapshot.Root = rootA2
			r.Guest.Claims[0].Snapshot.Root = rootA2
		}, Contraindicated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := result(t)
			if tc.mutate != nil {
				tc.mutate(res)
			}
			v := mustParse(t, pass, &fakeHardware{facts: snpFacts()}).At(testNow).AppraiseResult(res)
			if v.Status != tc.want {
				t.Errorf("verdict %s, want %s; findings %+v", v.Status, tc.want, v.Findings)
			}
			err := v.Err()
			if tc.want == Contraindicated {
				var ae *AppraisalError
				if !errors.As(err, &ae) || !errors.Is(err, attest.ErrAppraisal) || !strings.Contains(err.Error(), "region.a: root_not_allowed") {
					t.Errorf("Err() = %v, want an AppraisalError naming region.a", err)
				}
			} else if err != nil {
				t.Errorf("Err() = %v for a %s verdict", err, tc.want)
			}
		})
	}
}

// AppraiseHardware checks hardware facts alone.
func TestAppraiseHardware(t *testing.T) {
	p := mustParse(t, `defaults { snp { measurements = ["`+hexMeas+`"] } }`, nil)
	v := p.AppraiseHardware("vm-1", snpFacts())
	if v.Status != Affirming || finding(t, v, "snp.measurement").Reason != ReasonMeasurementAllowed {
		t.Errorf("AppraiseHardware = %+v, want affirming", v)
	}
	if hasCheck(v, "signer") || hasCheck(v, "hardware.required") {
		t.Errorf("AppraiseHardware reports report-level checks: %+v", v.Findings)
	}
	if v := p.AppraiseHardware("vm-1", nil); v.Status != Contraindicated {
		t.Errorf("AppraiseHardware(nil) = %s, want contraindicated", v.Status)
	}
	if v := p.AppraiseHardware("vm-1 ", snpFacts()); finding(t, v, "vm.name").Reason != ReasonInvalidVMName {
		t.Errorf("AppraiseHardware for an invalid name = %+v", v.Findings)
	}
	bound := mustParse(t, `defaults { bind_vm_identity = true }`, nil)
	if v := bound.AppraiseHardware("vm-1", withIdentity("vm-2")(snpFacts())); finding(t, v, "vm.identity").Reason != ReasonIdentityMismatch {
		t.Errorf("AppraiseHardware, another VM's identity = %+v", v.Findings)
	}
}

// VerifyOptions adds the policy's keys to the caller's and always installs
// the policy's verifier.
func TestVerifyOptions(t *testing.T) {
	var trust tee.Trust
	p := mustParse(t, `trust { host_keys = ["host.pub"] }
hardware_roots {
  amd = ["amd.pem"]
  allow_simulated = true
  simulated = ["sim.pem"]
}`, &fakeHardware{trust: &trust})
	caller := testKey(t, 2).PublicKey()
	o, err := p.VerifyOptions(attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{caller}, Evidence: nil, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.TrustedKeys) != 2 || !o.TrustedKeys[0].Equal(testKey(t, 1).PublicKey()) || !o.TrustedKeys[1].Equal(caller) || !o.Strict {
		t.Errorf("VerifyOptions = %+v, want the policy's key, then the caller's, and the caller's other options", o)
	}
	if _, ok := o.Evidence.(acceptAll); !ok {
		t.Errorf("VerifyOptions.Evidence = %T, want the policy's verifier", o.Evidence)
	}
	if len(trust.AMDRoots) != 1 || trust.AMDRoots[0].Name != "amd.pem" || trust.IntelRoots != nil || !trust.AllowSimulated || len(trust.SimulatedRoots) != 1 {
		t.Errorf("hardware trust = %+v", trust)
	}
	noHW, err := Parse(nil, "p.hcl", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noHW.VerifyOptions(attest.VerifyOptions{}); err == nil {
		t.Error("VerifyOptions without hardware support succeeded")
	}
	res := result(t)
	if v := noHW.AppraiseResult(res); finding(t, v, "hardware.facts").Status != Contraindicated {
		t.Errorf("appraising hardware evidence without hardware support: %+v", v)
	}
}
