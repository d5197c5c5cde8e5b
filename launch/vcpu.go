package launch

import (
	"fmt"
	"slices"

	"github.com/google/go-sev-guest/abi"
)

// vcpuModels maps QEMU's EPYC CPU models to their family, model and
// stepping. The versions of a model change CPUID feature bits, never the
// signature, so each version has its base model's signature.
var vcpuModels = map[string][3]byte{
	"EPYC":       {23, 1, 2},
	"EPYC-Rome":  {23, 49, 0},
	"EPYC-Milan": {25, 1, 1},
	"EPYC-Genoa": {25, 17, 0},
	"EPYC-Turin": {26, 0, 0},
}

// vcpuVersions lists the versions QEMU (up to 10.x) defines for each model, and the
// aliases it keeps for some of them.
var vcpuVersions = map[string][]string{
	"EPYC":       {"EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4", "EPYC-v5"},
	"EPYC-Rome":  {"EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Rome-v4", "EPYC-Rome-v5"},
	"EPYC-Milan": {"EPYC-Milan-v1", "EPYC-Milan-v2", "EPYC-Milan-v3"},
	"EPYC-Genoa": {"EPYC-Genoa-v1", "EPYC-Genoa-v2"},
	"EPYC-Turin": {"EPYC-Turin-v1"},
}

// VCPUTypes lists the vCPU type names VCPUSignature knows, sorted.
func VCPUTypes() []string {
	var names []string
	for base, versions := range vcpuVersions {
		names = append(names, base)
		names = append(names, versions...)
	}
	slices.Sort(names)
	return names
}

// VCPUSignature returns the CPUID Fn0000_0001_EAX value (family, model,
// stepping) of a QEMU EPYC CPU model, as QEMU reports it to the guest and
// puts in RDX at reset.
func VCPUSignature(name string) (uint32, error) {
	for base, versions := range vcpuVersions {
		if name == base || slices.Contains(versions, name) {
			fms := vcpuModels[base]
			return abi.FmsToCpuid1Eax(fms[0], fms[1], fms[2]), nil
		}
	}
	return 0, fmt.Errorf("unknown vCPU type %q (known: %v)", name, VCPUTypes())
}
