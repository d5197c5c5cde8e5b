package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
)

// unverifiedBanner is the first line of every human "show" output.
const unverifiedBanner = "UNVERIFIED: use hvmon verify to check signatures"

func (a *app) showCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show [--json] REPORT",
		Short: "Print a report's content without verifying it",
		Long: `Print every field of a report, read from REPORT or, with "-", from stdin.

The report is decoded as strictly as verify decodes it, but no signature,
key, time or nonce is checked: nothing shown is authenticated. Use it to
look at a report, and hvmon verify to decide anything about it.

Labels are shown for what backs them: a host report's own regions are
"the host's word" whatever platform they name, guest regions are "backed by
<type> hardware evidence" only when the guest evidence carries it (show
does not verify it), and guest evidence without hardware evidence is the
host's word too. The evidence age is the report's issued-at minus the
guest evidence's.

--json prints the decoded report as JSON with "verified": false, and the
same origins ("claims_origin", "guest_claims_origin") and
"evidence_age_seconds".

Exit codes: 0 decoded, 1 usage or I/O error, 2 malformed report.`,
		Args: exactArgs(1, `one REPORT file (or "-" for stdin)`),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.readReport(args[0])
			if err != nil {
				return err
			}
			in, err := attest.Inspect(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(args[0]), err)
			}
			if asJSON {
				v := showJSON{Verified: false, Inspection: in}
				v.ClaimsOrigin, v.GuestClaimsOrigin = attest.Origins(in.Report, in.Guest)
				if in.Guest != nil {
					age := int64(in.Report.IssuedAt.Sub(in.Guest.IssuedAt) / time.Second)
					v.EvidenceAgeSeconds = &age
				}
				err = writeJSON(a.stdout, v)
			} else {
				err = writeShowText(a.stdout, in)
			}
			return configErr(err)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print the decoded report as JSON, with "verified": false`)
	return cmd
}

// showJSON is the --json view of an inspection. Verified is always false:
// it is there so that no consumer mistakes the view for a verdict.
type showJSON struct {
	Verified bool `json:"verified"`
	*attest.Inspection
	// ClaimsOrigin and GuestClaimsOrigin say who vouches for the report's
	// own claims and for the guest evidence's (attest.Origins), assuming
	// hardware evidence present would verify.
	ClaimsOrigin       attest.Origin `json:"claims_origin"`
	GuestClaimsOrigin  attest.Origin `json:"guest_claims_origin,omitempty"`
	EvidenceAgeSeconds *int64        `json:"evidence_age_seconds,omitempty"`
}

func writeShowText(w io.Writer, in *attest.Inspection) error {
	p := &printer{w: w}
	r := in.Report
	p.line(unverifiedBanner)
	p.field("", "report hash", in.ReportHash.String())
	p.field("", "content type", printable(in.Type))
	p.field("", "algorithm", algName(in.Alg))
	p.field("", "event", printable(string(r.Event)))
	p.field("", "workload", vmNameText(r.Workload))
	outer, guest := attest.Origins(r, in.Guest)
	p.field("", "platform", platformText(r.Platform, outer))
	p.field("", "attester key id", r.Attester.KeyID.String())
	p.field("", "attester name", orNone(printable(r.Attester.Name)))
	p.field("", "seq", strconv.FormatUint(r.Seq, 10))
	p.field("", "prev", digestOrNone(r.Prev))
	p.field("", "issued", timeString(r.IssuedAt))
	p.field("", "expires", timeString(r.ExpiresAt))
	p.field("", "nonce", fmt.Sprintf("%x", []byte(r.Nonce)))
	p.claims("", r.Claims, originText(outer, nil))
	if h := r.Host; h != nil {
		p.line("host observations:")
		p.field("  ", "host", printable(h.Host))
		p.field("  ", "event at", h.EventAt.UTC().Format(time.RFC3339Nano))
		p.field("  ", "agent", printable(string(h.Agent)))
		if h.Detail != "" {
			p.field("  ", "detail", printable(h.Detail))
		}
		keys := make([]string, 0, len(h.Facts))
		for k := range h.Facts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p.field("  ", "fact "+printable(k), printable(h.Facts[k]))
		}
	}
	if g := in.Guest; g != nil {
		p.line("guest evidence:")
		p.field("  ", "hash", digestOrNone(in.GuestHash))
		p.field("  ", "guest key id", attest.KeyIDOf(g.GuestKey).String())
		p.field("  ", "vm", vmNameText(g.VM))
		p.field("  ", "event", printable(string(g.Event)))
		p.field("  ", "platform", guestPlatformText(g))
		p.field("  ", "issued", timeString(g.IssuedAt))
		p.field("  ", "evidence age", fmt.Sprintf("%s (the report's issued-at minus this)", r.IssuedAt.Sub(g.IssuedAt)))
		p.field("  ", "seq", strconv.FormatUint(g.Seq, 10))
		p.field("  ", "prev", digestOrNone(g.Prev))
		p.field("  ", "nonce", fmt.Sprintf("%x", []byte(g.Nonce)))
		if hw := g.Hardware; hw != nil {
			p.field("  ", "hardware", fmt.Sprintf("%s, %d-byte report, %d certificate(s)", printable(string(hw.Type)), len(hw.Report), len(hw.Certs)))
		} else {
			p.field("  ", "hardware", "(none)")
		}
		p.claims("  ", g.Claims, originText(guest, g.Hardware))
	}
	return p.err
}

// vmNameText shows a VM name; one outside the VM name rule is quoted in
// ASCII, so that a look-alike letter or a trailing space is visible.
func vmNameText(name string) string {
	if attest.ValidVMName(name) {
		return name
	}
	return strconv.QuoteToASCII(name) + " (not a valid VM name: docs/FORMAT.md §6.1)"
}

// platformText shows a report's platform for what it is: in a host report
// a label other than "host" is only the host's word.
func platformText(pl attest.Platform, outer attest.Origin) string {
	if outer == attest.OriginHost && pl != attest.PlatformHost {
		return printable(string(pl)) + " (a label the host wrote: no evidence backs it)"
	}
	return printable(string(pl))
}

// guestPlatformText shows guest evidence's platform with what backs it.
// (Decoding already refused a TEE platform without hardware evidence of
// that type.)
func guestPlatformText(g *attest.GuestEvidence) string {
	if g.Hardware == nil {
		return printable(string(g.Platform)) + " (no hardware evidence: the guest key is vouched for by the host alone)"
	}
	return printable(string(g.Platform)) + " (with hardware evidence; not verified here)"
}

// originText says who vouches for a set of claims.
func originText(o attest.Origin, hw *attest.HardwareEvidence) string {
	switch o {
	case attest.OriginHardware:
		return fmt.Sprintf("measured by the guest, backed by %s hardware evidence if it verifies", printable(string(hw.Type)))
	case attest.OriginGuestUnbacked:
		return "measured by the guest without hardware evidence: the host's word"
	case attest.OriginHost:
		return "host-measured: the host's word"
	default:
		return "the signer's own measurement"
	}
}

// printer writes aligned "name: value" lines and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(s string) {
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.w, s)
	}
}

func (p *printer) field(indent, name, value string) {
	p.line(fmt.Sprintf("%s%-*s %s", indent, 17-len(indent), name+":", value))
}

func (p *printer) claims(indent string, cs []attest.Claim, origin string) {
	if len(cs) == 0 {
		p.field(indent, "claims", "0")
	} else {
		p.field(indent, "claims", fmt.Sprintf("%d (%s)", len(cs), origin))
	}
	in := indent + "    "
	for _, c := range cs {
		p.line(fmt.Sprintf("%s  region %s", indent, printable(c.Region.ID)))
		p.field(in, "size", strconv.FormatUint(c.Region.Size, 10))
		p.field(in, "root", c.Snapshot.Root.String())
		p.field(in, "source", orNone(printable(c.Region.Source)))
		if c.Region.Address != nil {
			p.field(in, "address", fmt.Sprintf("%#x", *c.Region.Address))
		}
		if c.Region.Protection != "" {
			p.field(in, "protection", printable(c.Region.Protection))
		}
		if c.Region.Description != "" {
			p.field(in, "description", printable(c.Region.Description))
		}
		p.field(in, "taken at", timeString(c.Snapshot.TakenAt))
	}
}

func algName(alg int64) string {
	if alg == int64(attest.AlgMLDSA65) {
		return fmt.Sprintf("%d (ML-DSA-65)", alg)
	}
	return fmt.Sprintf("%d (not ML-DSA-65: verify will refuse it)", alg)
}

func timeString(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func digestOrNone(d *attest.Digest) string {
	if d == nil {
		return "(none)"
	}
	return d.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// printable returns s unchanged when every rune of it is printable, and
// quoted with escapes otherwise, so that text from an unverified report
// cannot drive the terminal.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}
