// Package reportview lays out every field of a decoded report as a list of
// labelled lines, for hvmon show (text) and hvmon ui (HTML) alike, so that
// both show the same fields with the same labels and the same account of
// who vouches for each claim.
//
// Nothing here verifies anything: the fields are what the report says.
// Text from a report is passed through Printable, which quotes any string
// holding a rune that is not printable, so that it cannot drive a terminal
// or hide in a page.
package reportview

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"hvmon.dev/hvmon/attest"
)

// UnverifiedBanner is the first line of every human view of a report
// that has not been verified.
const UnverifiedBanner = "UNVERIFIED: use hvmon verify to check signatures"

// Field is one line of a report's view: a heading (Value empty and
// Heading set) or a name and its value, at a nesting depth (0 for the
// report, 1 for the host observations and guest evidence, 2 for a
// region's fields).
type Field struct {
	Depth   int    `json:"depth"`
	Name    string `json:"name"`
	Value   string `json:"value,omitempty"`
	Heading bool   `json:"heading,omitempty"`
}

// Fields returns every field of in, in the order hvmon show prints them,
// without the banner.
func Fields(in *attest.Inspection) []Field {
	var fs []Field
	field := func(depth int, name, value string) { fs = append(fs, Field{Depth: depth, Name: name, Value: value}) }
	heading := func(depth int, name string) { fs = append(fs, Field{Depth: depth, Name: name, Heading: true}) }
	claims := func(depth int, cs []attest.Claim, origin string) {
		if len(cs) == 0 {
			field(depth, "claims", "0")
		} else {
			field(depth, "claims", fmt.Sprintf("%d (%s)", len(cs), origin))
		}
		for _, c := range cs {
			heading(depth, "region "+Printable(c.Region.ID))
			in := depth + 2
			field(in, "size", strconv.FormatUint(c.Region.Size, 10))
			field(in, "root", c.Snapshot.Root.String())
			field(in, "source", OrNone(Printable(c.Region.Source)))
			if c.Region.Address != nil {
				field(in, "address", fmt.Sprintf("%#x", *c.Region.Address))
			}
			if c.Region.Protection != "" {
				field(in, "protection", Printable(c.Region.Protection))
			}
			if c.Region.Description != "" {
				field(in, "description", Printable(c.Region.Description))
			}
			field(in, "taken at", TimeString(c.Snapshot.TakenAt))
		}
	}
	r := in.Report
	field(0, "report hash", in.ReportHash.String())
	field(0, "content type", Printable(in.Type))
	field(0, "algorithm", AlgName(in.Alg))
	field(0, "event", Printable(string(r.Event)))
	field(0, "workload", VMNameText(r.Workload))
	outer, guest := attest.Origins(r, in.Guest)
	field(0, "platform", platformText(r.Platform, outer))
	field(0, "attester key id", r.Attester.KeyID.String())
	field(0, "attester name", OrNone(Printable(r.Attester.Name)))
	field(0, "seq", strconv.FormatUint(r.Seq, 10))
	field(0, "prev", DigestOrNone(r.Prev))
	field(0, "issued", TimeString(r.IssuedAt))
	field(0, "expires", TimeString(r.ExpiresAt))
	field(0, "nonce", fmt.Sprintf("%x", []byte(r.Nonce)))
	claims(0, r.Claims, originText(outer, nil))
	if h := r.Host; h != nil {
		heading(0, "host observations")
		field(1, "host", Printable(h.Host))
		field(1, "event at", h.EventAt.UTC().Format(time.RFC3339Nano))
		field(1, "agent", Printable(string(h.Agent)))
		if h.Detail != "" {
			field(1, "detail", Printable(h.Detail))
		}
		keys := make([]string, 0, len(h.Facts))
		for k := range h.Facts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(1, "fact "+Printable(k), Printable(h.Facts[k]))
		}
	}
	if g := in.Guest; g != nil {
		heading(0, "guest evidence")
		field(1, "hash", DigestOrNone(in.GuestHash))
		field(1, "guest key id", attest.KeyIDOf(g.GuestKey).String())
		field(1, "vm", VMNameText(g.VM))
		field(1, "event", Printable(string(g.Event)))
		field(1, "platform", guestPlatformText(g))
		field(1, "issued", TimeString(g.IssuedAt))
		field(1, "evidence age", fmt.Sprintf("%s (the report's issued-at minus this)", r.IssuedAt.Sub(g.IssuedAt)))
		field(1, "seq", strconv.FormatUint(g.Seq, 10))
		field(1, "prev", DigestOrNone(g.Prev))
		field(1, "nonce", fmt.Sprintf("%x", []byte(g.Nonce)))
		if hw := g.Hardware; hw != nil {
			field(1, "hardware", fmt.Sprintf("%s, %d-byte report, %d certificate(s)", Printable(string(hw.Type)), len(hw.Report), len(hw.Certs)))
		} else {
			field(1, "hardware", "(none)")
		}
		claims(1, g.Claims, originText(guest, g.Hardware))
	}
	return fs
}

// VMNameText shows a VM name; one outside the VM name rule is quoted in
// ASCII, so that a look-alike letter or a trailing space is visible.
func VMNameText(name string) string {
	if attest.ValidVMName(name) {
		return name
	}
	return strconv.QuoteToASCII(name) + " (not a valid VM name: docs/FORMAT.md §6.1)"
}

// platformText shows a report's platform for what it is: in a host report
// a label other than "host" is only the host's word.
func platformText(pl attest.Platform, outer attest.Origin) string {
	if outer == attest.OriginHost && pl != attest.PlatformHost {
		return Printable(string(pl)) + " (a label the host wrote: no evidence backs it)"
	}
	return Printable(string(pl))
}

// guestPlatformText shows guest evidence's platform with what backs it.
// (Decoding already refused a TEE platform without hardware evidence of
// that type.)
func guestPlatformText(g *attest.GuestEvidence) string {
	if g.Hardware == nil {
		return Printable(string(g.Platform)) + " (no hardware evidence: the guest key is vouched for by the host alone)"
	}
	return Printable(string(g.Platform)) + " (with hardware evidence; not verified here)"
}

// originText says who vouches for a set of claims.
func originText(o attest.Origin, hw *attest.HardwareEvidence) string {
	switch o {
	case attest.OriginHardware:
		return fmt.Sprintf("measured by the guest, backed by %s hardware evidence if it verifies", Printable(string(hw.Type)))
	case attest.OriginGuestUnbacked:
		return "measured by the guest without hardware evidence: the host's word"
	case attest.OriginHost:
		return "host-measured: the host's word"
	default:
		return "the signer's own measurement"
	}
}

// AlgName names a COSE algorithm, saying when it is not the one hvmon
// verifies.
func AlgName(alg int64) string {
	if alg == int64(attest.AlgMLDSA65) {
		return fmt.Sprintf("%d (ML-DSA-65)", alg)
	}
	return fmt.Sprintf("%d (not ML-DSA-65: verify will refuse it)", alg)
}

// TimeString formats a report time: UTC, RFC 3339, seconds.
func TimeString(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// DigestOrNone shows an optional digest.
func DigestOrNone(d *attest.Digest) string {
	if d == nil {
		return "(none)"
	}
	return d.String()
}

// OrNone shows an optional string.
func OrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Printable returns s unchanged when every rune of it is printable, and
// quoted with escapes otherwise, so that text from an unverified report
// cannot drive the terminal.
func Printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}
