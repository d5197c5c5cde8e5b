// Package policy appraises reports that attest.Verify has already
// authenticated: it never decides whether a report is genuine, only
// whether what a genuine report says is acceptable.
//
// A Policy is an HCL file (docs/POLICY.md is normative; contrib/policy.hcl
// is a commented example): the host keys and hardware roots a verifier
// pins, and per VM or VM group (glob patterns over the VM name) the rules a
// report must satisfy — hardware evidence required, SEV-SNP and TDX
// reference values, region roots, events, report age. VerifyOptions turns
// the pins into attest.VerifyOptions; AppraiseResult turns a verified
// report into a Verdict: one Finding per rule, each affirming, warning or
// contraindicated with a stable reason code, and the worst as the overall
// status. Verdict.Err wraps attest.ErrAppraisal for contraindicated
// verdicts.
//
// AuditChain audits a history of reports (host and guest chains,
// migrations, rollbacks) into the same Verdict type.
//
// The package is pure: no network, no process execution, and no TEE
// library (those import the network). What appraisal needs of SEV-SNP and
// TDX evidence comes through the Hardware interface, in package tee's
// terms (tee.Trust, tee.Facts), which evidence.PolicyHardware implements
// without importing this package. The rules of each kind of TEE are in a
// file of their own (snp.go, tdx.go), listed in teeKinds.
package policy
