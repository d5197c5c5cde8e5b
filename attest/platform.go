package attest

// The platforms of TEE hardware evidence. Each names both the platform of
// guest evidence and the type of the hardware evidence it carries
// (HardwareEvidence.Type, docs/FORMAT.md §8). The simulated ones carry the
// same report and quote structures, signed by generated chains that prove
// nothing about hardware (package evidence/sim).
const (
	PlatformSEVSNP          Platform = "sev-snp"
	PlatformTDX             Platform = "tdx"
	PlatformSimulatedSEVSNP Platform = "simulated-sev-snp"
	PlatformSimulatedTDX    Platform = "simulated-tdx"
)

// HardwarePlatforms returns the platforms of TEE hardware evidence that
// hvmon knows, the real ones first, in a new slice. Package evidence has a
// verifier and a provider for each; package policy accepts exactly these
// in hardware_types.
func HardwarePlatforms() []Platform {
	return []Platform{PlatformSEVSNP, PlatformTDX, PlatformSimulatedSEVSNP, PlatformSimulatedTDX}
}

// Simulated reports whether p is the platform of simulated TEE hardware,
// whose evidence a verifier accepts only when told to.
func (p Platform) Simulated() bool {
	return p == PlatformSimulatedSEVSNP || p == PlatformSimulatedTDX
}
