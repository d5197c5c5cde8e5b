// Package evidence gets and verifies TEE hardware evidence: AMD SEV-SNP
// attestation reports and Intel TDX quotes, real or simulated.
//
// A Provider runs inside the guest and asks the hardware (or a simulated
// signer) for a report carrying a 64-byte REPORT_DATA; hvmon's agent passes
// attest.GuestReportData. New picks a provider by name, Probe by the guest
// interfaces present. A Verifier runs anywhere, offline: it checks the
// evidence's signature chain up to a pinned root, that the evidence carries
// the expected REPORT_DATA, and the platform rules it is configured with. It
// implements attest.EvidenceVerifier.
//
// Each kind of TEE hardware, SEV-SNP (snp.go) and TDX (tdx.go), implements
// one internal interface (kind: recognize, parse, provide; its parsed
// evidence: verify, summarise, facts), and one table (platforms.go) maps
// every evidence type of attest.HardwarePlatforms to its kind, a simulated
// type to the kind it simulates.
//
// The shape of attest.HardwareEvidence per type:
//
//   - sev-snp: Report is the 1184-byte ATTESTATION_REPORT exactly as the
//     firmware signed it. Certs[0] is the DER certificate of the key that
//     signed it (VCEK or VLEK, as the report's signer field says); the ASK
//     and ARK may follow. Only Certs[0] is used: the rest of the chain comes
//     from the verifier's pinned AMD roots, never from the evidence.
//   - tdx: Report is the quote (version 4) as the quoting enclave produced
//     it; it carries its own PCK certificate chain. Certs is empty.
//   - simulated-sev-snp, simulated-tdx: the same shapes, signed by chains
//     from package evidence/sim. A Verifier accepts them only when it was
//     given AllowSimulated and the simulated roots, and verifies them
//     against those roots alone.
//
// Nothing here uses the network: certificates, roots and (optional) Intel
// TDX collateral must be in the evidence or the Verifier's options, which
// configuration fills through a tee.Trust (TrustOptions). The AMD and Intel
// libraries used to parse and verify evidence log through a logger that
// writes to standard output; the Verifier uses them only in ways that log
// nothing, and a test holds it to that.
//
// PolicyHardware decodes evidence into tee.Facts for package policy, which
// does not import this package, nor this package it.
package evidence

import (
	"context"

	"hvmon.dev/hvmon/attest"
)

// Provider obtains hardware evidence bound to reportData.
type Provider interface {
	// Type is the evidence type this provider produces.
	Type() attest.Platform
	// Evidence returns a report or quote whose REPORT_DATA field is
	// reportData, with the certificates a verifier needs offline.
	Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error)
}
