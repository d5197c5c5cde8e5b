package host

import (
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"hvmon.dev/hvmon/attest"
)

// Report assembly's bounds. What the host writes into a report's
// observations comes from the agent, QEMU, libvirt and API callers; this
// file is the one place that makes it fit the format (docs/FORMAT.md §7.5
// and §10), so that no input can make Sign refuse the report and cost the
// event its report (docs/ARCHITECTURE.md, "Report assembly").
const (
	// MaxObservedText is the bound of any text the host writes (detail,
	// fact names and values): the format's text bound.
	MaxObservedText = 1024
	// MaxObservedFacts is the format's bound on facts per report.
	MaxObservedFacts = attest.MaxFacts
)

// The host's own facts, kept first when a report has more facts than the
// format allows: what the host says about the report itself outranks what
// an event or an API caller brought.
var hostFacts = []string{
	"report_error", "rejected_evidence_hash", "rejected_evidence_size", "host_measure_error",
	"vm_uuid", "qemu", "qmp_status", "libvirt_event", "shutdown_reason", "job_id", "job_type",
	"snapshot", "restore_from", "migration_status", "libvirt_hooks", "libvirt_hook_xml_sha3",
}

// factsDropped names the fact that says which facts a report could not
// hold.
const factsDropped = "facts_dropped"

// fitText returns s as a text the format accepts and a terminal shows as
// written. Bytes that are not UTF-8 become \xNN, and control characters
// (C0, DEL, C1) and Unicode's bidirectional controls become \xNN or \uNNNN,
// so a report cannot carry terminal escapes or text that reads backwards.
// A text longer than MaxObservedText bytes keeps its start, cut at a
// character boundary. A text that changed in any way ends in a marker with
// the original's length and SHA3-256, e.g.
//
//	… [truncated from 1048576 bytes, sha3-256 6b1f…]
//	 [escaped from 23 bytes, sha3-256 9a0c…]
//
// so that whoever holds the original can show it is the one the host saw.
// A text that needed no change is returned as it is.
func fitText(s string) string {
	clean, escaped := escapeText(s)
	if !escaped && len(clean) <= MaxObservedText {
		return s
	}
	sum := sha3.Sum256([]byte(s))
	digest := hex.EncodeToString(sum[:])
	marker := fmt.Sprintf(" [escaped from %d bytes, sha3-256 %s]", len(s), digest)
	if len(clean)+len(marker) > MaxObservedText {
		// Too long, or too long once escaped and marked.
		marker = fmt.Sprintf("… [truncated from %d bytes, sha3-256 %s]", len(s), digest)
		clean = cutAtRune(clean, MaxObservedText-len(marker))
	}
	return clean + marker
}

// escapeText escapes what fitText does not let through, and says whether
// it changed anything.
func escapeText(s string) (string, bool) {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune) {
		return s, false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String(), true
}

// unsafeRune: control characters and the bidirectional embeddings,
// overrides and isolates (U+202A–U+202E, U+2066–U+2069), and the
// left-to-right and right-to-left marks.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f
}

// cutAtRune returns the longest prefix of s of at most n bytes that ends
// at a character boundary.
func cutAtRune(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fitFacts returns facts as the format accepts them: names and values
// through fitText, names that are empty dropped, and at most
// MaxObservedFacts entries. When there are more, the host's own facts
// (hostFacts, in that order) come first, then the others in byte order of
// their names, and the last entry is facts_dropped: how many were dropped
// and their names (itself through fitText). The name facts_dropped is the
// host's: a fact of that name from elsewhere is dropped.
func fitFacts(facts map[string]string) map[string]string {
	if len(facts) == 0 {
		return nil
	}
	names := make([]string, 0, len(facts))
	for k := range facts {
		if !slices.Contains(hostFacts, k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	order := make([]string, 0, len(facts))
	for _, k := range hostFacts {
		if _, ok := facts[k]; ok {
			order = append(order, k)
		}
	}
	order = append(order, names...)
	out := make(map[string]string, min(len(order), MaxObservedFacts))
	var dropped []string
	for i, k := range order {
		if len(out) == MaxObservedFacts-1 && (i < len(order)-1 || len(dropped) > 0) {
			// One entry left: it goes to the note of what was dropped.
			dropped = append(dropped, order[i:]...)
			break
		}
		fk := fitText(k)
		if _, taken := out[fk]; taken || k == "" || k == factsDropped {
			dropped = append(dropped, k)
			continue
		}
		out[fk] = fitText(facts[k])
	}
	if len(dropped) > 0 {
		for i, k := range dropped {
			dropped[i] = strconv.Quote(k)
		}
		out[factsDropped] = fitText(fmt.Sprintf("%d fact(s) dropped: %s", len(dropped), strings.Join(dropped, ",")))
	}
	return out
}

// fitObservations makes the host's observations fit the format.
func fitObservations(o *attest.Observations) {
	o.Host = fitText(o.Host)
	o.Detail = fitText(o.Detail)
	o.Facts = fitFacts(o.Facts)
}

// signReport signs rep. When the full report cannot be signed, it signs a
// smaller one for the same event that says why, rather than leave the
// event without a report:
//
//  1. guest evidence too large to embed (the report would exceed
//     attest.MaxReportSize) is left out, and the report says
//     "bad-evidence" with the evidence's hash and size;
//  2. any other refusal gives a report with the host's observations only:
//     no claims, no guest evidence, fact report_error saying why.
//
// rep, which must carry observations, is changed to what was signed. Only
// when even that cannot be signed
// (a broken signer, an invalid workload or host name, which New and Add
// refuse) does signReport fail.
func signReport(s attest.Signer, rep *attest.Report) ([]byte, error) {
	if rep.Host == nil {
		return nil, errors.New("host: a report without observations")
	}
	fitObservations(rep.Host)
	signed, err := attest.Sign(s, rep, nil)
	if err == nil {
		return signed, nil
	}
	if rep.Guest != nil && errors.Is(err, attest.ErrTooLarge) {
		leaveOutGuest(rep, fmt.Sprintf("guest evidence of %d bytes does not fit in a signed report of at most %d bytes", len(rep.Guest), attest.MaxReportSize))
		if signed, err = attest.Sign(s, rep, nil); err == nil {
			return signed, nil
		}
	}
	full := err
	if rep.Guest != nil {
		leaveOutGuest(rep, "the host could not sign a report around the guest evidence")
	}
	keep := map[string]string{"report_error": "the full report could not be signed: " + full.Error()}
	for _, k := range []string{"rejected_evidence_hash", "rejected_evidence_size"} {
		if v, ok := rep.Host.Facts[k]; ok {
			keep[k] = v
		}
	}
	rep.Host.Facts = keep
	rep.Claims = nil
	fitObservations(rep.Host)
	signed, err = attest.Sign(s, rep, nil)
	if err != nil {
		return nil, fmt.Errorf("host: cannot sign even a report without claims (%w) after the full report failed: %v", err, full)
	}
	return signed, nil
}

// leaveOutGuest removes the guest evidence from rep, and records it as
// rejected: status bad-evidence, the reason, its hash and its size.
func leaveOutGuest(rep *attest.Report, why string) {
	o := rep.Host
	if o.Facts == nil {
		o.Facts = map[string]string{}
	}
	o.Facts["rejected_evidence_hash"] = attest.ReportHash(rep.Guest).String()
	o.Facts["rejected_evidence_size"] = strconv.Itoa(len(rep.Guest))
	o.Agent, o.Detail = attest.AgentBadEvidence, why
	rep.Guest = nil
	fitObservations(o)
}

// ErrBadIdentifier is returned by New and Add for a host or VM name that
// no report could carry: empty, longer than 1024 bytes, or not UTF-8
// (docs/FORMAT.md §6, §7.5). Names are signed as they are, never fitted.
var ErrBadIdentifier = errors.New("host: name cannot be carried by a report")

func checkReportText(what, s string) error {
	if s == "" || len(s) > MaxObservedText || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q must be 1 to %d bytes of UTF-8", ErrBadIdentifier, what, cutAtRune(s, 64), MaxObservedText)
	}
	return nil
}
