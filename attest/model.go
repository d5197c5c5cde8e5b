package attest

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"hvmon.dev/hvmon/measure"
)

// Digest is a SHA3-256 value: a region root, a key id or a report hash.
// It renders as lower-case hex in JSON.
type Digest = measure.Digest

// ParseDigest parses a digest written as exactly 64 hex digits.
func ParseDigest(s string) (Digest, error) { return measure.ParseDigest(s) }

// HexBytes is a byte string that renders as lower-case hex in JSON.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (b HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(b)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *HexBytes) UnmarshalText(text []byte) error {
	out, err := hex.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("not hex: %w", err)
	}
	*b = out
	return nil
}

// Event is the lifecycle event a report answers.
type Event string

// The events of format version 1. No other value is valid.
const (
	EventBoot       Event = "boot"
	EventMigrateOut Event = "migrate-out"
	EventMigrateIn  Event = "migrate-in"
	EventSnapshot   Event = "snapshot"
	EventRestore    Event = "restore"
	EventPeriodic   Event = "periodic"
	EventOnDemand   Event = "on-demand"
	EventShutdown   Event = "shutdown"
)

// events are the valid Events, in the order Events returns them.
var events = [...]Event{
	EventBoot, EventMigrateOut, EventMigrateIn, EventSnapshot,
	EventRestore, EventPeriodic, EventOnDemand, EventShutdown,
}

// Events returns every valid Event in a fixed order, in a new slice the
// caller may keep or change.
func Events() []Event { return slices.Clone(events[:]) }

// Valid reports whether e is one of Events.
func (e Event) Valid() bool { return slices.Contains(events[:], e) }

// AgentStatus says what became of the host's request to the guest agent
// for guest evidence (docs/FORMAT.md §7.5). The six values below are the
// only valid ones: Sign refuses to sign another, and Verify and Inspect
// reject a report that carries another as malformed.
type AgentStatus string

// The agent statuses of format version 1.
const (
	AgentOK          AgentStatus = "ok"           // the agent answered with guest evidence
	AgentUnavailable AgentStatus = "unavailable"  // no connection to the agent
	AgentTimeout     AgentStatus = "timeout"      // the agent did not answer in time
	AgentError       AgentStatus = "error"        // the agent answered with a protocol error
	AgentBadEvidence AgentStatus = "bad-evidence" // the agent's evidence failed the host's check
	AgentNone        AgentStatus = "none"         // the host did not ask: no agent configured, or the guest is gone
)

// agentStatuses are the valid AgentStatus values.
var agentStatuses = [...]AgentStatus{AgentOK, AgentUnavailable, AgentTimeout, AgentError, AgentBadEvidence, AgentNone}

// Valid reports whether s is one of the six agent statuses.
func (s AgentStatus) Valid() bool { return slices.Contains(agentStatuses[:], s) }

// Platform names the backend or hardware a measurement came from: "file",
// "memory", "sev-snp", "tdx", "simulated-sev-snp", "simulated-tdx", "none",
// "host". It is a token of 1 to 32 characters [a-z0-9-].
type Platform string

// PlatformHost marks what a host supervisor measured or reported itself.
const PlatformHost Platform = "host"

// PlatformNone is the platform of guest evidence without hardware
// evidence (an agent outside a TEE). Guest evidence of any other platform
// carries hardware evidence of exactly that type (docs/FORMAT.md §8).
const PlatformNone Platform = "none"

// Valid reports whether p is a well-formed platform token:
// [a-z0-9][a-z0-9-]{0,31}.
func (p Platform) Valid() bool {
	return validToken(string(p), 32, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }, "-")
}

// regionIDRule is the region id syntax: 1 to 64 characters, printable and
// unambiguous on a command line (no '=', so ID=VALUE flags parse).
const regionIDRule = "[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}"

// ValidRegionID reports whether id matches regionIDRule.
func ValidRegionID(id string) bool {
	return validToken(id, 64, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}, "._:/-")
}

// validToken checks a string of 1 to max bytes whose first byte satisfies
// first and whose other bytes satisfy first or are in more. (Hand-written
// rather than a regexp: it runs for every claim of every verification.)
func validToken(s string, max int, first func(byte) bool, more string) bool {
	if len(s) == 0 || len(s) > max || !first(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !first(c) && strings.IndexByte(more, c) < 0 {
			return false
		}
	}
	return true
}

// Region describes a range of memory (or a file standing in for it) whose
// content is attested.
type Region struct {
	ID          string  `json:"id"`
	Description string  `json:"description,omitempty"`
	Address     *uint64 `json:"address,omitempty"` // guest-physical or virtual base, when meaningful
	Size        uint64  `json:"size"`
	Protection  string  `json:"protection,omitempty"` // "RO", "RW", ... free text, at most 16 characters
	Source      string  `json:"source,omitempty"`     // where the bytes come from: "file:/path", "pid:123:weights", ...
}

// Validate checks a region definition against the format's bounds.
func (r Region) Validate() error {
	switch {
	case !ValidRegionID(r.ID):
		return &InvalidRegionError{ID: r.ID, Reason: "id must match " + regionIDRule}
	case len(r.Description) > maxTextLen:
		return &InvalidRegionError{ID: r.ID, Reason: fmt.Sprintf("description longer than %d bytes", maxTextLen)}
	case len(r.Protection) > 16:
		return &InvalidRegionError{ID: r.ID, Reason: "protection longer than 16 bytes"}
	case len(r.Source) > maxTextLen:
		return &InvalidRegionError{ID: r.ID, Reason: fmt.Sprintf("source longer than %d bytes", maxTextLen)}
	case r.Address != nil && r.Size > 0 && *r.Address+r.Size-1 < *r.Address:
		return &InvalidRegionError{ID: r.ID, Reason: "address + size overflows 64 bits"}
	}
	return nil
}

// Snapshot is the fingerprint of one region at one moment: the root of the
// region's page tree (see package measure).
type Snapshot struct {
	RegionID string    `json:"region_id"`
	Root     Digest    `json:"root"`
	Size     uint64    `json:"size"`
	TakenAt  time.Time `json:"taken_at"`
	PageSize uint32    `json:"page_size"`
	// Mode says how the measurer measured: "full", "incremental", or
	// "full-fallback: <reason>". Empty when it did not say.
	Mode string `json:"mode,omitempty"`
	// Changed lists the pages whose leaves differ from the measurer's
	// previous measurement of this region (nil when it had none, or none
	// differ). It is the measurer's statement, signed with the rest: a
	// verifier uses it to say which pages drifted, never to decide whether.
	Changed []PageRange `json:"changed,omitempty"`
}

// PageRange is a run of pages, First to Last inclusive, numbered from 0.
type PageRange = measure.PageRange

// Claim is one statement about one region: its definition and snapshot,
// made by a workload on a platform. Workload and Platform must equal the
// report's (or the guest evidence's) own.
type Claim struct {
	Region   Region   `json:"region"`
	Snapshot Snapshot `json:"snapshot"`
	Workload string   `json:"workload"`
	Platform Platform `json:"platform"`
}

// Identity names the signer of a report.
type Identity struct {
	KeyID Digest `json:"key_id"`         // SHA3-256 of the raw ML-DSA-65 public key
	Name  string `json:"name,omitempty"` // a label (host name, attester name); not authenticated beyond the signature
}

// Report is the payload of a signed hvmon report.
//
// A report either carries claims measured by its signer (the file and
// memory backends, host-measured VMs), or embeds guest evidence whose claims
// the guest made, or both; region ids are unique across the two.
type Report struct {
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Nonce     HexBytes  `json:"nonce"`
	Event     Event     `json:"event"`
	Workload  string    `json:"workload"` // VM or workload identifier
	Platform  Platform  `json:"platform"`
	Attester  Identity  `json:"attester"`
	Seq       uint64    `json:"seq"`
	Prev      *Digest   `json:"prev,omitempty"` // ReportHash of the signer's previous report for this workload
	Claims    []Claim   `json:"claims"`

	// Guest is the guest evidence COSE_Sign1, exactly as the agent
	// returned it, when the report has one.
	Guest HexBytes `json:"-"`
	// Host holds the host's observations of the event, when a host
	// supervisor made the report.
	Host *Observations `json:"host,omitempty"`
}

// Observations is what the host saw of an event.
type Observations struct {
	Host    string            `json:"host"`             // host name
	EventAt time.Time         `json:"event_at"`         // when the host saw the lifecycle event (millisecond precision)
	Agent   AgentStatus       `json:"agent"`            // what became of the request for guest evidence
	Detail  string            `json:"detail,omitempty"` // why the agent status is not ok
	Facts   map[string]string `json:"facts,omitempty"`  // qemu version, vm uuid, migration peer, snapshot tag, ...
}

// GuestEvidence is the payload of the guest agent's COSE_Sign1. Its
// REPORT_DATA binding is defined by GuestReportData.
type GuestEvidence struct {
	IssuedAt time.Time `json:"issued_at"`
	Nonce    HexBytes  `json:"nonce"`
	Event    Event     `json:"event"`
	VM       string    `json:"vm"`
	Platform Platform  `json:"platform"`
	Claims   []Claim   `json:"claims"`
	GuestKey HexBytes  `json:"guest_key"` // raw ML-DSA-65 public key of the agent
	Seq      uint64    `json:"seq"`
	Prev     *Digest   `json:"prev,omitempty"` // hash of the previous guest evidence this agent signed
	// Hardware is the TEE report or quote requested with GuestReportData;
	// nil for platform "none".
	Hardware *HardwareEvidence `json:"hardware,omitempty"`
}

// HardwareEvidence is a raw TEE attestation with the certificates needed to
// verify it offline.
type HardwareEvidence struct {
	Type   Platform   `json:"type"`   // "sev-snp", "tdx", "simulated-sev-snp", "simulated-tdx"
	Report HexBytes   `json:"report"` // SNP ATTESTATION_REPORT or TDX quote, as returned by the hardware
	Certs  []HexBytes `json:"certs,omitempty"`
}
