package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/launch"
)

// launchInputs are the flags that describe a launch, shared by "launch
// measure" and "policy init --from-launch".
type launchInputs struct {
	typ, ovmf, kernel, initrd, cmdline string
	vcpuType, vcpuSig, vmmType         string
	guestFeatures                      string
	vcpus                              int
	flags                              *pflag.FlagSet
	app                                *app // for its logger, set once flags are parsed
}

func (l *launchInputs) addFlags(f *pflag.FlagSet, a *app) {
	l.flags, l.app = f, a
	f.StringVar(&l.typ, "type", "sev-snp", "TEE `TYPE` of the launch (only sev-snp)")
	f.StringVar(&l.ovmf, "ovmf", "", "OVMF firmware `FILE` (the code image QEMU maps below 4 GiB)")
	f.IntVar(&l.vcpus, "vcpus", 0, "number of vCPUs `N`")
	f.StringVar(&l.vcpuType, "vcpu-type", "", "QEMU CPU model `NAME` (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, their versions)")
	f.StringVar(&l.vcpuSig, "vcpu-sig", "", "instead of --vcpu-type: the vCPUs' CPUID Fn0000_0001_EAX, `HEX` (for host-passthrough: the host's)")
	f.StringVar(&l.kernel, "kernel", "", "directly booted kernel `FILE` (QEMU's -kernel)")
	f.StringVar(&l.initrd, "initrd", "", "initrd `FILE` of the direct boot (QEMU's -initrd)")
	f.StringVar(&l.cmdline, "append", "", "kernel command line `STRING` of the direct boot (QEMU's -append)")
	f.StringVar(&l.guestFeatures, "guest-features", "0x1", "SEV_FEATURES of the VMSAs, `HEX` (bit 0, SNPActive, is always set)")
	f.StringVar(&l.vmmType, "vmm-type", "qemu", "register conventions of the VMM: `qemu` or ec2")
}

// launchFile is one input file and its digest.
type launchFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// launchResult is what "launch measure --json" prints.
type launchResult struct {
	Type          string      `json:"type"`
	Measurement   string      `json:"measurement"`
	OVMF          launchFile  `json:"ovmf"`
	SEVMetadata   bool        `json:"ovmf_sev_metadata"`
	HashesTable   bool        `json:"ovmf_hashes_table"`
	Kernel        *launchFile `json:"kernel,omitempty"`
	Initrd        *launchFile `json:"initrd,omitempty"`
	Cmdline       *string     `json:"cmdline,omitempty"`
	CmdlineSHA256 string      `json:"cmdline_sha256,omitempty"` // of the command line and its NUL, as the SEV hashes table has it
	VCPUs         int         `json:"vcpus"`
	VCPUType      string      `json:"vcpu_type,omitempty"`
	VCPUSignature string      `json:"vcpu_signature"`
	VMMType       string      `json:"vmm_type"`
	GuestFeatures string      `json:"guest_features"`
}

// readLaunchFile reads a regular file of at most max bytes.
func readLaunchFile(flag, path string, max int64) ([]byte, *launchFile, error) {
	f, err := boundedfile.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--%s: %w", flag, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, nil, fmt.Errorf("--%s: reading %s: %w", flag, path, err)
	}
	if int64(len(b)) > max {
		return nil, nil, fmt.Errorf("--%s %s: larger than %d bytes", flag, path, max)
	}
	sum := sha256.Sum256(b)
	return b, &launchFile{Path: path, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// hashLaunchFile hashes a regular file as it reads it.
func hashLaunchFile(flag, path string) ([sha256.Size]byte, *launchFile, error) {
	var sum [sha256.Size]byte
	f, err := boundedfile.Open(path)
	if err != nil {
		return sum, nil, fmt.Errorf("--%s: %w", flag, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, nil, fmt.Errorf("--%s: reading %s: %w", flag, path, err)
	}
	h.Sum(sum[:0])
	return sum, &launchFile{Path: path, Size: n, SHA256: hex.EncodeToString(sum[:])}, nil
}

// measure checks the inputs, reads the files and computes the launch
// measurement. Every error is a configError: the inputs are the command's.
func (l *launchInputs) measure() (*launchResult, error) {
	r, err := l.measure1()
	return r, configErr(err)
}

func (l *launchInputs) measure1() (*launchResult, error) {
	if l.typ != "sev-snp" {
		return nil, fmt.Errorf("--type %q: only sev-snp is supported (TDX is not: see the launch package's documentation)", l.typ)
	}
	if l.ovmf == "" {
		return nil, errors.New("--ovmf: the firmware file is required")
	}
	if l.vcpus < 1 || l.vcpus > launch.MaxVCPUs {
		return nil, fmt.Errorf("--vcpus %d: want 1 to %d", l.vcpus, launch.MaxVCPUs)
	}
	var sig uint32
	switch {
	case l.vcpuSig != "" && l.vcpuType != "":
		return nil, errors.New("--vcpu-type and --vcpu-sig: give one")
	case l.vcpuSig != "":
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(l.vcpuSig), "0x"), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("--vcpu-sig %q: want a 32-bit hexadecimal number such as 0xa00f11", l.vcpuSig)
		}
		sig = uint32(v)
	case l.vcpuType == "":
		return nil, fmt.Errorf("--vcpu-type: required, one of %s (or --vcpu-sig)", strings.Join(launch.VCPUTypes(), ", "))
	default:
		var err error
		if sig, err = launch.VCPUSignature(l.vcpuType); err != nil {
			return nil, fmt.Errorf("--vcpu-type: %w", err)
		}
	}
	vmm, err := launch.ParseVMM(l.vmmType)
	if err != nil {
		return nil, fmt.Errorf("--vmm-type: %w", err)
	}
	features, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(l.guestFeatures), "0x"), 16, 64)
	if err != nil {
		return nil, fmt.Errorf("--guest-features %q: want a hexadecimal number such as 0x1", l.guestFeatures)
	}
	appendSet := l.flags != nil && l.flags.Changed("append")
	if l.kernel == "" && (l.initrd != "" || appendSet) {
		return nil, errors.New("--initrd and --append need --kernel: without a directly booted kernel the firmware measures neither")
	}

	image, fwFile, err := readLaunchFile("ovmf", l.ovmf, launch.MaxFirmwareSize)
	if err != nil {
		return nil, err
	}
	fw, err := launch.ParseFirmware(image)
	if err != nil {
		return nil, fmt.Errorf("--ovmf %s: %w", l.ovmf, err)
	}
	if !fw.HasMetadata {
		l.app.log.Warn("the firmware has no SEV metadata: its measurement can be computed, but an SEV-SNP guest does not boot with it", "ovmf", l.ovmf)
	}
	res := &launchResult{
		Type: l.typ, OVMF: *fwFile, SEVMetadata: fw.HasMetadata, HashesTable: fw.HashesTableGPA != 0,
		VCPUs: l.vcpus, VCPUType: l.vcpuType, VCPUSignature: fmt.Sprintf("%#x", sig),
		VMMType: vmm.String(), GuestFeatures: fmt.Sprintf("%#x", features|launch.FeatureSNPActive),
	}
	opts := launch.SNPOptions{Firmware: fw, VCPUs: l.vcpus, VCPUSignature: sig, VMM: vmm, GuestFeatures: features}
	if l.kernel != "" {
		boot := launch.NewDirectBoot(nil, nil, l.cmdline) // no initrd: the digest of no bytes
		if boot.KernelSHA256, res.Kernel, err = hashLaunchFile("kernel", l.kernel); err != nil {
			return nil, err
		}
		if l.initrd != "" {
			if boot.InitrdSHA256, res.Initrd, err = hashLaunchFile("initrd", l.initrd); err != nil {
				return nil, err
			}
		}
		cmdline := l.cmdline
		res.Cmdline = &cmdline
		sum := sha256.Sum256(append([]byte(cmdline), 0))
		res.CmdlineSHA256 = hex.EncodeToString(sum[:])
		opts.Boot = boot
	}
	m, err := launch.MeasureSNP(opts)
	if err != nil {
		return nil, fmt.Errorf("--ovmf %s: %w", l.ovmf, err)
	}
	res.Measurement = m.String()
	return res, nil
}

func (a *app) launchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "launch",
		Short: "Compute expected launch measurements from the launch inputs",
		Long: `Compute what a confidential VM's hardware will report as its launch
measurement from the inputs the host launches it with (firmware, kernel,
initrd, command line, vCPUs), so that a policy can pin it without trusting
a first report (docs/OPERATIONS.md, "Reference values without trust on
first use").`,
	}
	cmd.AddCommand(a.launchMeasureCmd())
	return cmd
}

func (a *app) launchMeasureCmd() *cobra.Command {
	var (
		in     launchInputs
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "measure --type sev-snp --ovmf FILE --vcpus N (--vcpu-type NAME | --vcpu-sig HEX) [--kernel FILE [--initrd FILE] [--append STRING]] [--guest-features HEX] [--vmm-type qemu|ec2] [--json]",
		Short: "Print the SEV-SNP launch measurement a guest will have",
		Long: `Print the SEV-SNP MEASUREMENT that the AMD Secure Processor will report for
a guest launched with these inputs: 96 lowercase hex digits on one line.

The firmware is OVMF's code image. With --kernel (and optionally --initrd and
--append), the guest boots that kernel directly and the firmware checks it
against its SEV hashes table: the firmware must have one (OVMF's AmdSev
build), or the command says it is missing.

--vcpu-type takes QEMU's EPYC model names; --vcpu-sig a CPUID signature
instead (a host-passthrough CPU has the host's: the "cpu family", "model"
and "stepping" of /proc/cpuinfo encoded as CPUID Fn0000_0001_EAX).
--vmm-type selects the VMM's register conventions (qemu, ec2),
--guest-features the VMSAs' SEV_FEATURES. A firmware without SEV metadata
(Debian 12's OVMF) is measured with a warning: an SEV-SNP guest does not
boot with it.

--json prints the inputs with their SHA-256 digests (the command line's
with its terminating NUL, as the firmware hashes it) and the measurement.

Exit codes: 0 computed, 1 usage or I/O error, a malformed firmware, or a
piece of the launch the inputs lack.`,
		Example: `  hvmon launch measure --type sev-snp --ovmf /usr/share/OVMF/OVMF_CODE_4M.fd --vcpus 4 --vcpu-type EPYC-Milan
  hvmon launch measure --ovmf OVMF.fd --vcpus 2 --vcpu-type EPYC-Genoa --kernel vmlinuz --initrd initrd.img --append 'console=ttyS0' --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := in.measure()
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "%s\n", b)
				return configErr(err)
			}
			_, err = fmt.Fprintln(a.stdout, res.Measurement)
			return configErr(err)
		},
	}
	in.addFlags(cmd.Flags(), a)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the inputs, their digests and the measurement as JSON")
	return cmd
}
