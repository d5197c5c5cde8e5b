package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/internal/storeaudit"
)

func (a *app) logCmd() *cobra.Command {
	var loc daemonLocation
	cmd := &cobra.Command{
		Use:   "log list|show|verify|consistency|audit",
		Short: "Read the daemon's report store; check and monitor transparency logs",
		Long: `Read the reports the daemon stored under its data directory, without the
daemon: list them (with their state in each transparency log), print one,
or verify them all with their chains. Check that two checkpoints of a
transparency log are consistent (consistency), and monitor a log
(audit); these two do not read --data-dir.`,
	}
	open := func(cmd *cobra.Command) (*host.FileStore, error) { return loc.openStore(cmd) }

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
			s, err := open(cmd)
			if err != nil {
				return err
			}
			es, err := s.List(cmd.Context(), host.Query{VM: vm, Event: attest.Event(event), Limit: limit})
			if err != nil {
				return configErr(err)
			}
			labels, err := s.LogLabels(cmd.Context())
			if err != nil {
				return configErr(err)
			}
			out := make([]host.APIEntry, len(es))
			logCol := make([]string, len(es))
			for i, e := range es {
				out[i] = host.APIEntry{VM: e.VM, Time: e.Time, Seq: e.Seq, Event: e.Event, Hash: e.Hash}
				var col []string
				for _, l := range labels {
					st, err := s.LogState(e, l)
					if err != nil {
						return configErr(err)
					}
					if out[i].Logs == nil {
						out[i].Logs = map[string]host.APILogState{}
					}
					out[i].Logs[l] = host.NewAPILogState(st)
					col = append(col, l+":"+st.String())
				}
				logCol[i] = strings.Join(col, ",")
				if logCol[i] == "" {
					logCol[i] = "-"
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tVM\tSEQ\tEVENT\tHASH\tLOG")
			for i, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339Nano), printable(e.VM), e.Seq, e.Event, e.Hash, logCol[i])
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
		Long: `Print a stored report without verifying it. HASH is the report's hash, or
a prefix of it (at least 6 hex digits) that no other stored report has, as
log list prints it.`,
		Args: exactArgs(1, "the HASH (or a unique prefix of it) of a stored report"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			e, err := s.Lookup(cmd.Context(), args[0])
			if err != nil {
				return configErr(err)
			}
			b, _, err := s.Get(cmd.Context(), e.Hash)
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
		trust        []string
		ev           evidenceSettings
		verifyAsJSON bool
	)
	verify := &cobra.Command{
		Use:   "verify --trust PUB [--vm NAME] [--json]",
		Short: "Verify every stored report and audit the store's history",
		Long: `Verify every stored report (signature under a --trust key, format,
guest evidence, and freshness as of the report's own issued-at, and that
the file still hashes to the name it was stored under), then audit them as
one history: the chain audit of hvmon verify --chain (docs/FORMAT.md,
"Chain audit"), over the store instead of a list of files. Each VM's
host chains, guest chains, migrations and rollbacks are checked; a store
whose first report of a host chain is not seq 0 (a deleted head) is a gap.
With --vm, only that VM's reports are read, and a guest key that it shares
with another VM is not seen.

The output is that of verify --chain: each VM's timeline, one line per
finding, and a last line VERDICT. A report without guest evidence (the
agent was unavailable, or the VM shut down) is authentic but attests no
memory: a warning (none for a shutdown), which does not fail the run.
Exit codes, as verify --chain: 2, 3 or 4 when a report failed
verification in that class (the lowest, when several did); else 5 when the
audit is contraindicated (a gap, fork, rollback, mismatched migration, a
guest key under two VM names); else 0. An empty store gives VERDICT: none
and exit 0.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd)
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
			return a.verifyLog(cmd.Context(), s, vm, attest.VerifyOptions{TrustedKeys: keys, Evidence: hw}, verifyAsJSON)
		},
	}
	verify.Flags().StringArrayVar(&trust, "trust", nil, "trusted host public key `PUB`; repeat for several (required)")
	verify.Flags().StringVar(&vm, "vm", "", "only VM `NAME`")
	verify.Flags().BoolVar(&verifyAsJSON, "json", false, "print JSON (as verify --chain --json)")
	ev.flags(verify.Flags())
	verify.MarkFlagRequired("trust")

	for _, c := range []*cobra.Command{list, show, verify} {
		loc.flags(c.Flags(), false, true)
	}
	cmd.AddCommand(list, show, verify, a.logConsistencyCmd(), a.logAuditCmd())
	return cmd
}

// verifyLog verifies every report the store holds (of vm, when set) and
// audits them as one history, with the code of verify --chain.
func (a *app) verifyLog(ctx context.Context, s *host.FileStore, vm string, opts attest.VerifyOptions, asJSON bool) error {
	es, err := s.List(ctx, host.Query{VM: vm})
	if err != nil {
		return configErr(err)
	}
	paths := make([]string, len(es))
	for i, e := range es {
		paths[i] = e.Path
	}
	renamed := func(i int, data []byte) error {
		if attest.ReportHash(data) != es[i].Hash {
			return fmt.Errorf("%w: the file no longer hashes to the name it was stored under", attest.ErrSignature)
		}
		return nil
	}
	return a.auditHistory(paths, chainNames(paths), renamed, nil, opts, nil, asJSON)
}

// verifyStored verifies a stored report as of its own issued-at.
func verifyStored(b []byte, opts attest.VerifyOptions) (*attest.Result, error) {
	return storeaudit.VerifyStored(b, opts)
}
