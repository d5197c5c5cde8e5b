package policy

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// SNPRules apply to SEV-SNP evidence (real or simulated). Nil or empty
// fields check nothing.
type SNPRules struct {
	Measurements        [][]byte
	MinimumTCB          *tee.TCBParts
	MinimumGuestSVN     *uint32
	AllowDebug          bool
	AllowSMT            bool // default true
	AllowMigrationAgent bool
	HostData            [][]byte
	IDKeyDigests        [][]byte
	RequireSingleSocket bool
	VMPL                *uint32
	// MatchHostLaunch requires the host's observation of the launch
	// measurement its launch inputs give to equal the hardware's.
	MatchHostLaunch bool
}

// snpBlock is the snp block of a rules block (docs/POLICY.md).
type snpBlock struct {
	Measurements        *[]string `hcl:"measurements,optional"`
	MinimumTCB          *tcbBlock `hcl:"minimum_tcb,block"`
	MinimumGuestSVN     *uint32   `hcl:"minimum_guest_svn,optional"`
	AllowDebug          *bool     `hcl:"allow_debug,optional"`
	AllowSMT            *bool     `hcl:"allow_smt,optional"`
	AllowMigrationAgent *bool     `hcl:"allow_migration_agent,optional"`
	HostData            *[]string `hcl:"host_data,optional"`
	IDKeyDigests        *[]string `hcl:"id_key_digests,optional"`
	RequireSingleSocket *bool     `hcl:"require_single_socket,optional"`
	VMPL                *uint32   `hcl:"vmpl,optional"`
	MatchHostLaunch     *bool     `hcl:"match_host_launch,optional"`
	Range               hcl.Range `hcl:",def_range"`
}

// tcbBlock is an SEV-SNP TCB version's security patch levels.
type tcbBlock struct {
	Bootloader uint8 `hcl:"bootloader,optional"`
	TEE        uint8 `hcl:"tee,optional"`
	SNP        uint8 `hcl:"snp,optional"`
	Microcode  uint8 `hcl:"microcode,optional"`
}

// snpKind is SEV-SNP.
type snpKind struct{}

func (snpKind) of(f *tee.Facts) bool { return f.SNP != nil }

func (snpKind) allowDebug(r Rules) bool { return r.SNP.AllowDebug }

// parse implements teeKind: every setting of the snp block, checked.
func (snpKind) parse(b *rulesBlock, bad badFunc) (func(*Rules), error) {
	s := b.SNP
	if s == nil {
		return nil, nil
	}
	l := s.Range.Start.Line
	var (
		measurements, hostData, idKeys          [][]byte
		setMeasurements, setHostData, setIDKeys bool
		err                                     error
	)
	if s.Measurements != nil {
		setMeasurements = true
		if measurements, err = hexList(*s.Measurements, 48); err != nil {
			return nil, bad(l, "snp: measurements: %v", err)
		}
	}
	if s.HostData != nil {
		setHostData = true
		if hostData, err = hexList(*s.HostData, 32); err != nil {
			return nil, bad(l, "snp: host_data: %v", err)
		}
	}
	if s.IDKeyDigests != nil {
		setIDKeys = true
		if idKeys, err = hexList(*s.IDKeyDigests, 48); err != nil {
			return nil, bad(l, "snp: id_key_digests: %v", err)
		}
	}
	if s.VMPL != nil && *s.VMPL > 3 {
		return nil, bad(l, "snp: vmpl: %d is not 0 to 3", *s.VMPL)
	}
	var minimumTCB *tee.TCBParts
	if m := s.MinimumTCB; m != nil {
		minimumTCB = &tee.TCBParts{Bootloader: m.Bootloader, TEE: m.TEE, SNP: m.SNP, Microcode: m.Microcode}
	}
	return func(r *Rules) {
		if setMeasurements {
			r.SNP.Measurements = measurements
		}
		if minimumTCB != nil {
			r.SNP.MinimumTCB = minimumTCB
		}
		if s.MinimumGuestSVN != nil {
			r.SNP.MinimumGuestSVN = s.MinimumGuestSVN
		}
		if s.AllowDebug != nil {
			r.SNP.AllowDebug = *s.AllowDebug
		}
		if s.AllowSMT != nil {
			r.SNP.AllowSMT = *s.AllowSMT
		}
		if s.AllowMigrationAgent != nil {
			r.SNP.AllowMigrationAgent = *s.AllowMigrationAgent
		}
		if setHostData {
			r.SNP.HostData = hostData
		}
		if setIDKeys {
			r.SNP.IDKeyDigests = idKeys
		}
		if s.RequireSingleSocket != nil {
			r.SNP.RequireSingleSocket = *s.RequireSingleSocket
		}
		if s.VMPL != nil {
			r.SNP.VMPL = s.VMPL
		}
		if s.MatchHostLaunch != nil {
			r.SNP.MatchHostLaunch = *s.MatchHostLaunch
		}
	}, nil
}

// appraise implements teeKind: the snp.* findings.
func (snpKind) appraise(v *Verdict, rules Rules, subject string, f *tee.Facts) {
	r, s := rules.SNP, f.SNP
	oneOf(v, "snp.measurement", subject, r.Measurements, f.Measurement, ReasonMeasurementAllowed, ReasonMeasurementNot)
	if m := r.MinimumTCB; m != nil {
		switch {
		case !s.TCBKnown:
			v.Add(Finding{Check: "snp.tcb", Status: Contraindicated, Reason: ReasonTCBUnknown, Subject: subject, Detail: fmt.Sprintf("REPORTED_TCB %016x of product %q has no known layout", s.ReportedTCBRaw, s.Product)})
		case tcbAtLeast(s.ReportedTCB, *m):
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

// identity implements teeKind: HOST_DATA, set by the host at launch.
func (snpKind) identity(f *tee.Facts, vm string) (string, []byte, []byte) {
	want := attest.VMIdentityHostData(vm)
	return "HOST_DATA", f.SNP.HostData, want[:]
}

// generate implements teeKind: the snp block, with this report's
// measurement, TCB, guest SVN, VMPL, HOST_DATA and guest policy bits.
func (snpKind) generate(w func(format string, args ...any), f *tee.Facts) {
	s := f.SNP
	w("  snp {\n")
	w("    # Launch measurements accepted.\n")
	w("    measurements = [%s]\n", hclString(hexs(f.Measurement)))
	if s.TCBKnown {
		w("    # The lowest TCB accepted (this report's REPORTED_TCB).\n")
		w("    minimum_tcb {\n      bootloader = %d\n      tee        = %d\n      snp        = %d\n      microcode  = %d\n    }\n",
			s.ReportedTCB.Bootloader, s.ReportedTCB.TEE, s.ReportedTCB.SNP, s.ReportedTCB.Microcode)
	}
	w("    minimum_guest_svn = %d\n", s.GuestSVN)
	w("    vmpl              = %d\n", s.VMPL)
	w("    host_data         = [%s]\n", hclString(hexs(s.HostData)))
	if f.Debug {
		w("    # The golden report is from a DEBUG guest (the host can read its memory):\n")
		w("    # such reports stay contraindicated until this says true.\n")
	}
	w("    allow_debug           = false\n")
	w("    allow_smt             = %t\n", s.SMT)
	w("    allow_migration_agent = %t\n", s.MigrateMA)
	w("  }\n")
}

// tcbAtLeast reports whether every component of t is at least min's.
func tcbAtLeast(t, min tee.TCBParts) bool {
	return t.Bootloader >= min.Bootloader && t.TEE >= min.TEE && t.SNP >= min.SNP && t.Microcode >= min.Microcode
}

func tcbText(t tee.TCBParts) string {
	return fmt.Sprintf("bootloader %d, tee %d, snp %d, microcode %d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
}

// The host observations snp.host_launch reads (docs/FORMAT.md §7.5): the
// SEV-SNP measurement the host computed from the launch inputs it saw,
// or why it could not.
const (
	factLaunchMeasurement = "launch_expected_measurement"
	factLaunchError       = "launch_inputs_error"
)

// appraiseHostLaunch compares the measurement the host's launch inputs
// give with the hardware's. A disagreement is always reported: a warning,
// contraindicated under match_host_launch, which also requires the host to
// have computed one.
func appraiseHostLaunch(v *Verdict, r SNPRules, subject string, obs *attest.Observations, f *tee.Facts) {
	const check = "snp.host_launch"
	if f == nil || f.SNP == nil {
		return
	}
	var (
		want, why string
		ok        bool
	)
	if obs != nil {
		want, ok = obs.Facts[factLaunchMeasurement]
		why = obs.Facts[factLaunchError]
	}
	got := hexs(f.Measurement)
	switch {
	case ok && want == got:
		if r.MatchHostLaunch {
			v.Add(Finding{Check: check, Status: Affirming, Reason: ReasonLaunchMatch, Subject: subject, Detail: "the host's launch inputs give the hardware's measurement"})
		}
	case ok:
		status := Warning
		if r.MatchHostLaunch {
			status = Contraindicated
		}
		v.Add(Finding{Check: check, Status: status, Reason: ReasonLaunchMismatch, Subject: subject,
			Detail: fmt.Sprintf("the host's launch inputs give measurement %s, the hardware reports %s: the VM was not launched from the inputs the host names", want, got)})
	case r.MatchHostLaunch:
		d := "the host recorded no launch measurement computed from its launch inputs"
		if why != "" {
			d += ": " + why
		}
		v.Add(Finding{Check: check, Status: Contraindicated, Reason: ReasonLaunchUnknown, Subject: subject, Detail: d})
	}
}
