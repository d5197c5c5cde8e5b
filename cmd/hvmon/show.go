package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/reportview"
)

// unverifiedBanner is the first line of every human "show" output.
const unverifiedBanner = reportview.UnverifiedBanner

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
	p.line(unverifiedBanner)
	for _, f := range reportview.Fields(in) {
		indent := strings.Repeat("  ", f.Depth)
		if f.Heading {
			if f.Depth == 0 && !strings.HasPrefix(f.Name, "region ") {
				p.line(f.Name + ":")
			} else {
				p.line(indent + "  " + f.Name)
			}
			continue
		}
		p.field(indent, f.Name, f.Value)
	}
	return p.err
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

// printable is reportview.Printable: text from a report, quoted when it
// holds a rune that is not printable.
func printable(s string) string { return reportview.Printable(s) }
