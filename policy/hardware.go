package policy

import (
	"hvmon.dev/hvmon/attest"
)

// Hardware is what appraisal needs from the TEE libraries, which package
// policy must not import (they pull in the network through their
// certificate fetchers). Package evidence implements it
// (evidence.PolicyHardware); tests may fake it.
type Hardware interface {
	// Verifier builds the offline evidence verifier for the policy's
	// hardware trust settings. It must never fetch anything.
	Verifier(t HardwareTrust) (attest.EvidenceVerifier, error)
	// Facts decodes hardware evidence into the fields the rules look at.
	// It verifies nothing: AppraiseResult calls it only on evidence that
	// attest.Verify has verified.
	Facts(hw *attest.HardwareEvidence) (*HardwareFacts, error)
}

// HardwareTrust is the policy's hardware_roots block, with the files read.
// Nil AMDRoots or IntelRoots mean the roots built into hvmon.
type HardwareTrust struct {
	AMDRoots       []PEMFile
	IntelRoots     []PEMFile
	AllowSimulated bool
	SimulatedRoots []PEMFile
	SimulatedSeed  []byte
}

// PEMFile is a certificate file named in a policy: its path as written
// (for messages) and its content.
type PEMFile struct {
	Name string
	Data []byte
}

// HardwareFacts are the fields of verified hardware evidence that the SEV-SNP
// and TDX rules check.
type HardwareFacts struct {
	Type      attest.Platform
	Simulated bool
	// Measurement is SEV-SNP MEASUREMENT (48 bytes) or TDX MR_TD (48 bytes).
	Measurement []byte
	// Debug: SEV-SNP guest policy DEBUG or TDX TD_ATTRIBUTES.DEBUG.
	Debug bool
	SNP   *SNPFacts
	TDX   *TDXFacts
}

// SNPFacts are the SEV-SNP report fields the rules check (after
// go-sev-guest's validate.Options and check.Policy).
type SNPFacts struct {
	Policy       uint64 // the raw guest policy
	SMT          bool   // guest policy: SMT allowed
	MigrateMA    bool   // guest policy: a migration agent may be associated
	ABIMajor     uint8  // guest policy: minimum ABI major version
	ABIMinor     uint8  // guest policy: minimum ABI minor version
	SingleSocket bool   // guest policy: single socket only
	// ReportedTCB is REPORTED_TCB split into its components (the Milan and
	// Genoa layout; for other product lines TCBKnown is false and only
	// ReportedTCBRaw is meaningful).
	ReportedTCB    TCBParts
	TCBKnown       bool
	ReportedTCBRaw uint64
	GuestSVN       uint32
	VMPL           uint32
	HostData       []byte // 32 bytes
	IDKeyDigest    []byte // 48 bytes: the ID key of the launch's ID block, zero without one
	Product        string // AMD product line, when known
	Signer         string // VCEK or VLEK
}

// TCBParts are the security patch levels of an SEV-SNP TCB version.
type TCBParts struct {
	Bootloader uint8 `hcl:"bootloader,optional"`
	TEE        uint8 `hcl:"tee,optional"`
	SNP        uint8 `hcl:"snp,optional"`
	Microcode  uint8 `hcl:"microcode,optional"`
}

// atLeast reports whether every component of t is at least min's.
func (t TCBParts) atLeast(min TCBParts) bool {
	return t.Bootloader >= min.Bootloader && t.TEE >= min.TEE && t.SNP >= min.SNP && t.Microcode >= min.Microcode
}

// TDXFacts are the TDX quote fields the rules check (after go-tdx-guest's
// validate.Options).
type TDXFacts struct {
	MRTD          []byte
	RTMRs         [4][]byte
	MRConfigID    []byte
	MROwner       []byte
	MROwnerConfig []byte
	MRSeam        []byte
	TDAttributes  uint64
	XFAM          uint64
	TEETCBSVN     []byte // 16 bytes
}
