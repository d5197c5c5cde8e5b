package attest

import (
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of VerifyOptions.
const (
	DefaultClockSkew   = 60 * time.Second
	DefaultMaxLifetime = 24 * time.Hour
	// DefaultMaxEvidenceAge bounds how long before its report the guest
	// evidence inside it may have been issued. A host waits at most its
	// agent timeout (60 s by default) for the evidence, even under TCG on
	// a loaded machine, then signs at once; ten minutes leaves room for
	// that, for a raised agent timeout and for a guest clock some minutes
	// behind the host's, and still refuses evidence a host kept and
	// wrapped again later.
	DefaultMaxEvidenceAge = 10 * time.Minute
)

// Expectation is a verifier's reference value for one region: the roots it
// accepts.
type Expectation struct {
	RegionID string
	Roots    []Digest
}

// EvidenceVerifier checks hardware evidence offline: its signature chain to
// a pinned root and that it carries reportData. Package evidence implements
// it for SEV-SNP and TDX; without one, reports with hardware evidence fail.
type EvidenceVerifier interface {
	VerifyEvidence(hw *HardwareEvidence, reportData [64]byte, now time.Time) error
}

// VerifyOptions configure Verify. The zero value verifies nothing: at least
// one trusted key is required.
type VerifyOptions struct {
	// TrustedKeys are the pinned signer keys. A key that arrives inside a
	// report is never trusted by itself.
	TrustedKeys []*PublicKey
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// ClockSkew is the tolerance on issued-at and expires-at; zero means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// NoClockSkew tolerates no clock skew at all: every freshness
	// comparison is exact and ClockSkew is ignored. (ClockSkew's zero
	// value means the default, so it cannot say "none" itself.)
	NoClockSkew bool
	// MaxLifetime caps expires-at minus issued-at, whatever the signer
	// chose; zero means DefaultMaxLifetime.
	MaxLifetime time.Duration
	// Nonce, when set, must equal the report's nonce.
	Nonce []byte
	// Expected are the verifier's reference values. Every expected region
	// must be present; a root outside the accepted set is drift.
	Expected []Expectation
	// Strict makes drift fatal. Without it, drift is reported in the
	// result and the report still verifies.
	Strict bool
	// AllowHostMeasured lets regions no hardware evidence backs count for
	// Expected: the claims of a host report itself (regions the host
	// supervisor measured, whatever platform they name) and the claims of
	// guest evidence without hardware evidence (platform none). Without
	// it only hardware-backed guest claims count, and, in a report that is
	// not a host report (hvmon attest), the signer's own claims (see
	// Origins and Result.CountedClaims).
	AllowHostMeasured bool
	// RequireHardware makes a report without verified hardware evidence
	// fail (ErrNoHardware), and lets only hardware-backed guest claims
	// count, for Expected and for the rule that a report covers at least
	// one region. It overrides AllowHostMeasured.
	RequireHardware bool
	// VM, when set, is the VM the verifier asks about: a VM name the
	// report's workload must equal byte for byte, or a UUID its vm_uuid
	// fact must equal (Report.IsAbout). Another VM fails with ErrWrongVM.
	VM string
	// MaxEvidenceAge bounds the report's issued-at minus its guest
	// evidence's issued-at; zero means DefaultMaxEvidenceAge. It is never
	// more than MaxLifetime.
	MaxEvidenceAge time.Duration
	// Evidence verifies hardware evidence in guest evidence. Nil fails
	// every report whose guest evidence carries hardware evidence.
	Evidence EvidenceVerifier
}

// CheckStatus is the outcome of one check.
type CheckStatus string

// Check outcomes.
const (
	StatusPass CheckStatus = "pass"
	StatusFail CheckStatus = "fail"
	StatusWarn CheckStatus = "warn" // drift outside strict mode
	StatusSkip CheckStatus = "skip" // not applicable or not requested
)

// The names of Verify's checks (Check.Name), in the order it runs them.
// stepFormat names both the envelope check, which fails before trust, and
// the payload check, which passes after the signature.
const (
	stepTrust        = "trust"
	stepSignature    = "signature"
	stepFormat       = "format"
	stepGuest        = "guest"
	stepFreshness    = "freshness"
	stepNonce        = "nonce"
	stepVM           = "vm"
	stepHardware     = "hardware"
	stepCompleteness = "completeness"
	stepDrift        = "drift"
)

// Check is one line of a verification breakdown.
type Check struct {
	// Name is the check: "trust", "signature", "format", "guest",
	// "freshness", "nonce", "vm", "hardware", "completeness" or "drift",
	// in the order Verify runs them. A malformed envelope fails "format"
	// before anything else.
	Name   string      `json:"name"`
	Region string      `json:"region,omitempty"` // for per-region drift checks
	Status CheckStatus `json:"status"`
	Detail string      `json:"detail,omitempty"`
}

// Result is the outcome of Verify. Report, Guest and the claims are set only
// once the signature has verified against a pinned key; nothing unverified
// is ever returned as data.
type Result struct {
	Valid      bool           `json:"valid"`
	ReportHash Digest         `json:"report_hash"`
	KeyID      Digest         `json:"key_id"`
	Report     *Report        `json:"report,omitempty"`
	Guest      *GuestEvidence `json:"guest,omitempty"`
	GuestHash  *Digest        `json:"guest_hash,omitempty"`
	Checks     []Check        `json:"checks"`
	Drift      []RegionDrift  `json:"drift,omitempty"`
	// VM names the VM the report is about, set with Report.
	VM *VMRef `json:"vm,omitempty"`
	// EvidenceAgeSeconds is the report's issued-at minus its guest
	// evidence's issued-at, in seconds, when it embeds guest evidence.
	EvidenceAgeSeconds *int64 `json:"evidence_age_seconds,omitempty"`
}

// VMRef names the VM of a verified report: its workload, and the host's
// vm_uuid fact when the report has one.
type VMRef struct {
	Workload string `json:"workload"`
	UUID     string `json:"vm_uuid,omitempty"`
}

// AllClaims returns the verified claims of the report and of its guest
// evidence.
func (r *Result) AllClaims() []Claim {
	var out []Claim
	if r.Report != nil {
		out = append(out, r.Report.Claims...)
	}
	if r.Guest != nil {
		out = append(out, r.Guest.Claims...)
	}
	return out
}

func (r *Result) add(name string, st CheckStatus, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

// fail records a failed check and returns err, the error Verify returns.
func (r *Result) fail(name string, err error) (*Result, error) {
	r.Checks = append(r.Checks, Check{Name: name, Status: StatusFail, Detail: err.Error()})
	r.Valid = false
	return r, err
}

// Verify checks a signed report offline, in this order: format (strict
// decoding of the COSE_Sign1), trust (the key id is pinned), signature
// (algorithm, type, ML-DSA-65), format of the payload, guest evidence (its
// own signature, binding and hardware evidence), freshness, nonce, VM,
// hardware, completeness and drift (see the package documentation for the
// error class of each). It stops at the first failure and returns the
// breakdown so far with an error matching ErrMalformed, ErrTrust,
// ErrFreshness or ErrAppraisal. Drift outside strict mode is a warning, not
// an error.
func Verify(signed []byte, opts VerifyOptions) (*Result, error) {
	res := &Result{ReportHash: ReportHash(signed)}
	env, err := openEnvelope("report", signed)
	if err != nil {
		return res.fail(stepFormat, err)
	}
	res.KeyID = env.kid
	i := slices.IndexFunc(opts.TrustedKeys, func(k *PublicKey) bool { return k != nil && k.KeyID() == env.kid })
	if i < 0 {
		return res.fail(stepTrust, fmt.Errorf("%w: key id %s is not among the %d pinned key(s)", ErrUntrustedKey, env.kid, len(opts.TrustedKeys)))
	}
	res.add(stepTrust, StatusPass, "key %s is pinned", env.kid)
	if err := env.verify(typeReport, opts.TrustedKeys[i]); err != nil {
		return res.fail(stepSignature, err)
	}
	res.add(stepSignature, StatusPass, "ML-DSA-65 (COSE alg -49) over the protected header and payload")

	rep, err := decodeReport(env.payload())
	if err != nil {
		return res.fail(stepFormat, err)
	}
	if rep.Attester.KeyID != env.kid {
		return res.fail(stepFormat, malformed("report payload", "attester kid differs from the protected header kid", nil))
	}
	res.add(stepFormat, StatusPass, "%s, %d claim(s)", profileReport, len(rep.Claims))

	if len(rep.Guest) > 0 {
		g, gh, err := verifyGuest(rep, opts)
		if err != nil {
			return res.fail(stepGuest, err)
		}
		res.Guest, res.GuestHash = g, &gh
		if err := uniqueRegions("report", append(slices.Clone(rep.Claims), g.Claims...)); err != nil {
			return res.fail(stepFormat, err)
		}
		age := int64(rep.IssuedAt.Sub(g.IssuedAt) / time.Second)
		res.EvidenceAgeSeconds = &age
		res.add(stepGuest, StatusPass, "guest key %s, seq %d, %s evidence bound", KeyIDOf(g.GuestKey), g.Seq, hardwareName(g))
	} else {
		res.add(stepGuest, StatusSkip, "no guest evidence")
	}
	res.Report = rep
	res.VM = &VMRef{Workload: rep.Workload, UUID: rep.vmUUID()}

	if err := checkFreshness(rep, res.Guest, opts); err != nil {
		return res.fail(stepFreshness, err)
	}
	if res.EvidenceAgeSeconds != nil {
		res.add(stepFreshness, StatusPass, "issued %s, expires %s; guest evidence issued %s before the report (at most %s)",
			rep.IssuedAt.Format(time.RFC3339), rep.ExpiresAt.Format(time.RFC3339),
			time.Duration(*res.EvidenceAgeSeconds)*time.Second, opts.maxEvidenceAge())
	} else {
		res.add(stepFreshness, StatusPass, "issued %s, expires %s", rep.IssuedAt.Format(time.RFC3339), rep.ExpiresAt.Format(time.RFC3339))
	}

	if opts.Nonce != nil {
		if subtle.ConstantTimeCompare(opts.Nonce, rep.Nonce) != 1 {
			return res.fail(stepNonce, fmt.Errorf("%w: report answers nonce %x", ErrNonce, []byte(rep.Nonce)))
		}
		res.add(stepNonce, StatusPass, "matches the verifier's nonce")
	} else {
		res.add(stepNonce, StatusSkip, "no nonce supplied by the verifier")
	}

	if opts.VM != "" {
		if !rep.IsAbout(opts.VM) {
			return res.fail(stepVM, fmt.Errorf("%w: the report is about VM %s, not %+q", ErrWrongVM, vmText(rep), opts.VM))
		}
		res.add(stepVM, StatusPass, "the report is about VM %s", vmText(rep))
	} else {
		res.add(stepVM, StatusSkip, "no VM supplied by the verifier; the report is about VM %s", vmText(rep))
	}

	switch {
	case res.hardwareBacked():
		res.add(stepHardware, StatusPass, "%s evidence verified", res.Guest.Hardware.Type)
	case opts.RequireHardware:
		return res.fail(stepHardware, fmt.Errorf("%w: %s, and the verifier requires it", ErrNoHardware, noHardwareText(res)))
	default:
		res.add(stepHardware, StatusSkip, "%s; not required by the verifier", noHardwareText(res))
	}

	claims, excluded := res.CountedClaims(opts)
	all := append(slices.Clone(claims), excluded...)
	if opts.RequireHardware {
		all = claims
	}
	if err := checkCompleteness(all, claims, excluded, opts.Expected); err != nil {
		return res.fail(stepCompleteness, err)
	}
	detail := fmt.Sprintf("%d region(s), %d expected", len(all), len(opts.Expected))
	if len(excluded) > 0 && len(opts.Expected) > 0 {
		detail += fmt.Sprintf("; %d region(s) no hardware backs do not count for expected roots", len(excluded))
	}
	res.add(stepCompleteness, StatusPass, "%s", detail)

	res.Drift = drift(claims, opts.Expected, opts.Strict, res)
	if len(res.Drift) > 0 && opts.Strict {
		res.Valid = false
		return res, &RegionDriftError{Regions: res.Drift}
	}
	res.Valid = true
	return res, nil
}

// vmText names a report's VM for messages: its workload, quoted in ASCII
// (a look-alike letter shows as its escape), and its vm_uuid fact when it
// has one.
func vmText(r *Report) string {
	if u := r.vmUUID(); u != "" {
		return fmt.Sprintf("%+q (vm_uuid %+q)", r.Workload, u)
	}
	return fmt.Sprintf("%+q", r.Workload)
}

// noHardwareText says why a verified report is not hardware-backed.
func noHardwareText(r *Result) string {
	if r.Guest == nil {
		return "the report embeds no guest evidence"
	}
	return fmt.Sprintf("its guest evidence (platform %s) carries no hardware evidence", r.Guest.Platform)
}

func hardwareName(g *GuestEvidence) string {
	if g.Hardware == nil {
		return "no hardware"
	}
	return string(g.Hardware.Type)
}

// verifyGuest checks the guest evidence embedded in rep (see
// CheckGuestEvidence) against the report's nonce, event and workload.
func verifyGuest(rep *Report, opts VerifyOptions) (*GuestEvidence, Digest, error) {
	g, err := CheckGuestEvidence(rep.Guest, rep.Nonce, rep.Event, rep.Workload, opts)
	return g, ReportHash(rep.Guest), err
}

// CheckGuestEvidence verifies a guest evidence object on its own, as a host
// does before it signs a report around it: the strict envelope and
// payload, the signature under the guest key it carries (trusted only
// through the hardware binding), agreement with the nonce, event and VM the
// host asked for, and the hardware evidence over GuestReportData through
// opts.Evidence. It uses opts.Evidence and opts.Now only.
func CheckGuestEvidence(guest, nonce []byte, event Event, vm string, opts VerifyOptions) (*GuestEvidence, error) {
	env, g, err := openGuest(guest)
	if err != nil {
		return nil, err
	}
	gk, err := newPublicKey(g.GuestKey)
	if err != nil {
		return nil, err
	}
	if env.kid != gk.KeyID() {
		return nil, malformed("guest evidence", "kid differs from the guest key it carries", nil)
	}
	if err := env.verify(typeGuestEvidence, gk); err != nil {
		return nil, fmt.Errorf("guest evidence: %w", err)
	}
	switch {
	case subtle.ConstantTimeCompare(g.Nonce, nonce) != 1:
		return nil, fmt.Errorf("%w: guest evidence answers another nonce", ErrBinding)
	case g.Event != event:
		return nil, fmt.Errorf("%w: guest evidence is for event %q, not %q", ErrBinding, g.Event, event)
	case g.VM != vm:
		return nil, fmt.Errorf("%w: guest evidence is for VM %q, not %q", ErrBinding, g.VM, vm)
	}
	if g.Hardware == nil {
		return g, nil
	}
	if opts.Evidence == nil {
		return nil, fmt.Errorf("%w: %s hardware evidence present and no evidence verifier configured", ErrBinding, g.Hardware.Type)
	}
	rd, err := GuestReportData(g)
	if err != nil {
		return nil, err
	}
	if err := opts.Evidence.VerifyEvidence(g.Hardware, rd, opts.now()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBinding, err)
	}
	return g, nil
}

// openGuest parses embedded guest evidence and its payload, verifying nothing.
func openGuest(b []byte) (*envelope, *GuestEvidence, error) {
	env, err := openEnvelope("guest evidence", b)
	if err != nil {
		return nil, nil, err
	}
	g, err := decodeGuestEvidence(env.payload())
	return env, g, err
}

func (o VerifyOptions) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

func checkFreshness(r *Report, g *GuestEvidence, opts VerifyOptions) error {
	skew := opts.clockSkew()
	maxLife := cmpOr(opts.MaxLifetime, DefaultMaxLifetime)
	now := opts.now()
	switch {
	case r.ExpiresAt.Sub(r.IssuedAt) > maxLife:
		return fmt.Errorf("%w: %s > %s", ErrLifetime, r.ExpiresAt.Sub(r.IssuedAt), maxLife)
	case now.Add(skew).Before(r.IssuedAt):
		return fmt.Errorf("%w: issued at %s, now %s (skew %s)", ErrNotYetValid, r.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	case now.Add(-skew).After(r.ExpiresAt):
		return fmt.Errorf("%w: expired at %s, now %s (skew %s)", ErrExpired, r.ExpiresAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	if g != nil {
		maxAge := min(opts.maxEvidenceAge(), maxLife)
		switch age := r.IssuedAt.Sub(g.IssuedAt); {
		case age < -skew:
			return fmt.Errorf("%w: guest evidence issued at %s, after the report (issued %s, skew %s)", ErrNotYetValid,
				g.IssuedAt.Format(time.RFC3339), r.IssuedAt.Format(time.RFC3339), skew)
		case age > maxAge:
			return fmt.Errorf("%w: guest evidence issued at %s, %s before the report, more than %s", ErrStaleEvidence,
				g.IssuedAt.Format(time.RFC3339), age, maxAge)
		}
	}
	claims := r.Claims
	if g != nil {
		claims = append(slices.Clone(claims), g.Claims...)
	}
	for _, c := range claims {
		if c.Snapshot.TakenAt.After(r.IssuedAt.Add(skew)) {
			return fmt.Errorf("%w: region %q snapshot taken at %s, after the report was issued", ErrNotYetValid, c.Region.ID, c.Snapshot.TakenAt.Format(time.RFC3339))
		}
	}
	return nil
}

func (o VerifyOptions) clockSkew() time.Duration {
	if o.NoClockSkew {
		return 0
	}
	return cmpOr(o.ClockSkew, DefaultClockSkew)
}

func (o VerifyOptions) maxEvidenceAge() time.Duration {
	return cmpOr(o.MaxEvidenceAge, DefaultMaxEvidenceAge)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// checkCompleteness checks that the report covers a region (all) and that
// every expected region is among the counted claims; an expected region
// present only among the excluded ones (no hardware backs it) is named as
// such.
func checkCompleteness(all, counted, excluded []Claim, exp []Expectation) error {
	if len(all) == 0 {
		if len(excluded) > 0 {
			return fmt.Errorf("%w: the report covers no region backed by hardware evidence", ErrIncomplete)
		}
		return fmt.Errorf("%w: the report covers no region", ErrIncomplete)
	}
	var missing, unbacked []string
	has := func(cs []Claim, id string) bool {
		return slices.ContainsFunc(cs, func(c Claim) bool { return c.Region.ID == id })
	}
	for _, e := range exp {
		switch {
		case has(counted, e.RegionID):
		case has(excluded, e.RegionID):
			unbacked = append(unbacked, e.RegionID)
		default:
			missing = append(missing, e.RegionID)
		}
	}
	switch {
	case len(unbacked) > 0:
		return fmt.Errorf("%w: expected region(s) %q present but not measured by the guest under verified hardware evidence, so they do not count", ErrIncomplete, unbacked)
	case len(missing) > 0:
		return fmt.Errorf("%w: expected region(s) %q missing", ErrIncomplete, missing)
	}
	return nil
}

// drift compares every expected region and records one check per region.
func drift(claims []Claim, exp []Expectation, strict bool, res *Result) []RegionDrift {
	var out []RegionDrift
	bad := StatusWarn
	if strict {
		bad = StatusFail
	}
	for _, e := range exp {
		i := slices.IndexFunc(claims, func(c Claim) bool { return c.Region.ID == e.RegionID })
		got := claims[i].Snapshot.Root
		if slices.Contains(e.Roots, got) {
			res.Checks = append(res.Checks, Check{Name: stepDrift, Region: e.RegionID, Status: StatusPass, Detail: "root " + got.String()})
			continue
		}
		d := RegionDrift{RegionID: e.RegionID, Got: got, Want: e.Roots, Changed: claims[i].Snapshot.Changed}
		out = append(out, d)
		detail := fmt.Sprintf("root %s not among %d expected", got, len(e.Roots))
		if len(d.Changed) > 0 {
			detail += "; the measurer reports changed " + pageRanges(d.Changed)
		}
		res.Checks = append(res.Checks, Check{Name: stepDrift, Region: e.RegionID, Status: bad, Detail: detail})
	}
	if len(exp) == 0 {
		res.add(stepDrift, StatusSkip, "no expected values supplied by the verifier")
	}
	return out
}

// pageRanges renders ranges as "page 3, pages 10–12".
func pageRanges(rs []PageRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

// Inspection is a report decoded without any verification, for display
// (hvmon show). Nothing in it is authenticated.
type Inspection struct {
	ReportHash Digest         `json:"report_hash"`
	Alg        int64          `json:"alg"`
	KeyID      Digest         `json:"key_id"`
	Type       string         `json:"content_type"`
	Report     *Report        `json:"report"`
	Guest      *GuestEvidence `json:"guest,omitempty"`
	GuestHash  *Digest        `json:"guest_hash,omitempty"`
}

// Inspect decodes a signed report with the same strict rules as Verify but
// checks no signature, key or time. Use it to look at a report, never to
// decide anything about it.
func Inspect(signed []byte) (*Inspection, error) {
	env, err := openEnvelope("report", signed)
	if err != nil {
		return nil, err
	}
	if env.typ != typeReport {
		return nil, malformed("report", fmt.Sprintf("content type %q, want %q", env.typ, typeReport), nil)
	}
	rep, err := decodeReport(env.payload())
	if err != nil {
		return nil, err
	}
	in := &Inspection{ReportHash: ReportHash(signed), Alg: env.alg, KeyID: env.kid, Type: env.typ, Report: rep}
	if len(rep.Guest) > 0 {
		_, g, err := openGuest(rep.Guest)
		if err != nil {
			return nil, err
		}
		gh := ReportHash(rep.Guest)
		in.Guest, in.GuestHash = g, &gh
	}
	return in, nil
}
