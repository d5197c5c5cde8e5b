package attest

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Profiles (EAT "eat_profile", claim 265). A profile names the payload type
// and its format version; a verifier of version 1 rejects any other value.
const (
	profileReport        = "tag:hvmon.dev,2026:report/v1"
	profileGuestEvidence = "tag:hvmon.dev,2026:guest-evidence/v1"
)

// Content types carried in the COSE "typ" header (RFC 9596). They keep a
// guest evidence signature from ever being accepted as a report and the
// other way round.
const (
	typeReport        = "application/hvmon-report+cbor"
	typeGuestEvidence = "application/hvmon-guest-evidence+cbor"
)

// Named bounds. Every decoder checks them before it trusts a length.
const (
	MaxReportSize = 1 << 20 // bytes of one encoded COSE_Sign1 (report or guest evidence)
	MaxRegions    = 1024    // claims per report or guest evidence
	maxCerts      = 8       // certificates in one hardware evidence
	MaxFacts      = 64      // host observation facts
	maxTextLen    = 1024    // bytes of any text field
	minNonce      = MinNonceSize
	maxNonce      = MaxNonceSize
)

// Nonce bounds (RFC 9711 §4.1): every report and guest evidence answers a
// nonce of MinNonceSize to MaxNonceSize bytes.
const (
	MinNonceSize = 8
	MaxNonceSize = 64
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		Sort:          cbor.SortCoreDeterministic, // RFC 8949 §4.2.1
		IndefLength:   cbor.IndefLengthForbidden,
		NilContainers: cbor.NilContainerAsEmpty,
		ShortestFloat: cbor.ShortestFloat16,
	}.EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  MaxRegions,
		MaxMapPairs:       MaxFacts,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// decodeCanonical decodes data into v and requires that v encodes back to
// exactly data. That one rule rejects trailing bytes, non-shortest
// integers and lengths, unsorted maps, empty optional fields that should be
// absent, missing required fields and anything the struct does not name.
func decodeCanonical(what string, data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return malformed(what, "invalid CBOR", err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return malformed(what, "cannot re-encode", err)
	}
	if !bytes.Equal(again, data) {
		return malformed(what, "not in deterministic CBOR encoding (RFC 8949 §4.2.1) or a required field is missing", nil)
	}
	return nil
}

// protectedHeader is the only protected header hvmon writes or accepts.
type protectedHeader struct {
	Alg int64  `cbor:"1,keyasint"`
	Kid []byte `cbor:"4,keyasint"`
	Typ string `cbor:"16,keyasint"`
}

type wireIdentity struct {
	Kid  []byte `cbor:"kid"`
	Name string `cbor:"name,omitempty"`
}

type wireRegion struct {
	ID          string  `cbor:"id"`
	Description string  `cbor:"description,omitempty"`
	Address     *uint64 `cbor:"address,omitempty"`
	Size        uint64  `cbor:"size"`
	Protection  string  `cbor:"protection,omitempty"`
	Source      string  `cbor:"source,omitempty"`
}

type wireSnapshot struct {
	Region   string      `cbor:"region"`
	Root     []byte      `cbor:"root"`
	Size     uint64      `cbor:"size"`
	TakenAt  int64       `cbor:"taken_at"`
	PageSize uint32      `cbor:"page_size"`
	Mode     string      `cbor:"mode,omitempty"`
	Changed  [][2]uint64 `cbor:"changed,omitempty"`
}

// MaxChangedRanges bounds a snapshot's changed-page list.
const MaxChangedRanges = 256

type wireClaim struct {
	Region   wireRegion   `cbor:"region"`
	Snapshot wireSnapshot `cbor:"snapshot"`
	Workload string       `cbor:"workload"`
	Platform string       `cbor:"platform"`
}

type wireObservations struct {
	Host      string            `cbor:"host"`
	EventAtMS int64             `cbor:"event_at_ms"`
	Agent     string            `cbor:"agent"`
	Detail    string            `cbor:"detail,omitempty"`
	Facts     map[string]string `cbor:"facts,omitempty"`
}

type wireReport struct {
	Exp      int64             `cbor:"4,keyasint"`
	Iat      int64             `cbor:"6,keyasint"`
	Nonce    []byte            `cbor:"10,keyasint"`
	Profile  string            `cbor:"265,keyasint"`
	Attester wireIdentity      `cbor:"attester"`
	Claims   []wireClaim       `cbor:"claims"`
	Event    string            `cbor:"event"`
	Guest    []byte            `cbor:"guest,omitempty"`
	Host     *wireObservations `cbor:"host,omitempty"`
	Platform string            `cbor:"platform"`
	Prev     []byte            `cbor:"prev,omitempty"`
	Seq      uint64            `cbor:"seq"`
	Workload string            `cbor:"workload"`
}

type wireHardware struct {
	Type   string   `cbor:"type"`
	Report []byte   `cbor:"report"`
	Certs  [][]byte `cbor:"certs,omitempty"`
}

type wireGuest struct {
	Iat      int64         `cbor:"6,keyasint"`
	Nonce    []byte        `cbor:"10,keyasint"`
	Profile  string        `cbor:"265,keyasint"`
	Claims   []wireClaim   `cbor:"claims"`
	Event    string        `cbor:"event"`
	GuestKey []byte        `cbor:"guest_key"`
	Hardware *wireHardware `cbor:"hardware,omitempty"`
	Platform string        `cbor:"platform"`
	Prev     []byte        `cbor:"prev,omitempty"`
	Seq      uint64        `cbor:"seq"`
	VM       string        `cbor:"vm"`
}

// ---- Go model -> wire ----

func claimsToWire(cs []Claim) []wireClaim {
	out := make([]wireClaim, len(cs))
	for i, c := range cs {
		out[i] = wireClaim{
			Region: wireRegion{
				ID: c.Region.ID, Description: c.Region.Description, Address: c.Region.Address,
				Size: c.Region.Size, Protection: c.Region.Protection, Source: c.Region.Source,
			},
			Snapshot: wireSnapshot{
				Region: c.Snapshot.RegionID, Root: bytes.Clone(c.Snapshot.Root[:]), Size: c.Snapshot.Size,
				TakenAt: c.Snapshot.TakenAt.Unix(), PageSize: c.Snapshot.PageSize, Mode: c.Snapshot.Mode,
				Changed: changedToWire(c.Snapshot.Changed),
			},
			Workload: c.Workload,
			Platform: string(c.Platform),
		}
	}
	return out
}

func changedToWire(rs []PageRange) [][2]uint64 {
	if len(rs) == 0 {
		return nil
	}
	out := make([][2]uint64, len(rs))
	for i, r := range rs {
		out[i] = [2]uint64{uint64(r.First), uint64(r.Last)}
	}
	return out
}

// changedFromWire checks that ranges are sorted, disjoint, not adjacent
// and inside the region.
func changedFromWire(what, id string, ws [][2]uint64, size uint64) ([]PageRange, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	if len(ws) > MaxChangedRanges {
		return nil, malformed(what, fmt.Sprintf("claim %q: more than %d changed ranges", id, MaxChangedRanges), nil)
	}
	pages := (size + pageSize - 1) / pageSize
	out := make([]PageRange, len(ws))
	for i, w := range ws {
		if w[0] > w[1] || w[1] >= pages || (i > 0 && w[0] <= ws[i-1][1]+1) {
			return nil, malformed(what, fmt.Sprintf("claim %q: changed range %d-%d is out of order or outside %d pages", id, w[0], w[1], pages), nil)
		}
		out[i] = PageRange{First: int64(w[0]), Last: int64(w[1])}
	}
	return out, nil
}

func digestPtrToWire(d *Digest) []byte {
	if d == nil {
		return nil
	}
	return bytes.Clone(d[:])
}

func (r *Report) toWire() *wireReport {
	w := &wireReport{
		Exp: r.ExpiresAt.Unix(), Iat: r.IssuedAt.Unix(), Nonce: r.Nonce, Profile: profileReport,
		Attester: wireIdentity{Kid: bytes.Clone(r.Attester.KeyID[:]), Name: r.Attester.Name},
		Claims:   claimsToWire(r.Claims),
		Event:    string(r.Event), Guest: r.Guest, Platform: string(r.Platform),
		Prev: digestPtrToWire(r.Prev), Seq: r.Seq, Workload: r.Workload,
	}
	if o := r.Host; o != nil {
		w.Host = &wireObservations{Host: o.Host, EventAtMS: o.EventAt.UnixMilli(), Agent: string(o.Agent), Detail: o.Detail, Facts: o.Facts}
	}
	return w
}

func (g *GuestEvidence) toWire() *wireGuest {
	w := &wireGuest{
		Iat: g.IssuedAt.Unix(), Nonce: g.Nonce, Profile: profileGuestEvidence,
		Claims: claimsToWire(g.Claims), Event: string(g.Event), GuestKey: g.GuestKey,
		Platform: string(g.Platform), Prev: digestPtrToWire(g.Prev), Seq: g.Seq, VM: g.VM,
	}
	if h := g.Hardware; h != nil {
		w.Hardware = &wireHardware{Type: string(h.Type), Report: h.Report}
		for _, c := range h.Certs {
			w.Hardware.Certs = append(w.Hardware.Certs, c)
		}
	}
	return w
}

// ---- wire -> Go model, with the semantic rules of docs/FORMAT.md ----

func toDigest(what, field string, b []byte) (Digest, error) {
	var d Digest
	if len(b) != len(d) {
		return d, malformed(what, fmt.Sprintf("%s must be %d bytes, got %d", field, len(d), len(b)), nil)
	}
	copy(d[:], b)
	return d, nil
}

func optDigest(what, field string, b []byte) (*Digest, error) {
	if b == nil {
		return nil, nil
	}
	d, err := toDigest(what, field, b)
	return &d, err
}

func checkText(what, field, s string, required bool) error {
	if required && s == "" {
		return malformed(what, field+" is empty", nil)
	}
	if len(s) > maxTextLen {
		return malformed(what, fmt.Sprintf("%s longer than %d bytes", field, maxTextLen), nil)
	}
	return nil
}

func checkNonce(what string, n []byte) error {
	if len(n) < minNonce || len(n) > maxNonce {
		return malformed(what, fmt.Sprintf("nonce must be %d to %d bytes, got %d", minNonce, maxNonce, len(n)), nil)
	}
	return nil
}

func checkEvent(what, e string) (Event, error) {
	if !Event(e).Valid() {
		return "", malformed(what, fmt.Sprintf("unknown event %q", e), nil)
	}
	return Event(e), nil
}

// checkAgentStatus accepts the six agent statuses of docs/FORMAT.md §7.5.
func checkAgentStatus(what, s string) (AgentStatus, error) {
	if err := checkText(what, "agent status", s, true); err != nil {
		return "", err // bounds the text the message below quotes
	}
	if !AgentStatus(s).Valid() {
		return "", malformed(what, fmt.Sprintf("unknown agent status %+q (docs/FORMAT.md §7.5 allows %s)", s, agentStatusList()), nil)
	}
	return AgentStatus(s), nil
}

// agentStatusList names the valid agent statuses for messages.
func agentStatusList() string {
	names := make([]string, len(agentStatuses))
	for i, s := range agentStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func checkPlatform(what, field, p string) (Platform, error) {
	if !Platform(p).Valid() {
		return "", malformed(what, fmt.Sprintf("%s %q is not a platform token", field, p), nil)
	}
	return Platform(p), nil
}

// claimsFromWire converts claims and enforces: every region is valid, the
// snapshot names its region, sizes agree, the page size is measure's, and
// workload and platform equal the enclosing object's. Duplicate ids are
// checked by the caller across all claims of a report.
func claimsFromWire(what string, ws []wireClaim, workload string, platform Platform) ([]Claim, error) {
	if len(ws) > MaxRegions {
		return nil, malformed(what, fmt.Sprintf("more than %d claims", MaxRegions), nil)
	}
	out := make([]Claim, len(ws))
	for i, w := range ws {
		r := Region{
			ID: w.Region.ID, Description: w.Region.Description, Address: w.Region.Address,
			Size: w.Region.Size, Protection: w.Region.Protection, Source: w.Region.Source,
		}
		if err := r.Validate(); err != nil {
			return nil, malformed(what, fmt.Sprintf("claim %d", i), err)
		}
		root, err := toDigest(what, fmt.Sprintf("claim %q root", r.ID), w.Snapshot.Root)
		if err != nil {
			return nil, err
		}
		switch {
		case w.Snapshot.TakenAt < 0:
			return nil, malformed(what, fmt.Sprintf("claim %q: negative taken_at", r.ID), nil)
		case w.Snapshot.Region != r.ID:
			return nil, malformed(what, fmt.Sprintf("claim %q: snapshot is of region %q", r.ID, w.Snapshot.Region), nil)
		case w.Snapshot.Size != r.Size:
			return nil, malformed(what, fmt.Sprintf("claim %q: snapshot size %d, region size %d", r.ID, w.Snapshot.Size, r.Size), nil)
		case w.Snapshot.PageSize != pageSize:
			return nil, malformed(what, fmt.Sprintf("claim %q: page size %d, format version 1 requires %d", r.ID, w.Snapshot.PageSize, pageSize), nil)
		case w.Workload != workload:
			return nil, malformed(what, fmt.Sprintf("claim %q: workload %q disagrees with %q", r.ID, w.Workload, workload), nil)
		case Platform(w.Platform) != platform:
			return nil, malformed(what, fmt.Sprintf("claim %q: platform %q disagrees with %q", r.ID, w.Platform, platform), nil)
		}
		if err := checkText(what, "snapshot mode", w.Snapshot.Mode, false); err != nil {
			return nil, err
		}
		changed, err := changedFromWire(what, r.ID, w.Snapshot.Changed, r.Size)
		if err != nil {
			return nil, err
		}
		out[i] = Claim{
			Region: r,
			Snapshot: Snapshot{
				RegionID: r.ID, Root: root, Size: w.Snapshot.Size,
				TakenAt: time.Unix(w.Snapshot.TakenAt, 0).UTC(), PageSize: w.Snapshot.PageSize,
				Mode: w.Snapshot.Mode, Changed: changed,
			},
			Workload: w.Workload, Platform: Platform(w.Platform),
		}
	}
	return out, nil
}

func decodeReport(payload []byte) (*Report, error) {
	const what = "report payload"
	if len(payload) > MaxReportSize {
		return nil, malformed(what, fmt.Sprintf("larger than %d bytes", MaxReportSize), nil)
	}
	var w wireReport
	if err := decodeCanonical(what, payload, &w); err != nil {
		return nil, err
	}
	if w.Profile != profileReport {
		return nil, malformed(what, fmt.Sprintf("profile %q, want %q", w.Profile, profileReport), nil)
	}
	if err := checkNonce(what, w.Nonce); err != nil {
		return nil, err
	}
	if w.Iat < 0 {
		return nil, malformed(what, "negative issued-at", nil)
	}
	if w.Exp <= w.Iat {
		return nil, malformed(what, fmt.Sprintf("expires-at %d is not after issued-at %d", w.Exp, w.Iat), nil)
	}
	ev, err := checkEvent(what, w.Event)
	if err != nil {
		return nil, err
	}
	pl, err := checkPlatform(what, "platform", w.Platform)
	if err != nil {
		return nil, err
	}
	if err := checkText(what, "workload", w.Workload, true); err != nil {
		return nil, err
	}
	if err := checkText(what, "attester name", w.Attester.Name, false); err != nil {
		return nil, err
	}
	kid, err := toDigest(what, "attester kid", w.Attester.Kid)
	if err != nil {
		return nil, err
	}
	prev, err := optDigest(what, "prev", w.Prev)
	if err != nil {
		return nil, err
	}
	claims, err := claimsFromWire(what, w.Claims, w.Workload, pl)
	if err != nil {
		return nil, err
	}
	r := &Report{
		IssuedAt: time.Unix(w.Iat, 0).UTC(), ExpiresAt: time.Unix(w.Exp, 0).UTC(),
		Nonce: w.Nonce, Event: ev, Workload: w.Workload, Platform: pl,
		Attester: Identity{KeyID: kid, Name: w.Attester.Name},
		Seq:      w.Seq, Prev: prev, Claims: claims, Guest: w.Guest,
	}
	if o := w.Host; o != nil {
		if err := checkText(what, "host name", o.Host, true); err != nil {
			return nil, err
		}
		agent, err := checkAgentStatus(what, o.Agent)
		if err != nil {
			return nil, err
		}
		if err := checkText(what, "detail", o.Detail, false); err != nil {
			return nil, err
		}
		for k, v := range o.Facts {
			if err := checkText(what, "fact name", k, true); err != nil {
				return nil, err
			}
			if err := checkText(what, "fact "+k, v, false); err != nil {
				return nil, err
			}
		}
		r.Host = &Observations{Host: o.Host, EventAt: time.UnixMilli(o.EventAtMS).UTC(), Agent: agent, Detail: o.Detail, Facts: o.Facts}
	}
	if err := uniqueRegions(what, r.Claims); err != nil {
		return nil, err
	}
	return r, nil
}

func decodeGuestEvidence(payload []byte) (*GuestEvidence, error) {
	const what = "guest evidence payload"
	if len(payload) > MaxReportSize {
		return nil, malformed(what, fmt.Sprintf("larger than %d bytes", MaxReportSize), nil)
	}
	var w wireGuest
	if err := decodeCanonical(what, payload, &w); err != nil {
		return nil, err
	}
	if w.Profile != profileGuestEvidence {
		return nil, malformed(what, fmt.Sprintf("profile %q, want %q", w.Profile, profileGuestEvidence), nil)
	}
	if err := checkNonce(what, w.Nonce); err != nil {
		return nil, err
	}
	if w.Iat < 0 {
		return nil, malformed(what, "negative issued-at", nil)
	}
	ev, err := checkEvent(what, w.Event)
	if err != nil {
		return nil, err
	}
	pl, err := checkPlatform(what, "platform", w.Platform)
	if err != nil {
		return nil, err
	}
	if err := checkText(what, "vm", w.VM, true); err != nil {
		return nil, err
	}
	if len(w.GuestKey) != publicKeySize {
		return nil, malformed(what, fmt.Sprintf("guest key must be %d bytes, got %d", publicKeySize, len(w.GuestKey)), nil)
	}
	prev, err := optDigest(what, "prev", w.Prev)
	if err != nil {
		return nil, err
	}
	claims, err := claimsFromWire(what, w.Claims, w.VM, pl)
	if err != nil {
		return nil, err
	}
	if err := uniqueRegions(what, claims); err != nil {
		return nil, err
	}
	g := &GuestEvidence{
		IssuedAt: time.Unix(w.Iat, 0).UTC(), Nonce: w.Nonce, Event: ev, VM: w.VM, Platform: pl,
		Claims: claims, GuestKey: w.GuestKey, Seq: w.Seq, Prev: prev,
	}
	if h := w.Hardware; h != nil {
		ht, err := checkPlatform(what, "hardware type", h.Type)
		if err != nil {
			return nil, err
		}
		if len(h.Certs) > maxCerts {
			return nil, malformed(what, fmt.Sprintf("more than %d certificates", maxCerts), nil)
		}
		g.Hardware = &HardwareEvidence{Type: ht, Report: h.Report}
		for _, c := range h.Certs {
			g.Hardware.Certs = append(g.Hardware.Certs, c)
		}
	}
	// The platform names what backs the evidence, and nothing else: a
	// label the hardware does not back must not reach a verifier's or a
	// reader's eyes (docs/FORMAT.md §8).
	switch {
	case g.Hardware == nil && pl != PlatformNone:
		return nil, malformed(what, fmt.Sprintf("platform %q without hardware evidence (only platform %q may have none)", pl, PlatformNone), nil)
	case g.Hardware != nil && pl == PlatformNone:
		return nil, malformed(what, fmt.Sprintf("platform %q with %s hardware evidence", pl, g.Hardware.Type), nil)
	case g.Hardware != nil && g.Hardware.Type != pl:
		return nil, malformed(what, fmt.Sprintf("hardware evidence of type %q under platform %q", g.Hardware.Type, pl), nil)
	}
	return g, nil
}

func uniqueRegions(what string, cs []Claim) error {
	seen := make(map[string]bool, len(cs))
	for _, c := range cs {
		if seen[c.Region.ID] {
			return malformed(what, fmt.Sprintf("duplicate region id %q", c.Region.ID), nil)
		}
		seen[c.Region.ID] = true
	}
	return nil
}
