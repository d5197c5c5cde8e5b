package launch

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/abi"
)

// Measurement is an SEV-SNP launch digest: the MEASUREMENT field of the
// guest's attestation reports.
type Measurement [abi.MeasurementSize]byte

// String returns the measurement as lowercase hex.
func (m Measurement) String() string { return hex.EncodeToString(m[:]) }

// FeatureSNPActive is bit 0 of SEV_FEATURES, set in every VMSA of an
// SEV-SNP guest.
const FeatureSNPActive = 1

// MaxVCPUs bounds SNPOptions.VCPUs: KVM's limit on x86.
const MaxVCPUs = 4096

// ErrMissing is the class of errors that name a piece of the launch the
// inputs lack. Use errors.As with *MissingError for the piece.
var ErrMissing = errors.New("launch input missing")

// MissingError says which piece the launch needs and the inputs lack, for
// example the firmware's SEV hashes table when a kernel boots directly.
type MissingError struct {
	Piece  string // what is missing
	Reason string // why the launch needs it
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s is missing: %s", e.Piece, e.Reason)
}

// Is reports that every MissingError matches ErrMissing.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// DirectBoot is a kernel the VMM loads itself (QEMU's -kernel, -initrd and
// -append), which OVMF checks against the SEV hashes table. It holds the
// digests the table holds, so that callers can hash large files as they
// read them; NewDirectBoot hashes bytes.
type DirectBoot struct {
	KernelSHA256 [sha256.Size]byte // SHA-256 of the kernel image, as the VMM reads it
	InitrdSHA256 [sha256.Size]byte // SHA-256 of the initrd (of no bytes when there is none)
	Cmdline      string            // the command line, without its terminating NUL
}

// NewDirectBoot returns the direct boot of a kernel, an initrd (nil for
// none) and a command line.
func NewDirectBoot(kernel, initrd []byte, cmdline string) *DirectBoot {
	return &DirectBoot{KernelSHA256: sha256.Sum256(kernel), InitrdSHA256: sha256.Sum256(initrd), Cmdline: cmdline}
}

// SNPOptions are the inputs of an SEV-SNP launch.
type SNPOptions struct {
	// Firmware is the parsed OVMF image (ParseFirmware).
	Firmware *Firmware
	// VCPUs is the number of vCPUs, at least 1.
	VCPUs int
	// VCPUSignature is CPUID Fn0000_0001_EAX of the vCPU type
	// (VCPUSignature gives it for QEMU's models).
	VCPUSignature uint32
	// VMM selects the register conventions; the zero value is QEMU.
	VMM VMM
	// GuestFeatures is the VMSA's SEV_FEATURES field (AMD64 Architecture
	// Programmer's Manual, Volume 2, section 15.36: bit 0 SNPActive, bit 1
	// vTOM, bit 2 ReflectVC, ...). Bit 0 is set whether or not it is
	// given: every VMSA of an SEV-SNP guest has it, so 0x0 and 0x1 both
	// mean the default.
	GuestFeatures uint64
	// Boot is the directly booted kernel; nil when the firmware boots
	// from disk.
	Boot *DirectBoot
}

// Page types of SNP_LAUNCH_UPDATE.
const (
	pageNormal  = 0x1
	pageVMSA    = 0x2
	pageZero    = 0x3
	pageSecrets = 0x5
	pageCPUID   = 0x6
)

// vmsaGPA is where KVM places every vCPU's VMSA for the launch digest.
const vmsaGPA = 0xfffffffff000

// digest is the launch digest being extended, page by page.
type digest struct {
	ld   [sha512.Size384]byte
	info [0x70]byte
}

// extend adds one page: SHA-384 over PAGE_INFO, which holds the current
// digest, the SHA-384 of the page's contents (NORMAL and VMSA pages only),
// its length (0x70), type and guest-physical address; IMI_PAGE and the
// VMPL permissions stay zero.
func (d *digest) extend(typ byte, gpa uint64, contents *[sha512.Size384]byte) {
	p := &d.info
	copy(p[0x00:0x30], d.ld[:])
	if contents != nil {
		copy(p[0x30:0x60], contents[:])
	} else {
		clear(p[0x30:0x60])
	}
	binary.LittleEndian.PutUint16(p[0x60:], uint16(len(p)))
	p[0x62] = typ
	clear(p[0x63:0x68])
	binary.LittleEndian.PutUint64(p[0x68:], gpa)
	d.ld = sha512.Sum384(p[:])
}

// normal adds the pages of b, a whole number of pages, from gpa on.
func (d *digest) normal(gpa uint64, b []byte) {
	for off := 0; off < len(b); off += PageSize {
		h := sha512.Sum384(b[off : off+PageSize])
		d.extend(pageNormal, gpa+uint64(off), &h)
	}
}

// empty adds size bytes of pages of type typ, whose contents are not
// measured, from gpa on.
func (d *digest) empty(typ byte, gpa, size uint64) {
	for off := uint64(0); off < size; off += PageSize {
		d.extend(typ, gpa+off, nil)
	}
}

// MeasureSNP computes the SEV-SNP launch digest of a guest launched with
// opts. Errors name the missing piece (*MissingError) or the bad option.
func MeasureSNP(opts SNPOptions) (Measurement, error) {
	f := opts.Firmware
	switch {
	case f == nil:
		return Measurement{}, &MissingError{Piece: "the firmware", Reason: "every SEV-SNP launch starts with it"}
	case opts.VCPUs < 1 || opts.VCPUs > MaxVCPUs:
		return Measurement{}, fmt.Errorf("%d vCPUs: want 1 to %d", opts.VCPUs, MaxVCPUs)
	case opts.VMM != VMMQEMU && opts.VMM != VMMEC2:
		return Measurement{}, fmt.Errorf("unknown %v", opts.VMM)
	}
	var hashes []byte
	if opts.Boot != nil {
		var err error
		if hashes, err = hashesPage(f, opts.Boot); err != nil {
			return Measurement{}, err
		}
	}
	if opts.VCPUs > 1 && f.ResetEIP == 0 {
		return Measurement{}, &MissingError{Piece: "the firmware's SEV-ES reset block",
			Reason: fmt.Sprintf("application processors start there, and %d vCPUs have %d", opts.VCPUs, opts.VCPUs-1)}
	}

	var d digest
	d.normal(f.GPA, f.image)
	for _, s := range f.Sections {
		gpa, size := uint64(s.GPA), uint64(s.Size)
		switch s.Type {
		case SectionSNPSecMemory, SectionSVSMCAA:
			d.empty(pageZero, gpa, size)
		case SectionSNPSecrets:
			d.empty(pageSecrets, gpa, size)
		case SectionCPUID:
			if opts.VMM != VMMEC2 {
				d.empty(pageCPUID, gpa, size)
			}
		case SectionSNPKernelHashes:
			if hashes != nil {
				d.normal(gpa, hashes)
			} else {
				d.empty(pageZero, gpa, size)
			}
		}
	}
	if opts.VMM == VMMEC2 {
		// EC2's VMM hands the CPUID page over after every other section.
		for _, s := range f.Sections {
			if s.Type == SectionCPUID {
				d.empty(pageCPUID, uint64(s.GPA), uint64(s.Size))
			}
		}
	}

	features := opts.GuestFeatures | FeatureSNPActive
	bsp := sha512.Sum384(vmsaPage(resetEIP, opts.VCPUSignature, opts.VMM, features)[:])
	var ap [sha512.Size384]byte
	if opts.VCPUs > 1 {
		ap = sha512.Sum384(vmsaPage(f.ResetEIP, opts.VCPUSignature, opts.VMM, features)[:])
	}
	for i := range opts.VCPUs {
		if i == 0 {
			d.extend(pageVMSA, vmsaGPA, &bsp)
		} else {
			d.extend(pageVMSA, vmsaGPA, &ap)
		}
	}
	return Measurement(d.ld), nil
}

// GUIDs of the SEV hashes table QEMU fills for OVMF's direct kernel boot.
var (
	guidHashTable   = efiGUID("9438d606-4f22-4cc9-b479-a793d411fd21")
	guidHashKernel  = efiGUID("4de79437-abd2-427f-b835-d5b172d2045b")
	guidHashInitrd  = efiGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
	guidHashCmdline = efiGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
)

// HashesTable returns the SEV hashes table of a direct boot: a header
// (GUID, 2-byte length) and three entries (GUID, 2-byte length, SHA-256)
// for the command line with its terminating NUL, the initrd and the
// kernel, zero-padded to a multiple of 16 bytes. The length fields count
// the unpadded bytes.
func HashesTable(b *DirectBoot) []byte {
	const entryLen = guidSize + 2 + sha256.Size
	const tableLen = guidSize + 2 + 3*entryLen
	t := make([]byte, 0, (tableLen+15)&^15)
	t = append(t, guidHashTable[:]...)
	t = binary.LittleEndian.AppendUint16(t, tableLen)
	entry := func(g [guidSize]byte, h [sha256.Size]byte) {
		t = append(t, g[:]...)
		t = binary.LittleEndian.AppendUint16(t, entryLen)
		t = append(t, h[:]...)
	}
	entry(guidHashCmdline, sha256.Sum256(append([]byte(b.Cmdline), 0)))
	entry(guidHashInitrd, b.InitrdSHA256)
	entry(guidHashKernel, b.KernelSHA256)
	return t[:cap(t)]
}

// hashesPage returns the contents of the kernel hashes section for a
// direct boot: zero pages with the hashes table where the firmware
// expects it.
func hashesPage(f *Firmware, b *DirectBoot) ([]byte, error) {
	if f.HashesTableGPA == 0 {
		return nil, &MissingError{Piece: "the firmware's SEV hashes table",
			Reason: "the firmware cannot check a directly booted kernel, initrd and command line (use a firmware built with it, such as OVMF's AmdSev build)"}
	}
	s, ok := f.Section(SectionSNPKernelHashes)
	if !ok {
		return nil, &MissingError{Piece: "the firmware's SNP_KERNEL_HASHES section",
			Reason: "the hypervisor has no measured page to put the kernel hashes in"}
	}
	t := HashesTable(b)
	off := int64(f.HashesTableGPA) - int64(s.GPA)
	if off < 0 || off+int64(len(t)) > int64(s.Size) || int64(f.HashesTableSize) < int64(len(t)) {
		return nil, malformedFirmware("SEV hashes table at %#x, %d bytes, does not hold the %d-byte table inside the kernel hashes section at %#x, %d bytes",
			f.HashesTableGPA, f.HashesTableSize, len(t), s.GPA, s.Size)
	}
	page := make([]byte, s.Size)
	copy(page[off:], t)
	return page, nil
}
