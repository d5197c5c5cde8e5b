package launch

import (
	"encoding/binary"
	"fmt"
)

// VMM is the hypervisor whose register conventions the VMSA pages follow.
type VMM int

// The VMM types. The zero value is QEMU.
const (
	VMMQEMU VMM = iota // QEMU with KVM
	VMMEC2             // Amazon EC2's VMM
)

func (v VMM) String() string {
	switch v {
	case VMMQEMU:
		return "qemu"
	case VMMEC2:
		return "ec2"
	}
	return fmt.Sprintf("VMM(%d)", int(v))
}

// ParseVMM parses "qemu" or "ec2".
func ParseVMM(s string) (VMM, error) {
	switch s {
	case "qemu":
		return VMMQEMU, nil
	case "ec2":
		return VMMEC2, nil
	}
	return 0, fmt.Errorf("unknown VMM type %q (known: qemu, ec2)", s)
}

// resetEIP is the architectural reset vector, where the boot processor
// starts.
const resetEIP = 0xfffffff0

// Offsets in the SEV-ES state save area (AMD64 Architecture Programmer's
// Manual, Volume 2, table B-4).
const (
	vmsaES, vmsaCS, vmsaSS, vmsaDS, vmsaFS, vmsaGS = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
	vmsaGDTR, vmsaLDTR, vmsaIDTR, vmsaTR           = 0x60, 0x70, 0x80, 0x90
	vmsaEFER                                       = 0xd0
	vmsaCR4, vmsaCR0, vmsaDR7, vmsaDR6             = 0x148, 0x158, 0x160, 0x168
	vmsaRFLAGS, vmsaRIP                            = 0x170, 0x178
	vmsaGPAT                                       = 0x268
	vmsaRDX                                        = 0x310
	vmsaSEVFeatures                                = 0x3b0
	vmsaXCR0                                       = 0x3e8
	vmsaMXCSR                                      = 0x408
	vmsaX87FCW                                     = 0x410
)

// vmsaPage returns the initial VMSA of a vCPU that starts at eip.
func vmsaPage(eip uint32, sig uint32, vmm VMM, features uint64) *[PageSize]byte {
	var p [PageSize]byte
	seg := func(off int, sel, attr uint16, limit uint32, base uint64) {
		binary.LittleEndian.PutUint16(p[off:], sel)
		binary.LittleEndian.PutUint16(p[off+2:], attr)
		binary.LittleEndian.PutUint32(p[off+4:], limit)
		binary.LittleEndian.PutUint64(p[off+8:], base)
	}
	u64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(p[off:], v) }

	// Real mode after reset: CS selects the 64 KiB segment holding eip.
	csAttr, ssAttr, trAttr := uint16(0x9b), uint16(0x93), uint16(0x8b)
	rdx := uint64(sig)
	if vmm == VMMEC2 {
		if eip == resetEIP {
			csAttr = 0x9a
		}
		ssAttr, trAttr, rdx = 0x92, 0x83, 0
	}
	seg(vmsaES, 0, 0x93, 0xffff, 0)
	seg(vmsaCS, 0xf000, csAttr, 0xffff, uint64(eip&0xffff0000))
	seg(vmsaSS, 0, ssAttr, 0xffff, 0)
	seg(vmsaDS, 0, 0x93, 0xffff, 0)
	seg(vmsaFS, 0, 0x93, 0xffff, 0)
	seg(vmsaGS, 0, 0x93, 0xffff, 0)
	seg(vmsaGDTR, 0, 0, 0xffff, 0)
	seg(vmsaLDTR, 0, 0x82, 0xffff, 0)
	seg(vmsaIDTR, 0, 0, 0xffff, 0)
	seg(vmsaTR, 0, trAttr, 0xffff, 0)
	u64(vmsaEFER, 0x1000) // EFER.SVME, which KVM sets
	u64(vmsaCR4, 0x40)    // CR4.MCE, which KVM sets
	u64(vmsaCR0, 0x10)    // CR0.ET
	u64(vmsaDR7, 0x400)
	u64(vmsaDR6, 0xffff0ff0)
	u64(vmsaRFLAGS, 0x2)
	u64(vmsaRIP, uint64(eip&0xffff))
	u64(vmsaGPAT, 0x0007040600070406) // the PAT reset value
	u64(vmsaRDX, rdx)
	u64(vmsaSEVFeatures, features)
	u64(vmsaXCR0, 0x1)
	if vmm == VMMQEMU {
		binary.LittleEndian.PutUint32(p[vmsaMXCSR:], 0x1f80)
		binary.LittleEndian.PutUint16(p[vmsaX87FCW:], 0x37f)
	}
	return &p
}
