package attest

import (
	"errors"
	"fmt"
)

// classError is a sentinel that belongs to a parent class, so that
// errors.Is(ErrSignature, ErrTrust) and errors.Is(ErrSignature,
// ErrVerification) both hold.
type classError struct {
	msg    string
	parent error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.parent }

// The error hierarchy. Every error that Verify returns matches exactly one of
// ErrMalformed, ErrTrust, ErrFreshness or ErrAppraisal; the last three also
// match ErrVerification.
var (
	// ErrMalformed: the input is not a well-formed hvmon object (bad CBOR or
	// COSE, non-canonical encoding, unknown field, violated bound or
	// semantic rule). Use errors.As with *MalformedError for the details.
	ErrMalformed = errors.New("malformed input")

	// ErrVerification is the parent of every verification failure.
	ErrVerification = errors.New("verification failed")

	// ErrTrust: the signature is invalid, the signing key is not pinned, or
	// the algorithm is not the one hvmon signs with.
	ErrTrust = &classError{"signature or trust failure", ErrVerification}
	// ErrSignature: the ML-DSA-65 signature does not verify.
	ErrSignature = &classError{"signature does not verify", ErrTrust}
	// ErrUntrustedKey: the key id in the protected header is not pinned.
	ErrUntrustedKey = &classError{"signing key is not trusted", ErrTrust}
	// ErrAlgorithm: the protected header names another algorithm.
	ErrAlgorithm = &classError{"unsupported signature algorithm", ErrTrust}
	// ErrBinding: guest evidence is not bound to the report (nonce, event,
	// REPORT_DATA) or its hardware evidence does not verify.
	ErrBinding = &classError{"evidence binding failure", ErrTrust}

	// ErrFreshness: the report is outside its validity window or answers
	// another nonce.
	ErrFreshness = &classError{"freshness failure", ErrVerification}
	// ErrExpired: now is past expires-at (plus the allowed clock skew).
	ErrExpired = &classError{"report expired", ErrFreshness}
	// ErrNotYetValid: issued-at is in the future (beyond the clock skew).
	ErrNotYetValid = &classError{"report not yet valid", ErrFreshness}
	// ErrLifetime: expires-at minus issued-at exceeds the verifier's cap.
	ErrLifetime = &classError{"report lifetime exceeds the verifier's maximum", ErrFreshness}
	// ErrNonce: the verifier supplied a nonce and the report carries another.
	ErrNonce = &classError{"nonce mismatch", ErrFreshness}
	// ErrStaleEvidence: the guest evidence inside the report was issued
	// longer before the report than the verifier accepts
	// (VerifyOptions.MaxEvidenceAge): a host wrapped old guest evidence in
	// a new report.
	ErrStaleEvidence = &classError{"guest evidence too old", ErrFreshness}

	// ErrAppraisal: the report is authentic and fresh but its content is not
	// what the verifier expects.
	ErrAppraisal = &classError{"appraisal failure", ErrVerification}
	// ErrRegionDrift: a region's root differs from the verifier's expected
	// value (fatal in strict mode only). Use errors.As with
	// *RegionDriftError for the regions.
	ErrRegionDrift = &classError{"region drift", ErrAppraisal}
	// ErrIncomplete: the report covers no region, or misses a region the
	// verifier expects.
	ErrIncomplete = &classError{"incomplete report", ErrAppraisal}
	// ErrWrongVM: the report is authentic but about another VM than the
	// one the verifier asked about (VerifyOptions.VM).
	ErrWrongVM = &classError{"report is about another VM", ErrAppraisal}
	// ErrNoHardware: the verifier requires hardware evidence
	// (VerifyOptions.RequireHardware) and the report embeds none.
	ErrNoHardware = &classError{"no hardware evidence", ErrAppraisal}

	// ErrTooLarge: a signed object would exceed MaxReportSize (FORMAT.md
	// §10). Sign and SignGuestEvidence return it (inside a
	// *MalformedError, so it matches ErrMalformed too) instead of producing
	// bytes Verify would refuse.
	ErrTooLarge = errors.New("larger than the format allows")

	// ErrInvalidRegion: a region definition is unusable. Use errors.As with
	// *InvalidRegionError.
	ErrInvalidRegion = errors.New("invalid region")

	// ErrBackend: a backend failed to list or snapshot regions. Use
	// errors.As with *BackendError.
	ErrBackend = errors.New("backend error")
)

// MalformedError describes input that is not a well-formed hvmon object.
type MalformedError struct {
	What   string // the object being parsed: "report", "payload", "public key", ...
	Reason string // what is wrong with it
	Err    error  // underlying decoder error, if any
}

func (e *MalformedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("malformed %s: %s: %v", e.What, e.Reason, e.Err)
	}
	return fmt.Sprintf("malformed %s: %s", e.What, e.Reason)
}

// Is reports that every MalformedError matches ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(what, reason string, err error) error {
	return &MalformedError{What: what, Reason: reason, Err: err}
}

// RegionDrift is one region whose root differs from what the verifier
// expected.
type RegionDrift struct {
	RegionID string   `json:"region_id"`
	Got      Digest   `json:"got"`
	Want     []Digest `json:"want"` // the accepted roots
	// Changed is the measurer's list of pages that changed since its
	// previous measurement, when it gave one: where to look, not proof.
	Changed []PageRange `json:"changed,omitempty"`
}

// RegionDriftError lists drifted regions. It matches ErrRegionDrift.
type RegionDriftError struct {
	Regions []RegionDrift
}

func (e *RegionDriftError) Error() string {
	ids := make([]string, len(e.Regions))
	for i, r := range e.Regions {
		ids[i] = r.RegionID
	}
	return fmt.Sprintf("region drift in %d region(s): %q", len(ids), ids)
}

func (e *RegionDriftError) Unwrap() error { return ErrRegionDrift }

// InvalidRegionError explains why a region definition is unusable.
type InvalidRegionError struct {
	ID     string
	Reason string
}

func (e *InvalidRegionError) Error() string {
	return fmt.Sprintf("invalid region %q: %s", e.ID, e.Reason)
}

func (e *InvalidRegionError) Unwrap() error { return ErrInvalidRegion }

// BackendError wraps a failure of a Backend.
type BackendError struct {
	Backend string // backend name
	Op      string // "regions" or "snapshot"
	Region  string // region id, for snapshot failures
	Err     error
}

func (e *BackendError) Error() string {
	if e.Region != "" {
		return fmt.Sprintf("backend %s: %s %q: %v", e.Backend, e.Op, e.Region, e.Err)
	}
	return fmt.Sprintf("backend %s: %s: %v", e.Backend, e.Op, e.Err)
}

// Is reports that every BackendError matches ErrBackend.
func (e *BackendError) Is(target error) bool { return target == ErrBackend }

func (e *BackendError) Unwrap() error { return e.Err }
