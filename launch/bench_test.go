package launch

import "testing"

// BenchmarkMeasureSNP4MiB64VCPUs measures a 4 MiB firmware with every SEV
// metadata section, booted on 64 vCPUs.
func BenchmarkMeasureSNP4MiB64VCPUs(b *testing.B) {
	tf := amdSevLike
	tf.pages = 4 << 20 / PageSize
	img := tf.build()
	sig, err := VCPUSignature("EPYC-Milan")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		fw, err := ParseFirmware(img)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := MeasureSNP(SNPOptions{Firmware: fw, VCPUs: 64, VCPUSignature: sig}); err != nil {
			b.Fatal(err)
		}
	}
}
