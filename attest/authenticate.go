package attest

import (
	"fmt"
	"slices"
)

// Authenticate checks that signed is a well-formed hvmon report signed by
// one of the trusted keys, and returns the decoded report and the signer's
// key ID. It is the check a transparency log makes before logging a report:
// the strict envelope, the content type, the pinned key ID, the ML-DSA-65
// signature and the report payload format. It makes no time, nonce, guest
// evidence or hardware check; a logged report is appraised by its readers.
//
// Errors: ErrMalformed for anything that is not a well-formed hvmon report
// (including another content type); ErrUntrustedKey when the key ID is not
// among the trusted keys; ErrSignature or ErrAlgorithm (both ErrTrust) when
// the signature does not verify under the pinned key.
func Authenticate(signed []byte, trusted []*PublicKey) (*Report, Digest, error) {
	env, err := openEnvelope("report", signed)
	if err != nil {
		return nil, Digest{}, err
	}
	if env.typ != typeReport {
		return nil, env.kid, malformed("report", fmt.Sprintf("content type %q, want %q", env.typ, typeReport), nil)
	}
	i := slices.IndexFunc(trusted, func(k *PublicKey) bool { return k != nil && k.KeyID() == env.kid })
	if i < 0 {
		return nil, env.kid, fmt.Errorf("%w: key id %s is not among the %d trusted key(s)", ErrUntrustedKey, env.kid, len(trusted))
	}
	if err := env.verify(typeReport, trusted[i]); err != nil {
		return nil, env.kid, err
	}
	rep, err := decodeReport(env.payload())
	if err != nil {
		return nil, env.kid, err
	}
	if rep.Attester.KeyID != env.kid {
		return nil, env.kid, malformed("report payload", "attester kid differs from the protected header kid", nil)
	}
	return rep, env.kid, nil
}
