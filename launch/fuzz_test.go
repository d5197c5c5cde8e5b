package launch

import (
	"errors"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// FuzzParseFirmware checks that any image either parses or gives an
// attest.MalformedError, and that a parsed image measures without a panic.
// The seeds are synthetic images with every section type, each table entry
// present and absent, and cut at every interesting place.
func FuzzParseFirmware(f *testing.F) {
	bare := amdSevLike
	bare.noMetadata = true
	noHashes := amdSevLike
	noHashes.hashesGPA = 0
	seeds := [][]byte{amdSevLike.build(), bare.build(), noHashes.build(), (testFirmware{pages: 2}).build()}
	small := testFirmware{pages: 3, sections: amdSevLike.sections[:2], resetEIP: 0xfffff004}
	seeds = append(seeds, small.build())
	img := amdSevLike.build()
	seeds = append(seeds, img[len(img)-PageSize:], img[:len(img)-PageSize])
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		fw, err := ParseFirmware(image)
		if err != nil {
			var me *attest.MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("ParseFirmware error %v (%T) is not a MalformedError", err, err)
			}
			return
		}
		for _, boot := range []*DirectBoot{nil, NewDirectBoot([]byte("k"), nil, "c")} {
			_, err := MeasureSNP(SNPOptions{Firmware: fw, VCPUs: 2, Boot: boot})
			var me *attest.MalformedError
			if err != nil && !errors.Is(err, ErrMissing) && !errors.As(err, &me) {
				t.Fatalf("MeasureSNP of a parsed image: %v", err)
			}
		}
	})
}
