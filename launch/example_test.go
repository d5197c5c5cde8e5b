package launch_test

import (
	"fmt"

	"hvmon.dev/hvmon/launch"
)

// A firmware image with no footer table is refused with a reason.
func ExampleParseFirmware() {
	_, err := launch.ParseFirmware(make([]byte, 2*launch.PageSize))
	fmt.Println(err)
	// Output: malformed OVMF firmware: no GUIDed footer table before the reset vector
}

func ExampleVCPUSignature() {
	sig, _ := launch.VCPUSignature("EPYC-Milan-v2")
	fmt.Printf("%#x\n", sig)
	// Output: 0xa00f11
}

// The smallest image MeasureSNP accepts: one page with an empty footer
// table (OVMF's GUID 96b582de-1fb2-45f7-baea-a366c55a082d) before the 32
// bytes of the reset vector, and no SEV metadata.
func ExampleMeasureSNP() {
	image := make([]byte, launch.PageSize)
	footer := []byte{18, 0, 0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d}
	copy(image[launch.PageSize-32-len(footer):], footer)
	fw, err := launch.ParseFirmware(image)
	if err != nil {
		fmt.Println(err)
		return
	}
	sig, _ := launch.VCPUSignature("EPYC-Genoa")
	m, err := launch.MeasureSNP(launch.SNPOptions{Firmware: fw, VCPUs: 1, VCPUSignature: sig})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m)
	// Output: 013aaca95e674ca2de539ab7a04c85c5782c6fcd4f7b86befde4225b59dfd0d88d808e49f7e1068b24a87c3fae6760fc
}

// The SEV hashes table of a direct boot: 168 bytes padded to 176, the
// command line's digest first.
func ExampleHashesTable() {
	t := launch.HashesTable(launch.NewDirectBoot([]byte("kernel"), nil, "console=ttyS0"))
	fmt.Println(len(t), t[16], t[17])
	// Output: 176 168 0
}

func ExampleParseVMM() {
	vmm, err := launch.ParseVMM("ec2")
	fmt.Println(vmm, err)
	_, err = launch.ParseVMM("xen")
	fmt.Println(err)
	// Output:
	// ec2 <nil>
	// unknown VMM type "xen" (known: qemu, ec2)
}

func ExampleVCPUTypes() {
	fmt.Println(len(launch.VCPUTypes()), launch.VCPUTypes()[:3])
	// Output: 22 [EPYC EPYC-Genoa EPYC-Genoa-v1]
}
