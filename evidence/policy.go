package evidence

import (
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// PolicyHardware gives package policy what it needs of the TEE libraries,
// which policy itself must not import: the offline verifier for a policy's
// hardware_roots, and the decoded fields of hardware evidence. It
// implements policy.Hardware, whose methods speak only of package tee's
// types, so that this package does not import policy (and the agent, which
// links this package, links neither policy nor its HCL parser). The zero
// value is ready to use.
type PolicyHardware struct{}

// Verifier implements policy.Hardware: the verifier of t (TrustOptions),
// except that it accepts debug guests. The policy decides about them
// (forbidden unless allow_debug), so a debug guest is an appraisal finding
// rather than a verification failure.
func (PolicyHardware) Verifier(t tee.Trust) (attest.EvidenceVerifier, error) {
	t.AllowDebugUnsafe = true
	opts, err := TrustOptions(t)
	if err != nil {
		return nil, err
	}
	v, err := NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Facts implements policy.Hardware: the fields of SEV-SNP or TDX evidence
// the policy rules check. It parses with the same strict rules as Verify
// and verifies nothing.
func (PolicyHardware) Facts(hw *attest.HardwareEvidence) (*tee.Facts, error) {
	e, err := parse(hw)
	if err != nil {
		return nil, err
	}
	f := e.facts()
	f.Type, f.Simulated = hw.Type, hw.Type.Simulated()
	return f, nil
}
