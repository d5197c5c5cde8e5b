package attest

import "testing"

// The TEE platforms are valid tokens, distinct, and their simulated twins
// say so; no other platform does.
func TestHardwarePlatforms(t *testing.T) {
	seen := map[Platform]bool{}
	simulated := 0
	for _, p := range HardwarePlatforms() {
		if !p.Valid() || seen[p] {
			t.Errorf("platform %q: valid %t, seen before %t", p, p.Valid(), seen[p])
		}
		seen[p] = true
		if p.Simulated() {
			simulated++
		}
	}
	if simulated != 2 || !PlatformSimulatedSEVSNP.Simulated() || !PlatformSimulatedTDX.Simulated() {
		t.Errorf("%d simulated platforms, want simulated-sev-snp and simulated-tdx", simulated)
	}
	for _, p := range []Platform{PlatformSEVSNP, PlatformTDX, PlatformHost, PlatformNone, "file", "simulated"} {
		if p.Simulated() {
			t.Errorf("%q.Simulated() = true", p)
		}
	}
	h := HardwarePlatforms()
	h[0] = "changed"
	if HardwarePlatforms()[0] != PlatformSEVSNP {
		t.Error("HardwarePlatforms returns a shared slice")
	}
}
