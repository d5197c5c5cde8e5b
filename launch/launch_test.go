package launch

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// pageInfo lays out PAGE_INFO byte by byte as the SEV-SNP firmware ABI
// specification's table gives it, independently of digest.extend.
func pageInfo(ld []byte, contents []byte, typ byte, gpa uint64) []byte {
	b := make([]byte, 0, 0x70)
	b = append(b, ld...)                          // 0x00 DIGEST_CUR
	b = append(b, contents...)                    // 0x30 CONTENTS
	b = binary.LittleEndian.AppendUint16(b, 0x70) // 0x60 LENGTH
	b = append(b, typ)                            // 0x62 PAGE_TYPE
	b = append(b, 0)                              // 0x63 IMI_PAGE
	b = append(b, 0, 0, 0, 0)                     // 0x64 VMPL3..1 perms, reserved
	b = binary.LittleEndian.AppendUint64(b, gpa)  // 0x68 GPA
	return b
}

// chain replays a launch as a list of (type, gpa, contents) pages.
type chain struct{ ld []byte }

func (c *chain) add(typ byte, gpa uint64, page []byte) {
	if c.ld == nil {
		c.ld = make([]byte, 48)
	}
	contents := make([]byte, 48)
	if page != nil {
		h := sha512.Sum384(page)
		contents = h[:]
	}
	h := sha512.Sum384(pageInfo(c.ld, contents, typ, gpa))
	c.ld = h[:]
}

func (c *chain) pages(typ byte, gpa uint64, size uint32, data []byte) {
	for off := uint64(0); off < uint64(size); off += PageSize {
		var p []byte
		if data != nil {
			p = data[off : off+PageSize]
		}
		c.add(typ, gpa+off, p)
	}
}

func TestMeasureSNPChain(t *testing.T) {
	img := amdSevLike.build()
	fw, err := ParseFirmware(img)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := VCPUSignature("EPYC-Genoa")
	boot := NewDirectBoot([]byte("kernel"), []byte("initrd"), "console=ttyS0")
	for _, tc := range []struct {
		name string
		vmm  VMM
		boot *DirectBoot
	}{{"qemu", VMMQEMU, nil}, {"qemu-kernel", VMMQEMU, boot}, {"ec2", VMMEC2, nil}, {"ec2-kernel", VMMEC2, boot}} {
		t.Run(tc.name, func(t *testing.T) {
			const vcpus = 3
			var c chain
			c.pages(pageNormal, 1<<32-uint64(len(img)), uint32(len(img)), img)
			for _, s := range amdSevLike.sections {
				switch s.Type {
				case SectionSNPSecMemory, SectionSVSMCAA:
					c.pages(pageZero, uint64(s.GPA), s.Size, nil)
				case SectionSNPSecrets:
					c.pages(pageSecrets, uint64(s.GPA), s.Size, nil)
				case SectionCPUID:
					if tc.vmm == VMMQEMU {
						c.pages(pageCPUID, uint64(s.GPA), s.Size, nil)
					}
				case SectionSNPKernelHashes:
					if tc.boot == nil {
						c.pages(pageZero, uint64(s.GPA), s.Size, nil)
						continue
					}
					page := make([]byte, PageSize)
					copy(page[0x400:], HashesTable(tc.boot))
					c.pages(pageNormal, uint64(s.GPA), s.Size, page)
				}
			}
			if tc.vmm == VMMEC2 {
				c.pages(pageCPUID, 0x80a000, PageSize, nil)
			}
			for i := range vcpus {
				eip := uint32(0xfffffff0)
				if i > 0 {
					eip = amdSevLike.resetEIP
				}
				c.add(pageVMSA, 0xfffffffff000, vmsaPage(eip, sig, tc.vmm, 0x5)[:])
			}
			got, err := MeasureSNP(SNPOptions{Firmware: fw, VCPUs: vcpus, VCPUSignature: sig, VMM: tc.vmm, GuestFeatures: 0x4, Boot: tc.boot})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:], c.ld) {
				t.Errorf("MeasureSNP = %s, the page-by-page replay gives %x", got, c.ld)
			}
		})
	}
}

func TestVMSARegisters(t *testing.T) {
	sig, _ := VCPUSignature("EPYC-Milan")
	u16 := func(p *[PageSize]byte, off int) uint16 { return binary.LittleEndian.Uint16(p[off:]) }
	u64 := func(p *[PageSize]byte, off int) uint64 { return binary.LittleEndian.Uint64(p[off:]) }
	bsp := vmsaPage(resetEIP, sig, VMMQEMU, 1)
	ap := vmsaPage(0x80b004, sig, VMMQEMU, 1)
	ec2 := vmsaPage(resetEIP, sig, VMMEC2, 1)
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"BSP CS base", u64(bsp, vmsaCS+8), 0xffff0000},
		{"BSP RIP", u64(bsp, vmsaRIP), 0xfff0},
		{"AP CS base", u64(ap, vmsaCS+8), 0x800000},
		{"AP RIP", u64(ap, vmsaRIP), 0xb004},
		{"CS selector", uint64(u16(ap, vmsaCS)), 0xf000},
		{"QEMU RDX", u64(bsp, vmsaRDX), 0xa00f11},
		{"QEMU MXCSR", uint64(binary.LittleEndian.Uint32(bsp[vmsaMXCSR:])), 0x1f80},
		{"QEMU FCW", uint64(u16(bsp, vmsaX87FCW)), 0x37f},
		{"EC2 RDX", u64(ec2, vmsaRDX), 0},
		{"EC2 BSP CS attributes", uint64(u16(ec2, vmsaCS+2)), 0x9a},
		{"EC2 SS attributes", uint64(u16(ec2, vmsaSS+2)), 0x92},
		{"EC2 MXCSR", uint64(binary.LittleEndian.Uint32(ec2[vmsaMXCSR:])), 0},
		{"SEV_FEATURES", u64(bsp, vmsaSEVFeatures), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
		}
	}
}

func TestVCPUSignature(t *testing.T) {
	for name, want := range map[string]uint32{
		"EPYC": 0x800f12, "EPYC-v4": 0x800f12, "EPYC-IBPB": 0x800f12,
		"EPYC-Rome": 0x830f10, "EPYC-Rome-v3": 0x830f10,
		"EPYC-Milan": 0xa00f11, "EPYC-Milan-v2": 0xa00f11,
		"EPYC-Genoa": 0xa10f10, "EPYC-Genoa-v1": 0xa10f10,
		"EPYC-Turin": 0xb00f00,
	} {
		got, err := VCPUSignature(name)
		if err != nil || got != want {
			t.Errorf("VCPUSignature(%q) = %#x, %v, want %#x", name, got, err, want)
		}
	}
	if _, err := VCPUSignature("EPYC-Milan-v9"); err == nil {
		t.Error("VCPUSignature(EPYC-Milan-v9) succeeded")
	}
}

func TestHashesTable(t *testing.T) {
	b := NewDirectBoot([]byte("k"), nil, "ro")
	tab := HashesTable(b)
	if len(tab) != 176 {
		t.Fatalf("len(HashesTable) = %d, want 176 (168 padded to 16)", len(tab))
	}
	if got := binary.LittleEndian.Uint16(tab[16:]); got != 168 {
		t.Errorf("table length field = %d, want 168", got)
	}
	cmd := sha256.Sum256([]byte("ro\x00"))
	initrd := sha256.Sum256(nil)
	kernel := sha256.Sum256([]byte("k"))
	for i, want := range [][]byte{cmd[:], initrd[:], kernel[:]} {
		e := tab[18+50*i:]
		if got := binary.LittleEndian.Uint16(e[16:]); got != 50 {
			t.Errorf("entry %d length = %d, want 50", i, got)
		}
		if !bytes.Equal(e[18:50], want) {
			t.Errorf("entry %d hash = %x, want %x", i, e[18:50], want)
		}
	}
	if !bytes.Equal(tab[168:], make([]byte, 8)) {
		t.Errorf("padding = %x, want zeros", tab[168:])
	}
}

func TestMissing(t *testing.T) {
	noHashes := amdSevLike
	noHashes.hashesGPA = 0
	noSection := amdSevLike
	noSection.sections = amdSevLike.sections[:4]
	noReset := amdSevLike
	noReset.resetEIP = 0
	boot := NewDirectBoot([]byte("k"), nil, "")
	for _, c := range []struct {
		name  string
		fw    testFirmware
		vcpus int
		boot  *DirectBoot
		piece string
	}{
		{"no hashes table", noHashes, 1, boot, "SEV hashes table"},
		{"no kernel hashes section", noSection, 1, boot, "SNP_KERNEL_HASHES"},
		{"no reset block", noReset, 2, nil, "SEV-ES reset block"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fw, err := ParseFirmware(c.fw.build())
			if err != nil {
				t.Fatal(err)
			}
			_, err = MeasureSNP(SNPOptions{Firmware: fw, VCPUs: c.vcpus, Boot: c.boot})
			var me *MissingError
			if !errors.Is(err, ErrMissing) || !errors.As(err, &me) || !strings.Contains(me.Piece, c.piece) {
				t.Fatalf("MeasureSNP = %v, want a MissingError naming %q", err, c.piece)
			}
		})
	}
	if _, err := MeasureSNP(SNPOptions{VCPUs: 1}); !errors.Is(err, ErrMissing) {
		t.Errorf("MeasureSNP without firmware = %v, want ErrMissing", err)
	}
	fw, _ := ParseFirmware(amdSevLike.build())
	for _, n := range []int{0, -1, MaxVCPUs + 1} {
		if _, err := MeasureSNP(SNPOptions{Firmware: fw, VCPUs: n}); err == nil {
			t.Errorf("MeasureSNP with %d vCPUs succeeded", n)
		}
	}
}

func TestParseFirmware(t *testing.T) {
	fw, err := ParseFirmware(amdSevLike.build())
	if err != nil {
		t.Fatal(err)
	}
	if !fw.HasMetadata || len(fw.Sections) != len(amdSevLike.sections) || fw.ResetEIP != 0x80b004 ||
		fw.HashesTableGPA != 0x80c400 || fw.HashesTableSize != 0x400 || fw.GPA != 1<<32-8*PageSize {
		t.Errorf("ParseFirmware = %+v", fw)
	}
	for i, s := range fw.Sections {
		if s != amdSevLike.sections[i] {
			t.Errorf("section %d = %+v, want %+v", i, s, amdSevLike.sections[i])
		}
	}
	bare := amdSevLike
	bare.noMetadata = true
	if fw, err := ParseFirmware(bare.build()); err != nil || fw.HasMetadata || len(fw.Sections) != 0 {
		t.Errorf("ParseFirmware(no metadata) = %+v, %v, want no sections", fw, err)
	}
}

func TestParseFirmwareMalformed(t *testing.T) {
	good := amdSevLike.build()
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	withSections := func(s ...Section) []byte {
		tf := amdSevLike
		tf.sections = s
		return tf.build()
	}
	badVersion := amdSevLike
	badVersion.metaVersion = 2
	end := len(good) - footerOffset
	for name, img := range map[string][]byte{
		"empty":             nil,
		"not pages":         good[:len(good)-1],
		"too large":         make([]byte, MaxFirmwareSize+PageSize),
		"no footer":         make([]byte, PageSize),
		"footer too long":   mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[end-18:], 0xffff); return b }),
		"footer too short":  mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[end-18:], 3); return b }),
		"entry too long":    mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[end-36:], 0x7000); return b }),
		"entry too short":   mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[end-36:], 1); return b }),
		"bad signature":     mod(func(b []byte) []byte { b[len(b)-2*PageSize] = 'X'; return b }),
		"bad version":       badVersion.build(),
		"unknown section":   withSections(Section{GPA: 0x1000, Size: 0x1000, Type: 9}),
		"unaligned section": withSections(Section{GPA: 0x1001, Size: 0x1000, Type: SectionSNPSecMemory}),
		"empty section":     withSections(Section{GPA: 0x1000, Size: 0, Type: SectionSNPSecMemory}),
		"section past 4G":   withSections(Section{GPA: 0xfffff000, Size: 0x2000, Type: SectionSNPSecMemory}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseFirmware(img)
			var me *attest.MalformedError
			if !errors.Is(err, attest.ErrMalformed) || !errors.As(err, &me) {
				t.Fatalf("ParseFirmware = %v, want a MalformedError", err)
			}
		})
	}
}
