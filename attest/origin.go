package attest

// Origin says who vouches for a claim's measurement. A claim's platform
// label is its signer's statement and decides nothing: the origin follows
// from where the claim sits and what backs it (docs/FORMAT.md §9.1).
type Origin string

// Claim origins.
const (
	// OriginHardware: measured by the guest agent, in guest evidence whose
	// hardware evidence (SEV-SNP, TDX, or simulated when the verifier
	// allows it) verified and carries its REPORT_DATA.
	OriginHardware Origin = "guest-hardware"
	// OriginGuestUnbacked: in guest evidence without hardware evidence
	// (platform none). Nobody but the host that signed around it vouches
	// for the guest key: the host's word.
	OriginGuestUnbacked Origin = "guest-no-hardware"
	// OriginHost: a claim of a host report itself (a report with host
	// observations, guest evidence or platform host): the host's word,
	// whatever platform its claims name.
	OriginHost Origin = "host"
	// OriginSigner: a claim of a report with neither host observations nor
	// guest evidence and not of platform host (hvmon attest, the file and
	// memory backends): the signer's own measurement.
	OriginSigner Origin = "signer"
)

// isHostReport reports whether r is a host supervisor's report: it carries
// host observations or guest evidence, or names platform host. Its own
// claims are then the host's word.
func (r *Report) isHostReport() bool {
	return r.Host != nil || len(r.Guest) > 0 || r.Platform == PlatformHost
}

// Origins returns who vouches for the report's own claims (outer) and for
// the claims of its guest evidence g (guest; "" when g is nil). Guest
// claims are OriginHardware whenever g carries hardware evidence: the
// caller must have verified it (attest.Verify has, for a Result).
func Origins(r *Report, g *GuestEvidence) (outer, guest Origin) {
	outer = OriginSigner
	if r.isHostReport() {
		outer = OriginHost
	}
	switch {
	case g == nil:
	case g.Hardware != nil:
		guest = OriginHardware
	default:
		guest = OriginGuestUnbacked
	}
	return outer, guest
}

// counts reports whether claims of origin o may satisfy a reference value
// under o's settings: hardware-backed guest claims always; a signer's own
// claims unless hardware is required; the host's word only when the
// verifier allows unbacked (host-measured) regions and does not require
// hardware.
func (o VerifyOptions) counts(origin Origin) bool {
	switch origin {
	case OriginHardware:
		return true
	case OriginSigner:
		return !o.RequireHardware
	default:
		return o.AllowHostMeasured && !o.RequireHardware
	}
}

// CountedClaims splits the verified claims of r into those that may
// satisfy a reference value under opts (AllowHostMeasured,
// RequireHardware) and those that may not: the rule of docs/FORMAT.md
// §9.1. Verify uses it for Expected, and package policy for its region
// rules and for the regions require_hardware refuses, so that the two can
// never disagree on whose measurements count.
func (r *Result) CountedClaims(opts VerifyOptions) (counted, excluded []Claim) {
	if r.Report == nil {
		return nil, nil
	}
	outer, guest := Origins(r.Report, r.Guest)
	add := func(cs []Claim, o Origin) {
		for _, c := range cs {
			if opts.counts(o) {
				counted = append(counted, c)
			} else {
				excluded = append(excluded, c)
			}
		}
	}
	add(r.Report.Claims, outer)
	if r.Guest != nil {
		add(r.Guest.Claims, guest)
	}
	return counted, excluded
}

// hardwareBacked reports whether the verified report embeds guest evidence
// whose hardware evidence verified.
func (r *Result) hardwareBacked() bool {
	return r.Guest != nil && r.Guest.Hardware != nil
}
