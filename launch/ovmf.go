package launch

import (
	"encoding/binary"
	"fmt"

	"hvmon.dev/hvmon/attest"
)

// Bounds of the firmware parser.
const (
	// PageSize is the granularity of SNP_LAUNCH_UPDATE.
	PageSize = 4096
	// MaxFirmwareSize bounds the firmware image: it is mapped below 4 GiB
	// and real OVMF images are 2 to 8 MiB.
	MaxFirmwareSize = 64 << 20
	// maxSections bounds the SEV metadata's section count.
	maxSections = 64

	// footerOffset is where the GUIDed table's footer ends: OVMF keeps
	// the last 32 bytes of the image for the reset vector.
	footerOffset = 32
	guidSize     = 16
	entryHeader  = 2 + guidSize // length, then GUID, at the end of an entry
)

// GUIDs of OVMF's footer table and of the entries hvmon reads, in the byte
// order they have in the image (EFI's: the first three fields little-endian).
var (
	guidFooterTable    = efiGUID("96b582de-1fb2-45f7-baea-a366c55a082d")
	guidSEVMetadata    = efiGUID("dc886566-984a-4798-a75e-5585a7bf67cc")
	guidSEVESReset     = efiGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidSEVHashesTable = efiGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
)

// SectionType is the type of a section in the firmware's SEV metadata.
type SectionType uint32

// The section types OVMF's SEV metadata defines.
const (
	SectionSNPSecMemory    SectionType = 1
	SectionSNPSecrets      SectionType = 2
	SectionCPUID           SectionType = 3
	SectionSVSMCAA         SectionType = 4
	SectionSNPKernelHashes SectionType = 0x10
)

func (t SectionType) String() string {
	switch t {
	case SectionSNPSecMemory:
		return "SNP_SEC_MEMORY"
	case SectionSNPSecrets:
		return "SNP_SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionSNPKernelHashes:
		return "SNP_KERNEL_HASHES"
	}
	return fmt.Sprintf("section type %#x", uint32(t))
}

// Section is one entry of the firmware's SEV metadata: a guest-physical
// range the hypervisor prepares before launch.
type Section struct {
	GPA  uint32
	Size uint32
	Type SectionType
}

// Firmware is an OVMF image with the parts of its footer table that the
// SEV-SNP launch measurement depends on.
type Firmware struct {
	image []byte

	// GPA is where the image starts: it is mapped to end at 4 GiB.
	GPA uint64
	// HasMetadata says whether the image has SEV metadata. Without it the
	// hypervisor measures the image and the VMSAs only (Debian 12's OVMF
	// builds are such images); an SEV-SNP guest needs the metadata's
	// secrets and CPUID pages to boot.
	HasMetadata bool
	// Sections are the SEV metadata sections, in the image's order.
	Sections []Section
	// ResetEIP is the entry point of application processors from the
	// SEV-ES reset block; zero when the image has none.
	ResetEIP uint32
	// HashesTableGPA and HashesTableSize locate the SEV hashes table for
	// direct kernel boot; zero when the image has none.
	HashesTableGPA, HashesTableSize uint32
}

// Size is the image's length in bytes.
func (f *Firmware) Size() int { return len(f.image) }

// Section returns the first section of type t.
func (f *Firmware) Section(t SectionType) (Section, bool) {
	for _, s := range f.Sections {
		if s.Type == t {
			return s, true
		}
	}
	return Section{}, false
}

func malformedFirmware(format string, args ...any) error {
	return &attest.MalformedError{What: "OVMF firmware", Reason: fmt.Sprintf(format, args...)}
}

// ParseFirmware parses an OVMF image: its GUIDed footer table, the SEV
// metadata it points to, the SEV-ES reset block and the SEV hashes table
// location. Errors are *attest.MalformedError (they match
// attest.ErrMalformed). The image is kept, not copied: callers must not
// change it while the Firmware is in use.
func ParseFirmware(image []byte) (*Firmware, error) {
	n := len(image)
	switch {
	case n == 0:
		return nil, malformedFirmware("empty image")
	case n > MaxFirmwareSize:
		return nil, malformedFirmware("%d bytes, more than the %d the parser accepts", n, MaxFirmwareSize)
	case n%PageSize != 0:
		return nil, malformedFirmware("%d bytes, not a whole number of %d-byte pages", n, PageSize)
	}
	f := &Firmware{image: image, GPA: 1<<32 - uint64(n)}
	entries, err := footerTable(image)
	if err != nil {
		return nil, err
	}
	if meta, ok := entries[string(guidSEVMetadata[:])]; ok {
		f.HasMetadata = true
		if err := f.parseMetadata(meta); err != nil {
			return nil, err
		}
	}
	if d, ok := entries[string(guidSEVESReset[:])]; ok {
		if len(d) < 4 {
			return nil, malformedFirmware("SEV-ES reset block entry holds %d bytes, want at least 4", len(d))
		}
		f.ResetEIP = binary.LittleEndian.Uint32(d)
	}
	if d, ok := entries[string(guidSEVHashesTable[:])]; ok {
		if len(d) < 8 {
			return nil, malformedFirmware("SEV hashes table entry holds %d bytes, want at least 8", len(d))
		}
		f.HashesTableGPA = binary.LittleEndian.Uint32(d)
		f.HashesTableSize = binary.LittleEndian.Uint32(d[4:])
	}
	return f, nil
}

// footerTable returns the data of each entry of the GUIDed table that ends
// just below the reset vector, by GUID. The table's footer is an entry of
// its own: its length covers the whole table. Entries run backwards from
// the footer, each ending in its 2-byte length (data and header
// included) and its GUID.
func footerTable(image []byte) (map[string][]byte, error) {
	end := len(image) - footerOffset
	if end < entryHeader {
		return nil, malformedFirmware("too small to hold a footer table")
	}
	if [guidSize]byte(image[end-guidSize:end]) != guidFooterTable {
		return nil, malformedFirmware("no GUIDed footer table before the reset vector")
	}
	total := int(binary.LittleEndian.Uint16(image[end-entryHeader:]))
	if total < entryHeader || total > end {
		return nil, malformedFirmware("footer table length %d outside [%d, %d]", total, entryHeader, end)
	}
	start := end - total
	entries := make(map[string][]byte)
	for pos := end - entryHeader; pos > start; {
		if pos-start < entryHeader {
			return nil, malformedFirmware("footer table entry at offset %#x is cut short", pos)
		}
		guid := string(image[pos-guidSize : pos])
		length := int(binary.LittleEndian.Uint16(image[pos-entryHeader:]))
		if length < entryHeader || length > pos-start {
			return nil, malformedFirmware("footer table entry at offset %#x has length %d outside [%d, %d]", pos, length, entryHeader, pos-start)
		}
		if _, dup := entries[guid]; dup {
			return nil, malformedFirmware("footer table holds GUID %x twice", guid)
		}
		entries[guid] = image[pos-length : pos-entryHeader]
		pos -= length
	}
	return entries, nil
}

// parseMetadata reads the SEV metadata (signature "ASEV", length, version,
// count, then 12-byte sections) at the offset from the end of the image
// that the footer table's entry gives.
func (f *Firmware) parseMetadata(entry []byte) error {
	if len(entry) < 4 {
		return malformedFirmware("SEV metadata entry holds %d bytes, want at least 4", len(entry))
	}
	n := len(f.image)
	off := int64(binary.LittleEndian.Uint32(entry))
	const header = 16
	if off > int64(n) || off < header {
		return malformedFirmware("SEV metadata offset %d from the end outside [%d, %d]", off, header, n)
	}
	m := f.image[n-int(off):]
	if string(m[:4]) != "ASEV" {
		return malformedFirmware("SEV metadata signature %q, want \"ASEV\"", m[:4])
	}
	length := binary.LittleEndian.Uint32(m[4:])
	version := binary.LittleEndian.Uint32(m[8:])
	count := binary.LittleEndian.Uint32(m[12:])
	if version != 1 {
		return malformedFirmware("SEV metadata version %d, want 1", version)
	}
	if count > maxSections {
		return malformedFirmware("SEV metadata has %d sections, more than %d", count, maxSections)
	}
	want := uint32(header + 12*count)
	if length < want || int64(length) > off {
		return malformedFirmware("SEV metadata length %d: %d sections need %d bytes and %d remain in the image", length, count, want, off)
	}
	for i := range int(count) {
		b := m[header+12*i:]
		s := Section{
			GPA:  binary.LittleEndian.Uint32(b),
			Size: binary.LittleEndian.Uint32(b[4:]),
			Type: SectionType(binary.LittleEndian.Uint32(b[8:])),
		}
		switch s.Type {
		case SectionSNPSecMemory, SectionSNPSecrets, SectionCPUID, SectionSVSMCAA, SectionSNPKernelHashes:
		default:
			return malformedFirmware("SEV metadata section %d has unknown %v", i, s.Type)
		}
		if s.GPA%PageSize != 0 || s.Size == 0 || s.Size%PageSize != 0 {
			return malformedFirmware("SEV metadata section %d (%v) at %#x, %d bytes: not whole pages", i, s.Type, s.GPA, s.Size)
		}
		if uint64(s.GPA)+uint64(s.Size) > 1<<32 {
			return malformedFirmware("SEV metadata section %d (%v) at %#x, %d bytes: crosses 4 GiB", i, s.Type, s.GPA, s.Size)
		}
		f.Sections = append(f.Sections, s)
	}
	return nil
}

// efiGUID encodes a GUID in its textual form as EFI stores it.
func efiGUID(s string) [guidSize]byte {
	var g [guidSize]byte
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	if len(hex) != 32 {
		panic("launch: bad GUID " + s)
	}
	for i := range g {
		var b byte
		for _, c := range hex[2*i : 2*i+2] {
			b <<= 4
			switch {
			case c >= '0' && c <= '9':
				b |= c - '0'
			case c >= 'a' && c <= 'f':
				b |= c - 'a' + 10
			default:
				panic("launch: bad GUID " + s)
			}
		}
		g[i] = b
	}
	// The first three fields (4, 2 and 2 bytes) are little-endian.
	g[0], g[1], g[2], g[3] = g[3], g[2], g[1], g[0]
	g[4], g[5] = g[5], g[4]
	g[6], g[7] = g[7], g[6]
	return g
}
