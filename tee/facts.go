package tee

import "hvmon.dev/hvmon/attest"

// Facts are the fields of hardware evidence that policy rules check,
// decoded by evidence.PolicyHardware. They say nothing about whether the
// evidence is genuine: a policy reads them only for evidence that verified.
// Exactly one of SNP and TDX is set.
type Facts struct {
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
	Bootloader uint8
	TEE        uint8
	SNP        uint8
	Microcode  uint8
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
