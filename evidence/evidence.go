// Package evidence gets and verifies TEE hardware evidence: AMD SEV-SNP
// attestation reports and Intel TDX quotes, real or simulated.
//
// A Provider runs inside the guest and asks the hardware (or a simulated
// signer) for a report carrying a 64-byte REPORT_DATA; hvmon's agent passes
// attest.GuestReportData. A Verifier runs anywhere, offline: it checks the
// evidence's signature chain up to a pinned root, that the evidence carries
// the expected REPORT_DATA, and the platform rules it is configured with. It
// implements attest.EvidenceVerifier.
package evidence

import (
	"context"

	"hvmon.dev/hvmon/attest"
)

// Evidence types, recorded as attest.HardwareEvidence.Type.
const (
	TypeSEVSNP          attest.Platform = "sev-snp"
	TypeTDX             attest.Platform = "tdx"
	TypeSimulatedSEVSNP attest.Platform = "simulated-sev-snp"
	TypeSimulatedTDX    attest.Platform = "simulated-tdx"
)

// Provider obtains hardware evidence bound to reportData.
type Provider interface {
	// Type is the evidence type this provider produces.
	Type() attest.Platform
	// Evidence returns a report or quote whose REPORT_DATA field is
	// reportData, with the certificates a verifier needs offline.
	Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error)
}
