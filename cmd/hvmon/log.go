package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
)

func (a *app) logCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "log list|show|verify",
		Short: "Read the daemon's report store",
		Long: `Read the reports the daemon stored under its data directory, without the
daemon: list them, print one, or verify them all with their chains.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", host.DefaultDataDir, "report store `DIR`")
	open := func() (*host.FileStore, error) {
		s, err := host.NewFileStore(dataDir)
		if err != nil {
			return nil, configErr(err)
		}
		return s, nil
	}

	var (
		vm, event string
		limit     int
		asJSON    bool
	)
	list := &cobra.Command{
		Use:   "list [--vm NAME] [--event EVENT] [--limit N] [--json]",
		Short: "List stored reports, oldest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			es, err := s.List(cmd.Context(), host.Query{VM: vm, Event: attest.Event(event), Limit: limit})
			if err != nil {
				return configErr(err)
			}
			if asJSON {
				out := make([]host.APIEntry, len(es))
				for i, e := range es {
					out[i] = host.APIEntry{VM: e.VM, Time: e.Time, Seq: e.Seq, Event: e.Event, Hash: e.Hash}
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tVM\tSEQ\tEVENT\tHASH")
			for _, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Time.Format(time.RFC3339Nano), printable(e.VM), e.Seq, e.Event, e.Hash)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&vm, "vm", "", "only reports of VM `NAME`")
	list.Flags().StringVar(&event, "event", "", "only reports of `EVENT`")
	list.Flags().IntVar(&limit, "limit", 0, "only the newest `N` reports")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var showAsJSON bool
	show := &cobra.Command{
		Use:   "show [--json] HASH",
		Short: "Print a stored report without verifying it",
		Args:  exactArgs(1, "the HASH of a stored report"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			h, err := parseDigest("hash", args[0])
			if err != nil {
				return err
			}
			b, _, err := s.Get(cmd.Context(), h)
			if err != nil {
				return configErr(err)
			}
			in, err := attest.Inspect(b)
			if err != nil {
				return err
			}
			if showAsJSON {
				return writeJSON(a.stdout, showJSON{Verified: false, Inspection: in})
			}
			return writeShowText(a.stdout, in)
		},
	}
	show.Flags().BoolVar(&showAsJSON, "json", false, "print JSON")

	var (
		trust []string
		ev    evidenceSettings
	)
	verify := &cobra.Command{
		Use:   "verify --trust PUB [--vm NAME]",
		Short: "Verify every stored report and each VM's host chain",
		Long: `Verify every stored report (signature under a --trust key, format,
guest evidence, and freshness as of the report's own issued-at) and each
VM's host chain: seq counts up by one and prev names the previous report.

A report without guest evidence (the agent was unavailable, or the VM shut
down) is authentic but attests no memory; it is listed as NO EVIDENCE and
does not fail the run. Exit codes: 0 all authentic and chained; 2 a
malformed report; 3 a signature or trust failure; 5 a broken chain.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			var keys []*attest.PublicKey
			for _, p := range trust {
				k, err := keyfile.LoadPublic(p)
				if err != nil {
					return configErr(fmt.Errorf("--trust: %w", err))
				}
				keys = append(keys, k)
			}
			hw, err := ev.verifier()
			if err != nil {
				return configErr(err)
			}
			return a.verifyLog(cmd.Context(), s, vm, attest.VerifyOptions{TrustedKeys: keys, Evidence: hw})
		},
	}
	verify.Flags().StringArrayVar(&trust, "trust", nil, "trusted host public key `PUB`; repeat for several (required)")
	verify.Flags().StringVar(&vm, "vm", "", "only VM `NAME`")
	ev.flags(verify.Flags())
	verify.MarkFlagRequired("trust")

	cmd.AddCommand(list, show, verify)
	return cmd
}

// errChain is a broken host chain in the store.
var errChain = fmt.Errorf("%w: broken report chain", attest.ErrAppraisal)

func (a *app) verifyLog(ctx context.Context, s *host.FileStore, vm string, opts attest.VerifyOptions) error {
	es, err := s.List(ctx, host.Query{VM: vm})
	if err != nil {
		return configErr(err)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tSEQ\tEVENT\tVERDICT\tDETAIL")
	var worst error
	note := func(err error) {
		if worst == nil || exitCode(err) < exitCode(worst) && exitCode(err) != exitOK {
			worst = err
		}
	}
	last := map[string]attest.Digest{}
	lastSeq := map[string]uint64{}
	for _, e := range es {
		if ctx.Err() != nil {
			return configErr(errInterrupted)
		}
		b, err := readReportFile(e.Path) // a regular file, at most a report's size and one byte
		if err != nil {
			return configErr(err)
		}
		verdict, detail := "VALID", ""
		res, verr := verifyStored(b, opts)
		if verr == nil && attest.ReportHash(b) != e.Hash {
			verr = fmt.Errorf("%w: the file no longer hashes to the name it was stored under", attest.ErrSignature)
			res = &attest.Result{}
		}
		switch {
		case verr == nil:
			if g := res.Guest; g != nil {
				detail = fmt.Sprintf("guest seq %d, %d region(s)", g.Seq, len(g.Claims))
			}
		case errors.Is(verr, attest.ErrIncomplete) && res.Report != nil:
			verdict = "NO EVIDENCE"
			if h := res.Report.Host; h != nil {
				detail = "agent " + h.Agent + ": " + h.Detail
			}
		default:
			verdict, detail = "INVALID", verr.Error()
			note(verr)
		}
		if res.Report != nil {
			prev, seen := last[e.VM]
			r := res.Report
			switch {
			case !seen && r.Prev != nil && r.Seq == 0:
				verdict, detail = "INVALID", "first report links to an unknown predecessor"
				note(errChain)
			case seen && (r.Prev == nil || *r.Prev != prev || r.Seq != lastSeq[e.VM]+1):
				verdict, detail = "BROKEN CHAIN", fmt.Sprintf("seq %d after %d, prev %s", r.Seq, lastSeq[e.VM], digestOrNone(r.Prev))
				note(errChain)
			}
			last[e.VM], lastSeq[e.VM] = e.Hash, r.Seq
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", printable(e.VM), e.Seq, e.Event, verdict, printable(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d report(s) checked\n", len(es))
	return worst
}

// verifyStored verifies a stored report as of its own issued-at.
func verifyStored(b []byte, opts attest.VerifyOptions) (*attest.Result, error) {
	in, err := attest.Inspect(b)
	if err != nil {
		return &attest.Result{}, err
	}
	opts.Now = in.Report.IssuedAt
	return attest.Verify(b, opts)
}
