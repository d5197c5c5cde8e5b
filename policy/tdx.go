package policy

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/hashicorp/hcl/v2"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// TDXRules apply to TDX evidence (real or simulated). Nil or empty fields
// check nothing.
type TDXRules struct {
	MRTD             [][]byte
	RTMR             [4][][]byte
	MRConfigID       [][]byte
	MROwner          [][]byte
	MRSeam           [][]byte
	MinimumTEETCBSVN []byte
	TDAttributes     *uint64
	XFAM             *uint64
	AllowDebug       bool
}

// tdxBlock is the tdx block of a rules block (docs/POLICY.md).
type tdxBlock struct {
	MRTD             *[]string `hcl:"mrtd,optional"`
	RTMR0            *[]string `hcl:"rtmr0,optional"`
	RTMR1            *[]string `hcl:"rtmr1,optional"`
	RTMR2            *[]string `hcl:"rtmr2,optional"`
	RTMR3            *[]string `hcl:"rtmr3,optional"`
	MRConfigID       *[]string `hcl:"mr_config_id,optional"`
	MROwner          *[]string `hcl:"mr_owner,optional"`
	MRSeam           *[]string `hcl:"mr_seam,optional"`
	XFAM             *string   `hcl:"xfam,optional"`
	MinimumTEETCBSVN *string   `hcl:"minimum_tee_tcb_svn,optional"`
	TDAttributes     *string   `hcl:"td_attributes,optional"`
	AllowDebug       *bool     `hcl:"allow_debug,optional"`
	Range            hcl.Range `hcl:",def_range"`
}

// tdxKind is TDX.
type tdxKind struct{}

func (tdxKind) of(f *tee.Facts) bool { return f.TDX != nil }

func (tdxKind) allowDebug(r Rules) bool { return r.TDX.AllowDebug }

// parse implements teeKind: every setting of the tdx block, checked.
func (tdxKind) parse(b *rulesBlock, bad badFunc) (func(*Rules), error) {
	t := b.TDX
	if t == nil {
		return nil, nil
	}
	l := t.Range.Start.Line
	var p TDXRules
	var setMRTD, setMRConfigID, setMROwner, setMRSeam bool
	var setRTMR [4]bool
	lists := []struct {
		name string
		in   *[]string
		out  *[][]byte
		set  *bool
	}{
		{"mrtd", t.MRTD, &p.MRTD, &setMRTD},
		{"rtmr0", t.RTMR0, &p.RTMR[0], &setRTMR[0]},
		{"rtmr1", t.RTMR1, &p.RTMR[1], &setRTMR[1]},
		{"rtmr2", t.RTMR2, &p.RTMR[2], &setRTMR[2]},
		{"rtmr3", t.RTMR3, &p.RTMR[3], &setRTMR[3]},
		{"mr_config_id", t.MRConfigID, &p.MRConfigID, &setMRConfigID},
		{"mr_owner", t.MROwner, &p.MROwner, &setMROwner},
		{"mr_seam", t.MRSeam, &p.MRSeam, &setMRSeam},
	}
	for _, li := range lists {
		if li.in == nil {
			continue
		}
		*li.set = true
		v, err := hexList(*li.in, 48)
		if err != nil {
			return nil, bad(l, "tdx: %s: %v", li.name, err)
		}
		*li.out = v
	}
	if t.MinimumTEETCBSVN != nil {
		v, err := hexExact(*t.MinimumTEETCBSVN, 16)
		if err != nil {
			return nil, bad(l, "tdx: minimum_tee_tcb_svn: %v", err)
		}
		p.MinimumTEETCBSVN = v
	}
	// TD_ATTRIBUTES and XFAM are written as the field's value in 16 hex
	// digits, as hvmon evidence verify prints TD_ATTRIBUTES.
	for _, f := range []struct {
		name string
		in   *string
		out  **uint64
	}{{"td_attributes", t.TDAttributes, &p.TDAttributes}, {"xfam", t.XFAM, &p.XFAM}} {
		if f.in == nil {
			continue
		}
		a, err := strconv.ParseUint(*f.in, 16, 64)
		if err != nil || len(*f.in) != 16 {
			return nil, bad(l, "tdx: %s: %q is not 16 hex digits", f.name, *f.in)
		}
		*f.out = &a
	}
	return func(r *Rules) {
		if setMRTD {
			r.TDX.MRTD = p.MRTD
		}
		for i := range setRTMR {
			if setRTMR[i] {
				r.TDX.RTMR[i] = p.RTMR[i]
			}
		}
		if setMRConfigID {
			r.TDX.MRConfigID = p.MRConfigID
		}
		if setMROwner {
			r.TDX.MROwner = p.MROwner
		}
		if setMRSeam {
			r.TDX.MRSeam = p.MRSeam
		}
		if p.XFAM != nil {
			r.TDX.XFAM = p.XFAM
		}
		if p.MinimumTEETCBSVN != nil {
			r.TDX.MinimumTEETCBSVN = p.MinimumTEETCBSVN
		}
		if p.TDAttributes != nil {
			r.TDX.TDAttributes = p.TDAttributes
		}
		if t.AllowDebug != nil {
			r.TDX.AllowDebug = *t.AllowDebug
		}
	}, nil
}

// appraise implements teeKind: the tdx.* findings.
func (tdxKind) appraise(v *Verdict, rules Rules, subject string, f *tee.Facts) {
	r, t := rules.TDX, f.TDX
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

// identity implements teeKind: MRCONFIGID, set by the host at launch.
func (tdxKind) identity(f *tee.Facts, vm string) (string, []byte, []byte) {
	want := attest.VMIdentityMRConfigID(vm)
	return "MRCONFIGID", f.TDX.MRConfigID, want[:]
}

// generate implements teeKind: the tdx block, with this quote's MR_TD,
// RTMRs, MRCONFIGID and TEE TCB SVN.
func (tdxKind) generate(w func(format string, args ...any), f *tee.Facts) {
	t := f.TDX
	w("  tdx {\n")
	w("    mrtd  = [%s]\n", hclString(hexs(t.MRTD)))
	for i, r := range t.RTMRs {
		w("    rtmr%d = [%s]\n", i, hclString(hexs(r)))
	}
	w("    mr_config_id        = [%s]\n", hclString(hexs(t.MRConfigID)))
	w("    minimum_tee_tcb_svn = %s\n", hclString(hexs(t.TEETCBSVN)))
	if f.Debug {
		w("    # The golden report is from a DEBUG TD (the host can read its memory):\n")
		w("    # such reports stay contraindicated until this says true.\n")
	}
	w("    allow_debug = false\n")
	w("  }\n")
}
