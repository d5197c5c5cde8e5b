// Package policy will hold appraisal: reference values, hardware-evidence
// rules and lifecycle-chain audits over reports that attest.Verify has
// already authenticated. Today the verifier's reference values are
// attest.Expectation; see docs/ARCHITECTURE.md.
package policy
