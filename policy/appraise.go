package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
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
	ReasonLaunchMatch        = "host_launch_match"
	ReasonLaunchMismatch     = "host_launch_mismatch"
	ReasonLaunchUnknown      = "host_launch_unknown"
)

// Input is what Appraise looks at: an authenticated report and the facts
// of its verified hardware evidence.
type Input struct {
	// Result is attest.Verify's result for a report that verified.
	Result *attest.Result
	// Hardware are the decoded fields of Result.Guest.Hardware; nil when
	// the report has none. A non-nil HardwareErr says why they could not
	// be decoded.
	Hardware    *tee.Facts
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
	if hw != nil && in.HardwareErr == nil {
		appraiseHostLaunch(&v, rules.SNP, subject, rep.Host, in.Hardware)
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
