package policy

import (
	"errors"
	"fmt"
	"strings"

	"hvmon.dev/hvmon/attest"
)

// Launch is what GenerateLaunch writes a policy from: the launch
// measurement a VM's SEV-SNP hardware must report, computed from the VM's
// launch inputs (package launch) rather than read from a first report.
type Launch struct {
	// VM is the VM's name.
	VM string
	// Measurement is the expected SEV-SNP MEASUREMENT (48 bytes).
	Measurement []byte
	// Inputs describe the launch inputs, one line each (file names and
	// digests, vCPUs, ...); they become comments.
	Inputs []string
	// HostKeys are the public key files to pin, as the policy should name
	// them (relative to the policy file, or absolute).
	HostKeys []string
	// AMDRoots are the AMD root files to pin; empty for the roots built
	// into hvmon.
	AMDRoots []string
}

// GenerateLaunch writes a starting policy that pins the VM's computed
// SEV-SNP launch measurement and requires SEV-SNP evidence, as commented
// HCL for a person to review. It pins no region roots: no report was
// seen.
func GenerateLaunch(l Launch) ([]byte, error) {
	if err := attest.CheckVMName(l.VM); err != nil {
		return nil, fmt.Errorf("policy: the VM: %w", err)
	}
	if len(l.Measurement) != 48 {
		return nil, fmt.Errorf("policy: an SEV-SNP measurement has 48 bytes, not %d", len(l.Measurement))
	}
	if len(l.HostKeys) == 0 {
		return nil, errors.New("policy: no host key to pin")
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# hvmon policy for the VM %s, generated from its launch inputs: the\n", printableComment(l.VM))
	w("# SEV-SNP measurement below was computed, not read from a report, so no\n")
	w("# report was trusted on first use. The inputs:\n")
	for _, in := range l.Inputs {
		w("#   %s\n", printableComment(in))
	}
	w("# Review every value before trusting it. docs/POLICY.md describes every setting.\n\n")

	w("# The host keys whose reports are accepted (PEM SPKI, relative to this file).\n")
	w("trust {\n  host_keys = %s\n}\n\n", hclList(l.HostKeys))
	if len(l.AMDRoots) > 0 {
		w("# Hardware roots. Without this block: the AMD and Intel roots built into hvmon.\n")
		w("hardware_roots {\n  amd = %s\n}\n\n", hclList(l.AMDRoots))
	}

	w("defaults {\n")
	w("  # Only the VMs a vm block names are appraised: any other VM is\n")
	w("  # contraindicated (unknown_vm). Add a vm block for each VM you accept.\n")
	w("  require_vm_block = true\n")
	w("  # The report must carry SEV-SNP evidence, and every region must come from\n")
	w("  # the guest (none measured by the host).\n")
	w("  require_hardware = true\n")
	w("  hardware_types   = [%s]\n", hclString(string(attest.PlatformSEVSNP)))
	w("  # Reports older than this are contraindicated; uncomment to bound them.\n")
	w("  # max_age = \"15m\"\n")
	var events []string
	for _, e := range attest.Events() {
		events = append(events, string(e))
	}
	w("  # The lifecycle events accepted; remove those this VM should never report.\n")
	w("  allowed_events = %s\n", hclList(events))
	w("}\n\n")

	w("vm %s {\n", hclString(globEscape(l.VM)))
	w("  # Launch the VM with its identity (hvmon vm identity %s) as HOST_DATA,\n", printableComment(l.VM))
	w("  # then set this: evidence relabelled for another VM is then contraindicated.\n")
	w("  # bind_vm_identity = true\n")
	w("  # No region roots yet: add a region block for each region to pin\n")
	w("  # (hvmon measure FILE prints a file's root).\n")
	w("  snp {\n")
	w("    # The launch measurement computed from the inputs above\n")
	w("    # (hvmon launch measure); add others to accept other launches.\n")
	w("    measurements = [%s]\n", hclString(hexs(l.Measurement)))
	w("    allow_debug  = false\n")
	w("    # With the daemon on a libvirt host: its observed launch inputs must give\n")
	w("    # the hardware's measurement too (snp.host_launch).\n")
	w("    # match_host_launch = true\n")
	w("  }\n")
	w("}\n")
	return []byte(b.String()), nil
}
