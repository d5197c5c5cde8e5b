package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
)

// Reason codes. They are stable: scripts branch on them.
const (
	ReasonNotVerified        = "not_verified"
	ReasonKeyInPolicy        = "key_in_policy"
	ReasonKeyNotInPolicy     = "key_not_in_policy"
	ReasonHardwarePresent    = "hardware_present"
	ReasonNoGuestEvidence    = "no_guest_evidence"
	ReasonNoHardware         = "no_hardware_evidence"
	ReasonGuestRegionsOnly   = "guest_regions_only"
	ReasonHostMeasured       = "host_measured_regions"
	ReasonUnbackedRegions    = "unbacked_regions"
	ReasonTypeAllowed        = "type_allowed"
	ReasonTypeNotAllowed     = "type_not_allowed"
	ReasonRealHardware       = "real_hardware"
	ReasonSimulatedAllowed   = "simulated_allowed"
	ReasonSimulated          = "simulated_evidence"
	ReasonHardwareUnreadable = "hardware_unreadable"
	ReasonDebugDisabled      = "debug_disabled"
	ReasonDebugEnabled       = "debug_enabled"
	ReasonDebugAllowed       = "debug_allowed"
	ReasonFresh              = "fresh"
	ReasonTooOld             = "too_old"
	ReasonEventAllowed       = "event_allowed"
	ReasonEventNotAllowed    = "event_not_allowed"
	ReasonRegionPresent      = "region_present"
	ReasonRegionMissing      = "region_missing"
	ReasonRegionOptional     = "region_absent_optional"
	ReasonRootAllowed        = "root_allowed"
	ReasonRootNotAllowed     = "root_not_allowed"
	ReasonMeasurementAllowed = "measurement_allowed"
	ReasonMeasurementNot     = "measurement_not_allowed"
	ReasonTCBOK              = "tcb_ok"
	ReasonTCBTooLow          = "tcb_too_low"
	ReasonTCBUnknown         = "tcb_layout_unknown"
	ReasonSVNOK              = "svn_ok"
	ReasonSVNTooLow          = "svn_too_low"
	ReasonSMTAllowed         = "smt_allowed"
	ReasonSMTNotAllowed      = "smt_not_allowed"
	ReasonMANotAllowed       = "migration_agent_not_allowed"
	ReasonMAAllowed          = "migration_agent_allowed"
	ReasonValueAllowed       = "value_allowed"
	ReasonValueNotAllowed    = "value_not_allowed"
	ReasonInvalidVMName      = "invalid_vm_name"
	ReasonKnownVM            = "known_vm"
	ReasonUnknownVM          = "unknown_vm"
	ReasonIdentityBound      = "identity_bound"
	ReasonIdentityMismatch   = "identity_mismatch"
	ReasonIdentityUnbound    = "identity_unavailable"
)

// Input is what Appraise looks at: an authenticated report and the facts
// of its verified hardware evidence.
type Input struct {
	// Result is attest.Verify's result for a report that verified.
	Result *attest.Result
	// Hardware are the decoded fields of Result.Guest.Hardware; nil when
	// the report has none. A non-nil HardwareErr says why they could not
	// be decoded.
	Hardware    *HardwareFacts
	HardwareErr error
	// Now is the appraisal time; zero means time.Now().
	Now time.Time
}

// AppraiseResult appraises a report that attest.Verify verified with
// options from VerifyOptions, decoding its hardware evidence through the
// policy's Hardware and using the policy's clock (see At).
func (p *Policy) AppraiseResult(res *attest.Result) Verdict {
	in := Input{Result: res, Now: p.now}
	if res != nil && res.Guest != nil && res.Guest.Hardware != nil {
		if p.hw == nil {
			in.HardwareErr = errors.New("this policy was loaded without hardware support")
		} else {
			in.Hardware, in.HardwareErr = p.hw.Facts(res.Guest.Hardware)
		}
	}
	return p.Appraise(in)
}

// Appraise checks an authenticated report against the rules for its VM and
// returns one finding per rule. It never fails: a report that did not
// verify is contraindicated.
func (p *Policy) Appraise(in Input) Verdict {
	var v Verdict
	res := in.Result
	if res == nil || !res.Valid || res.Report == nil {
		v.Add(Finding{Check: "verification", Status: Contraindicated, Reason: ReasonNotVerified, Detail: "the report did not verify; nothing to appraise"})
		return v
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := res.Report
	rules := p.RulesFor(rep.Workload)
	subject := rep.Workload

	// Signer: the policy's own keys and key ids, or a key the caller added.
	switch {
	case slices.Contains(p.keyIDs, res.KeyID):
		v.Add(Finding{Check: "signer", Status: Affirming, Reason: ReasonKeyInPolicy, Subject: subject, Detail: "key " + res.KeyID.String()})
	case len(p.keyIDs) == 0:
		v.Add(Finding{Check: "signer", Status: None, Subject: subject, Detail: "the policy names no host key; key " + res.KeyID.String() + " was pinned by the caller"})
	default:
		v.Add(Finding{Check: "signer", Status: Warning, Reason: ReasonKeyNotInPolicy, Subject: subject, Detail: "key " + res.KeyID.String() + " was pinned by the caller, not by the policy"})
	}

	// Which VM. A name outside the rule (a trailing space, a look-alike
	// letter) is never matched against vm blocks nor appraised under the
	// defaults: it could only be an attempt to reach laxer rules.
	if !attest.ValidVMName(rep.Workload) {
		v.Add(Finding{Check: "vm.name", Status: Contraindicated, Reason: ReasonInvalidVMName, Subject: strconv.QuoteToASCII(rep.Workload),
			Detail: fmt.Sprintf("the report's VM name %+q does not match %s", rep.Workload, attest.VMNameRule)})
		return v
	}
	if rules.RequireVMBlock {
		if len(rules.Matched) > 0 {
			v.Add(Finding{Check: "vm.known", Status: Affirming, Reason: ReasonKnownVM, Subject: subject, Detail: fmt.Sprintf("vm block(s) %q", rules.Matched)})
		} else {
			v.Add(Finding{Check: "vm.known", Status: Contraindicated, Reason: ReasonUnknownVM, Subject: subject,
				Detail: "no vm block of the policy names this VM (require_vm_block)"})
		}
	}

	hw := (*attest.HardwareEvidence)(nil)
	if res.Guest != nil {
		hw = res.Guest.Hardware
	}
	// Whose measurements count: attest's one rule, the one Verify applies
	// to --expect. With require_hardware only hardware-backed guest claims
	// count; without it (the policy's explicit choice) every claim does.
	counted, excluded := res.CountedClaims(attest.VerifyOptions{RequireHardware: rules.RequireHardware, AllowHostMeasured: !rules.RequireHardware})
	if rules.RequireHardware {
		switch {
		case res.Guest == nil:
			v.Add(Finding{Check: "hardware.required", Status: Contraindicated, Reason: ReasonNoGuestEvidence, Subject: subject, Detail: "the report embeds no guest evidence"})
		case hw == nil:
			v.Add(Finding{Check: "hardware.required", Status: Contraindicated, Reason: ReasonNoHardware, Subject: subject, Detail: fmt.Sprintf("guest evidence of platform %q carries no hardware evidence", res.Guest.Platform)})
		default:
			v.Add(Finding{Check: "hardware.required", Status: Affirming, Reason: ReasonHardwarePresent, Subject: subject, Detail: string(hw.Type)})
		}
		// Regions the guest did not measure under hardware evidence are
		// not backed: a host that drops the guest's evidence and claims
		// the expected roots itself must not pass, whatever platform its
		// claims name. The label only picks the reason: a claim of
		// platform host is the host's own measurement.
		var host, other []string
		for _, c := range excluded {
			if c.Platform == attest.PlatformHost {
				host = append(host, c.Region.ID)
			} else {
				other = append(other, c.Region.ID)
			}
		}
		switch {
		case len(host) > 0:
			v.Add(Finding{Check: "hardware.regions", Status: Contraindicated, Reason: ReasonHostMeasured, Subject: subject, Detail: fmt.Sprintf("region(s) %q measured by the host, not the guest", host)})
		case len(other) > 0:
			v.Add(Finding{Check: "hardware.regions", Status: Contraindicated, Reason: ReasonUnbackedRegions, Subject: subject, Detail: fmt.Sprintf("region(s) %q not measured by the guest under hardware evidence", other)})
		default:
			v.Add(Finding{Check: "hardware.regions", Status: Affirming, Reason: ReasonGuestRegionsOnly, Subject: subject})
		}
	}
	if hw != nil {
		p.appraiseHardware(&v, rules, subject, hw.Type, in.Hardware, in.HardwareErr)
	}
	if rules.BindVMIdentity {
		appraiseIdentity(&v, rep.Workload, hw, in.Hardware, in.HardwareErr)
	}

	if rules.MaxAge > 0 {
		age := now.Sub(rep.IssuedAt)
		if age > rules.MaxAge {
			v.Add(Finding{Check: "report.max_age", Status: Contraindicated, Reason: ReasonTooOld, Subject: subject, Detail: fmt.Sprintf("issued %s ago, more than %s", age.Round(time.Second), rules.MaxAge)})
		} else {
			v.Add(Finding{Check: "report.max_age", Status: Affirming, Reason: ReasonFresh, Subject: subject, Detail: fmt.Sprintf("issued %s ago", age.Round(time.Second))})
		}
	}
	if rules.AllowedEvents != nil {
		if slices.Contains(rules.AllowedEvents, rep.Event) {
			v.Add(Finding{Check: "report.event", Status: Affirming, Reason: ReasonEventAllowed, Subject: subject, Detail: string(rep.Event)})
		} else {
			v.Add(Finding{Check: "report.event", Status: Contraindicated, Reason: ReasonEventNotAllowed, Subject: subject, Detail: fmt.Sprintf("event %q is not among %q", rep.Event, rules.AllowedEvents)})
		}
	}

	// Regions: only the counted claims satisfy a region rule.
	find := func(id string) *attest.Claim {
		for i := range counted {
			if counted[i].Region.ID == id {
				return &counted[i]
			}
		}
		return nil
	}
	for _, id := range rules.RequiredRegions {
		if slices.ContainsFunc(rules.Regions, func(r RegionRule) bool { return r.ID == id }) {
			continue // its region rule says more
		}
		if find(id) != nil {
			v.Add(Finding{Check: "region." + id, Status: Affirming, Reason: ReasonRegionPresent, Subject: id})
		} else {
			v.Add(Finding{Check: "region." + id, Status: Contraindicated, Reason: ReasonRegionMissing, Subject: id, Detail: "required region not in the report"})
		}
	}
	for _, rr := range rules.Regions {
		c := find(rr.ID)
		switch {
		case c == nil && (rr.Required || slices.Contains(rules.RequiredRegions, rr.ID)):
			v.Add(Finding{Check: "region." + rr.ID, Status: Contraindicated, Reason: ReasonRegionMissing, Subject: rr.ID, Detail: "required region not in the report"})
		case c == nil:
			v.Add(Finding{Check: "region." + rr.ID, Status: None, Reason: ReasonRegionOptional, Subject: rr.ID, Detail: "optional region not in the report"})
		case slices.Contains(rr.Roots, c.Snapshot.Root):
			v.Add(Finding{Check: "region." + rr.ID, Status: Affirming, Reason: ReasonRootAllowed, Subject: rr.ID, Detail: "root " + c.Snapshot.Root.String()})
		default:
			d := fmt.Sprintf("root %s not among %d accepted", c.Snapshot.Root, len(rr.Roots))
			if len(c.Snapshot.Changed) > 0 {
				parts := make([]string, len(c.Snapshot.Changed))
				for i, r := range c.Snapshot.Changed {
					parts[i] = r.String()
				}
				d += "; the measurer reports changed " + strings.Join(parts, ", ")
			}
			v.Add(Finding{Check: "region." + rr.ID, Status: rr.OnMismatch, Reason: ReasonRootNotAllowed, Subject: rr.ID, Detail: d})
		}
	}
	return v
}

// appraiseIdentity checks that the hardware's launch identity (SEV-SNP
// HOST_DATA, TDX MRCONFIGID), which the host sets when it launches the VM,
// is the one attest.VMIdentity derives from the VM's name: evidence that
// a host relabelled for another VM fails it.
func appraiseIdentity(v *Verdict, vm string, hw *attest.HardwareEvidence, f *HardwareFacts, ferr error) {
	const check = "vm.identity"
	switch {
	case hw == nil:
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: "no hardware evidence carries a launch identity (bind_vm_identity)"})
		return
	case f == nil || ferr != nil:
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: "the hardware evidence could not be decoded"})
		return
	}
	var field string
	var got, want []byte
	switch {
	case f.SNP != nil:
		w := attest.VMIdentityHostData(vm)
		field, got, want = "HOST_DATA", f.SNP.HostData, w[:]
	case f.TDX != nil:
		w := attest.VMIdentityMRConfigID(vm)
		field, got, want = "MRCONFIGID", f.TDX.MRConfigID, w[:]
	default:
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: fmt.Sprintf("%s evidence has no launch identity field", f.Type)})
		return
	}
	if bytes.Equal(got, want) {
		v.Add(Finding{Check: check, Status: Affirming, Reason: ReasonIdentityBound, Subject: vm, Detail: fmt.Sprintf("%s is the identity of VM %q", field, vm)})
		return
	}
	v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityMismatch, Subject: vm,
		Detail: fmt.Sprintf("%s %x is not %x, the identity of VM %q: the VM was launched as another VM, or without its identity", field, got, want, vm)})
}

// AppraiseHardware checks hardware facts alone against the hardware rules
// for workload: evidence type, simulation, debug, and the SEV-SNP or TDX
// reference values. Use it for evidence outside an hvmon report (hvmon
// evidence verify); the facts must come from verified evidence.
func (p *Policy) AppraiseHardware(workload string, f *HardwareFacts) Verdict {
	var v Verdict
	if !attest.ValidVMName(workload) {
		v.Add(Finding{Check: "vm.name", Status: Contraindicated, Reason: ReasonInvalidVMName, Subject: strconv.QuoteToASCII(workload),
			Detail: fmt.Sprintf("VM name %+q does not match %s", workload, attest.VMNameRule)})
		return v
	}
	if f == nil {
		v.Add(Finding{Check: "hardware.required", Status: Contraindicated, Reason: ReasonNoHardware, Subject: workload})
		return v
	}
	rules := p.RulesFor(workload)
	p.appraiseHardware(&v, rules, workload, f.Type, f, nil)
	if rules.BindVMIdentity {
		appraiseIdentity(&v, workload, &attest.HardwareEvidence{Type: f.Type}, f, nil)
	}
	return v
}

func (p *Policy) appraiseHardware(v *Verdict, rules Rules, subject string, typ attest.Platform, f *HardwareFacts, ferr error) {
	if len(rules.HardwareTypes) > 0 {
		if slices.Contains(rules.HardwareTypes, typ) {
			v.Add(Finding{Check: "hardware.type", Status: Affirming, Reason: ReasonTypeAllowed, Subject: subject, Detail: string(typ)})
		} else {
			v.Add(Finding{Check: "hardware.type", Status: Contraindicated, Reason: ReasonTypeNotAllowed, Subject: subject, Detail: fmt.Sprintf("%s is not among %q", typ, rules.HardwareTypes)})
		}
	}
	simulated := typ == "simulated-sev-snp" || typ == "simulated-tdx"
	switch {
	case simulated && p.trust.AllowSimulated:
		v.Add(Finding{Check: "hardware.simulated", Status: Affirming, Reason: ReasonSimulatedAllowed, Subject: subject, Detail: string(typ) + " evidence, allowed by allow_simulated"})
	case simulated:
		v.Add(Finding{Check: "hardware.simulated", Status: Contraindicated, Reason: ReasonSimulated, Subject: subject, Detail: string(typ) + " evidence, and the policy does not allow simulated evidence"})
	default:
		v.Add(Finding{Check: "hardware.simulated", Status: Affirming, Reason: ReasonRealHardware, Subject: subject, Detail: string(typ)})
	}
	if f == nil || ferr != nil {
		detail := "no decoded hardware facts"
		if ferr != nil {
			detail = ferr.Error()
		}
		v.Add(Finding{Check: "hardware.facts", Status: Contraindicated, Reason: ReasonHardwareUnreadable, Subject: subject, Detail: detail})
		return
	}
	allowDebug := rules.SNP.AllowDebug
	if f.TDX != nil {
		allowDebug = rules.TDX.AllowDebug
	}
	switch {
	case !f.Debug:
		v.Add(Finding{Check: "hardware.debug", Status: Affirming, Reason: ReasonDebugDisabled, Subject: subject})
	case allowDebug:
		v.Add(Finding{Check: "hardware.debug", Status: Warning, Reason: ReasonDebugAllowed, Subject: subject, Detail: "a debug guest (the host can read and write its memory), allowed by allow_debug"})
	default:
		v.Add(Finding{Check: "hardware.debug", Status: Contraindicated, Reason: ReasonDebugEnabled, Subject: subject, Detail: "a debug guest: the host can read and write its memory"})
	}
	if f.SNP != nil {
		appraiseSNP(v, rules.SNP, subject, f)
	}
	if f.TDX != nil {
		appraiseTDX(v, rules.TDX, subject, f.TDX)
	}
}

// oneOf adds a finding for an allowlist of byte strings; an empty list
// checks nothing.
func oneOf(v *Verdict, check, subject string, allowed [][]byte, got []byte, okReason, badReason string) {
	if allowed == nil {
		return
	}
	if slices.ContainsFunc(allowed, func(a []byte) bool { return bytes.Equal(a, got) }) {
		v.Add(Finding{Check: check, Status: Affirming, Reason: okReason, Subject: subject, Detail: hex.EncodeToString(got)})
		return
	}
	v.Add(Finding{Check: check, Status: Contraindicated, Reason: badReason, Subject: subject, Detail: fmt.Sprintf("%x is not among %d accepted", got, len(allowed))})
}

func appraiseSNP(v *Verdict, r SNPRules, subject string, f *HardwareFacts) {
	s := f.SNP
	oneOf(v, "snp.measurement", subject, r.Measurements, f.Measurement, ReasonMeasurementAllowed, ReasonMeasurementNot)
	if m := r.MinimumTCB; m != nil {
		switch {
		case !s.TCBKnown:
			v.Add(Finding{Check: "snp.tcb", Status: Contraindicated, Reason: ReasonTCBUnknown, Subject: subject, Detail: fmt.Sprintf("REPORTED_TCB %016x of product %q has no known layout", s.ReportedTCBRaw, s.Product)})
		case s.ReportedTCB.atLeast(*m):
			v.Add(Finding{Check: "snp.tcb", Status: Affirming, Reason: ReasonTCBOK, Subject: subject, Detail: tcbText(s.ReportedTCB)})
		default:
			v.Add(Finding{Check: "snp.tcb", Status: Contraindicated, Reason: ReasonTCBTooLow, Subject: subject, Detail: fmt.Sprintf("%s, want at least %s", tcbText(s.ReportedTCB), tcbText(*m))})
		}
	}
	if m := r.MinimumGuestSVN; m != nil {
		if s.GuestSVN >= *m {
			v.Add(Finding{Check: "snp.guest_svn", Status: Affirming, Reason: ReasonSVNOK, Subject: subject, Detail: fmt.Sprint(s.GuestSVN)})
		} else {
			v.Add(Finding{Check: "snp.guest_svn", Status: Contraindicated, Reason: ReasonSVNTooLow, Subject: subject, Detail: fmt.Sprintf("%d, want at least %d", s.GuestSVN, *m)})
		}
	}
	switch {
	case !s.SMT || r.AllowSMT:
		v.Add(Finding{Check: "snp.smt", Status: Affirming, Reason: ReasonSMTAllowed, Subject: subject, Detail: fmt.Sprintf("guest policy SMT=%t", s.SMT)})
	default:
		v.Add(Finding{Check: "snp.smt", Status: Contraindicated, Reason: ReasonSMTNotAllowed, Subject: subject, Detail: "the guest policy allows SMT and the policy does not"})
	}
	switch {
	case !s.MigrateMA || r.AllowMigrationAgent:
		v.Add(Finding{Check: "snp.migration_agent", Status: Affirming, Reason: ReasonMAAllowed, Subject: subject, Detail: fmt.Sprintf("guest policy MIGRATE_MA=%t", s.MigrateMA)})
	default:
		v.Add(Finding{Check: "snp.migration_agent", Status: Contraindicated, Reason: ReasonMANotAllowed, Subject: subject, Detail: "the guest policy allows a migration agent and the policy does not"})
	}
	oneOf(v, "snp.host_data", subject, r.HostData, s.HostData, ReasonValueAllowed, ReasonValueNotAllowed)
	oneOf(v, "snp.id_key_digest", subject, r.IDKeyDigests, s.IDKeyDigest, ReasonValueAllowed, ReasonValueNotAllowed)
	if r.RequireSingleSocket {
		if s.SingleSocket {
			v.Add(Finding{Check: "snp.single_socket", Status: Affirming, Reason: ReasonValueAllowed, Subject: subject, Detail: "guest policy SINGLE_SOCKET=true"})
		} else {
			v.Add(Finding{Check: "snp.single_socket", Status: Contraindicated, Reason: ReasonValueNotAllowed, Subject: subject, Detail: "the guest policy does not restrict the guest to one socket"})
		}
	}
	if r.VMPL != nil {
		if s.VMPL == *r.VMPL {
			v.Add(Finding{Check: "snp.vmpl", Status: Affirming, Reason: ReasonValueAllowed, Subject: subject, Detail: fmt.Sprint(s.VMPL)})
		} else {
			v.Add(Finding{Check: "snp.vmpl", Status: Contraindicated, Reason: ReasonValueNotAllowed, Subject: subject, Detail: fmt.Sprintf("VMPL %d, want %d", s.VMPL, *r.VMPL)})
		}
	}
}

func tcbText(t TCBParts) string {
	return fmt.Sprintf("bootloader %d, tee %d, snp %d, microcode %d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
}

func appraiseTDX(v *Verdict, r TDXRules, subject string, t *TDXFacts) {
	oneOf(v, "tdx.mrtd", subject, r.MRTD, t.MRTD, ReasonMeasurementAllowed, ReasonMeasurementNot)
	for i := range r.RTMR {
		oneOf(v, fmt.Sprintf("tdx.rtmr%d", i), subject, r.RTMR[i], t.RTMRs[i], ReasonMeasurementAllowed, ReasonMeasurementNot)
	}
	oneOf(v, "tdx.mr_config_id", subject, r.MRConfigID, t.MRConfigID, ReasonValueAllowed, ReasonValueNotAllowed)
	oneOf(v, "tdx.mr_owner", subject, r.MROwner, t.MROwner, ReasonValueAllowed, ReasonValueNotAllowed)
	oneOf(v, "tdx.mr_seam", subject, r.MRSeam, t.MRSeam, ReasonMeasurementAllowed, ReasonMeasurementNot)
	if m := r.MinimumTEETCBSVN; m != nil {
		// Component by component, as go-tdx-guest's MinimumTeeTcbSvn.
		ok := len(t.TEETCBSVN) == len(m)
		for i := 0; ok && i < len(m); i++ {
			ok = t.TEETCBSVN[i] >= m[i]
		}
		if ok {
			v.Add(Finding{Check: "tdx.tee_tcb_svn", Status: Affirming, Reason: ReasonSVNOK, Subject: subject, Detail: hex.EncodeToString(t.TEETCBSVN)})
		} else {
			v.Add(Finding{Check: "tdx.tee_tcb_svn", Status: Contraindicated, Reason: ReasonSVNTooLow, Subject: subject, Detail: fmt.Sprintf("%x, want every component at least %x", t.TEETCBSVN, m)})
		}
	}
	for _, e := range []struct {
		check string
		want  *uint64
		got   uint64
	}{{"tdx.td_attributes", r.TDAttributes, t.TDAttributes}, {"tdx.xfam", r.XFAM, t.XFAM}} {
		switch {
		case e.want == nil:
		case e.got == *e.want:
			v.Add(Finding{Check: e.check, Status: Affirming, Reason: ReasonValueAllowed, Subject: subject, Detail: fmt.Sprintf("%016x", e.got)})
		default:
			v.Add(Finding{Check: e.check, Status: Contraindicated, Reason: ReasonValueNotAllowed, Subject: subject, Detail: fmt.Sprintf("%016x, want %016x", e.got, *e.want)})
		}
	}
}

// VerifyOptions returns base with what the policy decides for
// verification: the policy's host keys added to base.TrustedKeys, and the
// policy's offline evidence verifier in place of base.Evidence. That
// verifier accepts debug guests, so that appraisal (which forbids them by
// default) can say so: always appraise what it verifies. Region reference
// values are not turned into base.Expected: they are per VM, and the VM is
// known only once the report verified; AppraiseResult checks them.
func (p *Policy) VerifyOptions(base attest.VerifyOptions) (attest.VerifyOptions, error) {
	if p.verifier == nil {
		return base, errors.New("policy: no evidence verifier: the policy was loaded without hardware support")
	}
	out := base
	out.TrustedKeys = append(slices.Clone(p.keys), base.TrustedKeys...)
	out.Evidence = p.verifier
	return out, nil
}
