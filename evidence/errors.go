package evidence

import "errors"

// classError is a sentinel that belongs to a parent class, so that
// errors.Is(ErrChain, ErrUntrusted) holds.
type classError struct {
	msg    string
	parent error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.parent }

// The errors a Verifier returns. Every verification error matches exactly
// one of ErrMalformed, ErrUntrusted, ErrReportData and ErrPolicy; the more
// specific sentinels below each belong to one of them. The text after the
// sentinel says what the evidence held and what was wanted; it is for
// people, and callers branch with errors.Is only.
//
// None of them wraps an error of package attest: attest.Verify files every
// evidence failure under attest.ErrBinding itself.
var (
	// ErrMalformed: the evidence is not a well-formed report or quote of
	// its type (wrong size, reserved bytes set, bad structure, an
	// unparsable certificate, certificates where none belong).
	ErrMalformed = errors.New("malformed hardware evidence")
	// ErrUnknownType: the evidence type is none this package knows.
	ErrUnknownType = &classError{"unknown hardware evidence type", ErrMalformed}
	// ErrTypeMismatch: the bytes are evidence of another type than the
	// one stated (a TDX quote labeled sev-snp, or the reverse).
	ErrTypeMismatch = &classError{"hardware evidence is not of its stated type", ErrMalformed}

	// ErrUntrusted is the parent of the failures that leave the evidence
	// without a trusted origin.
	ErrUntrusted = errors.New("hardware evidence is not trusted")
	// ErrChain: the certificate chain does not verify to a pinned root at
	// the verification time (unknown root, bad certificate signature,
	// expired certificate, missing certificate).
	ErrChain = &classError{"certificate chain does not verify to a pinned root", ErrUntrusted}
	// ErrSignature: the chain verifies, but the report or quote is not
	// signed by the key it certifies.
	ErrSignature = &classError{"hardware evidence signature does not verify", ErrUntrusted}
	// ErrSimulatedNotTrusted: the evidence is simulated and the verifier
	// was not configured to accept simulated evidence.
	ErrSimulatedNotTrusted = &classError{"simulated hardware evidence is not trusted by this verifier", ErrUntrusted}

	// ErrReportData: the evidence is genuine but carries another
	// REPORT_DATA than the one it must be bound to.
	ErrReportData = errors.New("hardware evidence carries another REPORT_DATA")

	// ErrPolicy: the evidence is genuine but breaks a platform rule the
	// verifier enforces.
	ErrPolicy = errors.New("hardware evidence breaks a platform rule")
	// ErrDebug: the guest runs with debugging enabled (the host can read
	// and write its memory) and the verifier does not allow it.
	ErrDebug = &classError{"hardware evidence is from a debug guest", ErrPolicy}
	// ErrCollateral: Intel collateral was configured and does not vouch
	// for the TDX platform: the platform's or the quoting enclave's TCB is
	// not up to date, or the collateral is expired, for another platform,
	// or does not verify to the quote's roots.
	ErrCollateral = &classError{"TDX collateral does not vouch for the platform", ErrPolicy}
)

// Errors of the providers.
var (
	// ErrNoHardware: no TEE guest interface (configfs-tsm, /dev/sev-guest,
	// /dev/tdx_guest) is present, or not the one asked for.
	ErrNoHardware = errors.New("no TEE guest interface found")
	// ErrNoCertificate: the platform supplied no VCEK or VLEK certificate
	// with the SEV-SNP report and none was configured, so the evidence
	// could not be verified offline.
	ErrNoCertificate = errors.New("no VCEK or VLEK certificate for the SEV-SNP report")
)
