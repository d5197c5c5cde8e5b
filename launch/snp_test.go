package launch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"
)

// vectorFile holds launch measurements computed by an independent
// implementation of the AMD SEV-SNP launch digest for Debian 12's OVMF.
const vectorFile = "testdata/sev-snp-launch.json"

type vectorCase struct {
	OVMF          string `json:"ovmf"`
	OVMFSHA256    string `json:"ovmf_sha256"`
	VCPUs         int    `json:"vcpus"`
	VCPUType      string `json:"vcpu_type"`
	VMMType       string `json:"vmm_type"`
	GuestFeatures string `json:"guest_features"`
	Measurement   string `json:"measurement"`
}

// loadFirmware reads a firmware file the vectors name. Under the README's
// test command (HVMON_REQUIRE_OVMF=1, after it installed Debian's ovmf
// package) a missing file fails the test; plain go test skips.
func loadFirmware(t testing.TB, path, sha string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("HVMON_REQUIRE_OVMF") == "1" {
			t.Fatalf("firmware for the vectors: %v (install Debian's ovmf package)", err)
		}
		t.Skipf("firmware for the vectors: %v (apt-get install ovmf; HVMON_REQUIRE_OVMF=1 makes this fail)", err)
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sha {
		t.Fatalf("%s: SHA-256 %x, the vectors want %s (another ovmf package version)", path, got, sha)
	}
	return b
}

// The real Milan report in go-sev-guest's test data
// (verify/testdata/attestation.bin, MEASUREMENT b07af962...2b01) cannot be
// checked here: its launch inputs (firmware image, vCPU count and type,
// VMM) are recorded nowhere. None of Debian 12's OVMF images with 1 to 16
// vCPUs of any vCPU type this package knows, QEMU or EC2 conventions,
// gives its measurement (tried once, by hand: 5632 combinations).
func TestVectors(t *testing.T) {
	raw, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) == 0 {
		t.Fatalf("%s holds no case", vectorFile)
	}
	for _, c := range v.Cases {
		t.Run(c.VCPUType+"x"+strconv.Itoa(c.VCPUs), func(t *testing.T) {
			fw, err := ParseFirmware(loadFirmware(t, c.OVMF, c.OVMFSHA256))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := VCPUSignature(c.VCPUType)
			if err != nil {
				t.Fatal(err)
			}
			vmm, err := ParseVMM(c.VMMType)
			if err != nil {
				t.Fatal(err)
			}
			features, err := strconv.ParseUint(c.GuestFeatures, 0, 64)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MeasureSNP(SNPOptions{Firmware: fw, VCPUs: c.VCPUs, VCPUSignature: sig, VMM: vmm, GuestFeatures: features})
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != c.Measurement {
				t.Errorf("MeasureSNP(%s, %d × %s, %s, features %s) = %s, want %s", c.OVMF, c.VCPUs, c.VCPUType, c.VMMType, c.GuestFeatures, got, c.Measurement)
			}
		})
	}
}
