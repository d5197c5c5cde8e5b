// Package launch computes, from the launch inputs alone, the launch
// measurement a confidential VM's hardware will report: hvmon's way to
// pin reference values without trusting the first report it sees.
//
// # AMD SEV-SNP
//
// [MeasureSNP] computes the launch digest the AMD Secure Processor holds
// after SNP_LAUNCH_FINISH, the MEASUREMENT field of every attestation
// report of the guest, as the hypervisor builds the guest with QEMU (or
// EC2's VMM) and OVMF. It follows the "SEV Secure Nested Paging Firmware
// ABI Specification" (AMD publication 56860, revision 1.55), chapter 8,
// SNP_LAUNCH_UPDATE: the PAGE_INFO structure and the launch digest it
// extends, one SHA-384 over each page's PAGE_INFO; and the SEV-ES state
// save area (VMSA) of the "AMD64 Architecture Programmer's Manual, Volume
// 2" (publication 24593), appendix B, table B-4. The pages, in the order
// the hypervisor issues SNP_LAUNCH_UPDATE:
//
//  1. every 4 KiB page of the firmware image, mapped to end at 4 GiB, as a
//     NORMAL page;
//  2. the sections of the firmware's SEV metadata (OVMF's "ASEV" table,
//     found through its GUIDed footer table), in the firmware's order:
//     SNP_SEC_MEMORY and SVSM CAA as ZERO pages, SECRETS as a SECRETS page,
//     CPUID as a CPUID page (for EC2 after all other sections), and the
//     kernel hashes section as a NORMAL page holding the SEV hashes table
//     of kernel, initrd and command line when the guest boots a kernel
//     directly, as a ZERO page otherwise. A firmware without SEV metadata
//     (Debian 12's OVMF builds) has no such pages: its digest covers the
//     image and the VMSAs, though its guest cannot boot under SEV-SNP;
//  3. one VMSA page per vCPU at the guest-physical address
//     0xFFFFFFFFF000: the boot processor starts at the architectural reset
//     vector (CS base 0xFFFF0000, RIP 0xFFF0), the application processors
//     at the address of the firmware's SEV-ES reset block (CS base its
//     upper 16 bits, RIP its lower 16), every one with the vCPU type's
//     CPUID signature in RDX and the guest features in SEV_FEATURES (bit
//     0, SNPActive, always set).
//
// The SEV hashes table is the one QEMU's direct kernel boot fills for OVMF
// (a GUIDed table of SHA-256 digests of the kernel image, the initrd and
// the NUL-terminated command line, padded to 16 bytes), placed where the
// firmware's footer table says. A firmware without that table, or without
// a kernel hashes section, cannot measure a direct kernel boot: asking for
// one is an error that names the missing piece ([MissingError]).
//
// The VMM types are QEMU on upstream Linux KVM (which sets x87 FCW 0x37F
// and MXCSR 0x1F80 in the VMSA; the out-of-tree SNP host kernels before it
// left them zero) with the vCPU signature in RDX, and EC2 with the
// conventions its VMM was published with at its SEV-SNP launch in 2023 (no
// FPU defaults, RDX 0, other segment attributes, the CPUID page last). EC2
// has changed its initial VMSA since, and hvmon has no vector for the newer
// state: check an EC2 measurement against a real report before pinning it.
// vCPU types are QEMU's EPYC models ([VCPUTypes]).
//
// Not covered: SEV and SEV-ES launch digests (SHA-256 of the image), an
// SVSM below OVMF, IGVM files, ID blocks and author keys, and VMPL
// permissions other than zero.
//
// # Intel TDX
//
// Not covered. MRTD follows from a TDVF image's TDX metadata (Intel TDX
// Virtual Firmware Design Guide: the metadata's sections and the
// TDH.MEM.PAGE.ADD and TDH.MR.EXTEND they imply), but hvmon found no
// published vector, with the firmware image it was computed from, in a
// reference implementation's test data to check an implementation against
// (Debian 12's OVMF has no TDX metadata), so it offers none.
//
// The package does no I/O: callers hand it the firmware, kernel and initrd
// bytes.
package launch
