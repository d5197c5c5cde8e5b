package libvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"hvmon.dev/hvmon/launch"
)

// The observations of a domain's launch inputs (docs/FORMAT.md §7.5): what
// a verifier holding the same artifacts needs to recompute the launch
// measurement, and the daemon's own computation of it.
const (
	FactLaunchFirmware     = "launch_firmware_sha256" // SHA-256 of the loader (OVMF)
	FactLaunchKernel       = "launch_kernel_sha256"   // SHA-256 of the directly booted kernel
	FactLaunchInitrd       = "launch_initrd_sha256"   // SHA-256 of its initrd
	FactLaunchCmdline      = "launch_cmdline_sha256"  // SHA-256 of its command line and a NUL
	FactLaunchKernelHashes = "launch_kernel_hashes"   // "yes" when the direct boot is measured
	FactLaunchVCPUs        = "launch_vcpus"           // vCPUs at launch
	FactLaunchCPU          = "launch_cpu"             // CPU model, or "mode:MODE" without one
	// FactLaunchMeasurement is the SEV-SNP measurement package launch
	// computes from the inputs above, which the hardware's MEASUREMENT
	// must equal (policy: snp { match_host_launch = true }).
	FactLaunchMeasurement = "launch_expected_measurement"
	// FactLaunchError says why an input could not be read or the
	// measurement not be computed.
	FactLaunchError = "launch_inputs_error"
)

// maxFactValue is the bound on a fact's value (docs/FORMAT.md §7.5).
const maxFactValue = 1024

// LaunchFacts returns the observations of the launch inputs of a domain
// with launch security: the digests of its firmware, directly booted
// kernel, initrd and command line, its vCPU count and CPU model, and for
// SEV-SNP the launch measurement they give (as QEMU launches the guest,
// with the default guest features). Files are opened with open, which
// should refuse anything but regular files. A domain without launch
// security gives nothing.
func LaunchFacts(info *DomainInfo, open func(path string) (io.ReadCloser, error)) map[string]string {
	if info.LaunchSecurity == "" {
		return nil
	}
	l := info.Launch
	f := map[string]string{FactLaunchVCPUs: strconv.FormatUint(uint64(l.VCPUs), 10)}
	fail := func(format string, args ...any) map[string]string {
		msg := fmt.Sprintf(format, args...)
		if len(msg) > maxFactValue {
			msg = msg[:maxFactValue]
		}
		f[FactLaunchError] = msg
		return f
	}
	if l.CPUModel != "" {
		f[FactLaunchCPU] = l.CPUModel
	} else {
		f[FactLaunchCPU] = "mode:" + l.CPUMode
	}
	if l.KernelHashes {
		f[FactLaunchKernelHashes] = "yes"
	} else {
		f[FactLaunchKernelHashes] = "no"
	}
	var boot *launch.DirectBoot
	if l.Kernel != "" {
		boot = launch.NewDirectBoot(nil, nil, l.Cmdline)
		var err error
		if boot.KernelSHA256, err = hashFile(open, l.Kernel); err != nil {
			return fail("kernel: %v", err)
		}
		f[FactLaunchKernel] = hex.EncodeToString(boot.KernelSHA256[:])
		if l.Initrd != "" {
			if boot.InitrdSHA256, err = hashFile(open, l.Initrd); err != nil {
				return fail("initrd: %v", err)
			}
			f[FactLaunchInitrd] = hex.EncodeToString(boot.InitrdSHA256[:])
		}
		c := sha256.Sum256(append([]byte(l.Cmdline), 0))
		f[FactLaunchCmdline] = hex.EncodeToString(c[:])
		if !l.KernelHashes {
			boot = nil // QEMU leaves it out of the measurement
		}
	}
	if l.Loader == "" {
		return fail("the domain names no loader (firmware)")
	}
	image, err := readFile(open, l.Loader, launch.MaxFirmwareSize)
	if err != nil {
		return fail("firmware: %v", err)
	}
	sum := sha256.Sum256(image)
	f[FactLaunchFirmware] = hex.EncodeToString(sum[:])
	if info.LaunchSecurity != "sev-snp" {
		return f
	}
	if l.CPUModel == "" {
		return fail("the CPU has no model (mode %q): its signature is the host's, which hvmon does not record", l.CPUMode)
	}
	sig, err := launch.VCPUSignature(l.CPUModel)
	if err != nil {
		return fail("%v", err)
	}
	fw, err := launch.ParseFirmware(image)
	if err != nil {
		return fail("%v", err)
	}
	vcpus := int(min(l.VCPUs, launch.MaxVCPUs+1))
	m, err := launch.MeasureSNP(launch.SNPOptions{Firmware: fw, VCPUs: vcpus, VCPUSignature: sig, Boot: boot})
	if err != nil {
		return fail("%v", err)
	}
	f[FactLaunchMeasurement] = m.String()
	return f
}

func hashFile(open func(string) (io.ReadCloser, error), path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	r, err := open(path)
	if err != nil {
		return sum, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return sum, fmt.Errorf("reading %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

func readFile(open func(string) (io.ReadCloser, error), path string, max int64) ([]byte, error) {
	r, err := open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}
