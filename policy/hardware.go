package policy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// Hardware is what appraisal needs from the TEE libraries, which package
// policy must not import (they pull in the network through their
// certificate fetchers). It speaks of package tee's types only, so that
// its implementation, evidence.PolicyHardware, need not import policy;
// tests may fake it.
type Hardware interface {
	// Verifier builds the offline evidence verifier for the policy's
	// hardware trust (its hardware_roots block). It must never fetch
	// anything.
	Verifier(t tee.Trust) (attest.EvidenceVerifier, error)
	// Facts decodes hardware evidence into the fields the rules look at.
	// It verifies nothing: AppraiseResult calls it only on evidence that
	// attest.Verify has verified.
	Facts(hw *attest.HardwareEvidence) (*tee.Facts, error)
}

// teeKinds lists the kinds of TEE hardware this package has rules for. A
// kind hvmon does not know yet is one file implementing teeKind, an entry
// here, and its block in rulesBlock and Rules (docs/ARCHITECTURE.md, "A
// new TEE type").
var teeKinds = []teeKind{snpKind{}, tdxKind{}}

// A teeKind is what policy knows of one kind of TEE hardware: its block in
// a rules block, its reference-value rules, its launch identity and its
// part of a generated policy. snp.go and tdx.go implement it.
type teeKind interface {
	// of reports whether f are facts of this kind.
	of(f *tee.Facts) bool
	// parse checks the kind's block of b, if b has one, and returns
	// what it sets in the rules it applies to (nil: nothing).
	parse(b *rulesBlock, bad badFunc) (func(*Rules), error)
	// allowDebug is the kind's allow_debug rule.
	allowDebug(r Rules) bool
	// appraise adds the findings of the kind's reference-value rules.
	appraise(v *Verdict, r Rules, subject string, f *tee.Facts)
	// identity returns the launch identity field f carries, its value,
	// and the value attest.VMIdentity... derives for vm.
	identity(f *tee.Facts, vm string) (field string, got, want []byte)
	// generate writes the kind's block of a policy generated from f.
	generate(w func(format string, args ...any), f *tee.Facts)
}

// badFunc makes the error of a rules block at a line.
type badFunc func(line int, format string, args ...any) error

// kindOf returns the kind of facts, or nil.
func kindOf(f *tee.Facts) teeKind {
	if f == nil {
		return nil
	}
	for _, k := range teeKinds {
		if k.of(f) {
			return k
		}
	}
	return nil
}

// hardwareTypes checks a hardware_types list: each entry must be an
// evidence type of attest.HardwarePlatforms.
func hardwareTypes(list []string) ([]attest.Platform, error) {
	known := attest.HardwarePlatforms()
	var out []attest.Platform
	for _, t := range list {
		if !slices.Contains(known, attest.Platform(t)) {
			names := make([]string, len(known))
			for i, p := range known {
				names[i] = string(p)
			}
			return nil, fmt.Errorf("%q is not %s", t, strings.Join(names[:len(names)-1], ", ")+" or "+names[len(names)-1])
		}
		out = append(out, attest.Platform(t))
	}
	return out, nil
}

// AppraiseHardware checks hardware facts alone against the hardware rules
// for workload: evidence type, simulation, debug, and the SEV-SNP or TDX
// reference values. Use it for evidence outside an hvmon report (hvmon
// evidence verify); the facts must come from verified evidence.
func (p *Policy) AppraiseHardware(workload string, f *tee.Facts) Verdict {
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

// appraiseHardware adds the findings of the rules for every kind of
// hardware evidence (type, simulation, facts, debug), then those of the
// kind's own rules.
func (p *Policy) appraiseHardware(v *Verdict, rules Rules, subject string, typ attest.Platform, f *tee.Facts, ferr error) {
	if len(rules.HardwareTypes) > 0 {
		if slices.Contains(rules.HardwareTypes, typ) {
			v.Add(Finding{Check: "hardware.type", Status: Affirming, Reason: ReasonTypeAllowed, Subject: subject, Detail: string(typ)})
		} else {
			v.Add(Finding{Check: "hardware.type", Status: Contraindicated, Reason: ReasonTypeNotAllowed, Subject: subject, Detail: fmt.Sprintf("%s is not among %q", typ, rules.HardwareTypes)})
		}
	}
	simulated := typ.Simulated()
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
	k := kindOf(f)
	switch {
	case !f.Debug:
		v.Add(Finding{Check: "hardware.debug", Status: Affirming, Reason: ReasonDebugDisabled, Subject: subject})
	case k != nil && k.allowDebug(rules):
		v.Add(Finding{Check: "hardware.debug", Status: Warning, Reason: ReasonDebugAllowed, Subject: subject, Detail: "a debug guest (the host can read and write its memory), allowed by allow_debug"})
	default:
		v.Add(Finding{Check: "hardware.debug", Status: Contraindicated, Reason: ReasonDebugEnabled, Subject: subject, Detail: "a debug guest: the host can read and write its memory"})
	}
	if k != nil {
		k.appraise(v, rules, subject, f)
	}
}

// appraiseIdentity checks that the hardware's launch identity (SEV-SNP
// HOST_DATA, TDX MRCONFIGID), which the host sets when it launches the VM,
// is the one attest.VMIdentity derives from the VM's name: evidence that
// a host relabelled for another VM fails it.
func appraiseIdentity(v *Verdict, vm string, hw *attest.HardwareEvidence, f *tee.Facts, ferr error) {
	const check = "vm.identity"
	switch {
	case hw == nil:
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: "no hardware evidence carries a launch identity (bind_vm_identity)"})
		return
	case f == nil || ferr != nil:
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: "the hardware evidence could not be decoded"})
		return
	}
	k := kindOf(f)
	if k == nil {
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityUnbound, Subject: vm, Detail: fmt.Sprintf("%s evidence has no launch identity field", f.Type)})
		return
	}
	field, got, want := k.identity(f, vm)
	if bytes.Equal(got, want) {
		v.Add(Finding{Check: check, Status: Affirming, Reason: ReasonIdentityBound, Subject: vm, Detail: fmt.Sprintf("%s is the identity of VM %q", field, vm)})
		return
	}
	v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonIdentityMismatch, Subject: vm,
		Detail: fmt.Sprintf("%s %x is not %x, the identity of VM %q: the VM was launched as another VM, or without its identity", field, got, want, vm)})
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
