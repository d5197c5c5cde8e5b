package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/storeaudit"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
)

// chainHelp documents verify --chain in verify's help.
const chainHelp = `With --chain, the REPORT arguments are a VM's report history instead of one
report: files, and directories whose *.cose files are read (not recursively);
stdin is not accepted. Each report is verified as above, as of its own
issued-at unless --at is given (a history outlives its reports' lifetimes),
and then the chains are audited (docs/FORMAT.md, "Chain audit"): reports are
grouped by VM; each host chain (one key, one host name) counts seq up from 0
by one with prev naming the report before; each guest chain (one agent key)
does the same across hosts; a migrate-out must be followed by a migrate-in
whose guest prev is the migrate-out's guest evidence (the host handover is
named); a guest that goes back (a seq not above the last, or a prev another
evidence already followed) is a rollback — explained when the report is a
restore, and contraindicated either way. Reports without guest evidence
(agent unavailable, shutdown) take no part in the guest chain; a snapshot
or restore without it, or a restore whose evidence skips reports without
any, is a warning naming the window where a rollback could hide. One guest
key under two VM names is contraindicated (a relabelled or cloned VM).
What the host says about itself (facts such as a rejected evidence's hash,
its agent status, the event) explains a finding but never lowers it. With
--policy, every report that verified is also appraised against it.
With --vm, only the reports about that VM (as --vm matches one report)
are audited; a report whose signature does not verify is kept, since
nothing in it names a VM that can be trusted. hvmon log verify runs the
same audit over the daemon's store.

The output is each VM's timeline, one line per finding (check, report,
status, reason, detail) and a last line VERDICT: affirming, warning or
contraindicated. With --chain the exit code is 2, 3 or 4 when a report
failed verification in that class (the lowest, when several did: the
history given is not what the hosts signed), else 5 when the audit is
contraindicated (a gap, fork, rollback, mismatched migration, reused guest
key, strict drift or policy violation), else 0 (affirming, or warnings
only).`

// verifyArgs checks verify's positional arguments: one REPORT, or with
// --chain one or more files and directories.
func verifyArgs(chain *bool) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if *chain {
			if len(args) == 0 {
				return configErr(fmt.Errorf("%s --chain: want one or more REPORT files or directories (see %s --help)", c.CommandPath(), c.CommandPath()))
			}
			return nil
		}
		if len(args) > 1 {
			return configErr(fmt.Errorf("%s: want one REPORT file (or \"-\" for stdin), got %d argument(s); give --chain to audit several as a history (see %s --help)",
				c.CommandPath(), len(args), c.CommandPath()))
		}
		return exactArgs(1, `one REPORT file (or "-" for stdin)`)(c, args)
	}
}

// chainFiles expands the arguments of verify --chain: a file is itself, a
// directory gives its *.cose files in name order. A directory without any
// is read as the daemon's store: a data directory (its reports/) or its
// reports directory gives the *.cose files of each VM's directory in it.
// Each gets a name for messages: its base name when those are unique,
// else its path. A *.cose entry that is not a regular file (a FIFO, a
// device, a directory, a symlink loop or to nothing) is refused by name
// rather than opened: reading a FIFO would wait for a writer forever.
func chainFiles(args []string) (paths, names []string, err error) {
	for _, arg := range args {
		if arg == "-" {
			return nil, nil, configErr(errors.New("--chain reads files and directories, not stdin"))
		}
		st, err := os.Stat(arg)
		if err != nil {
			return nil, nil, configErr(err)
		}
		if !st.IsDir() {
			paths = append(paths, arg)
			continue
		}
		found, err := reportsIn(arg)
		if err != nil {
			return nil, nil, err
		}
		if len(found) == 0 {
			// The store's layout: DATA_DIR/reports/<vm>/*.cose.
			root := arg
			if st, err := os.Stat(filepath.Join(arg, "reports")); err == nil && st.IsDir() {
				root = filepath.Join(arg, "reports")
			}
			vms, err := os.ReadDir(root)
			if err != nil {
				return nil, nil, configErr(err)
			}
			for _, d := range vms {
				if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
					continue
				}
				more, err := reportsIn(filepath.Join(root, d.Name()))
				if err != nil {
					return nil, nil, err
				}
				found = append(found, more...)
			}
		}
		if len(found) == 0 {
			return nil, nil, configErr(fmt.Errorf("%s holds no *.cose report (nor a store's reports/<vm>/*.cose)", arg))
		}
		paths = append(paths, found...)
	}
	return paths, chainNames(paths), nil
}

// reportsIn lists the *.cose files of one directory in name order,
// refusing one that is not a regular file.
func reportsIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, configErr(err)
	}
	var found []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".cose" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // follows a symlink to a report
		if err != nil {
			return nil, configErr(fmt.Errorf("%s: %w", p, err))
		}
		if !st.Mode().IsRegular() {
			return nil, configErr(fmt.Errorf("%s is %s, not a report file", p, boundedfile.Kind(st.Mode())))
		}
		found = append(found, p)
	}
	slices.Sort(found)
	return found, nil
}

// chainNames names each report of a history for messages: its base name
// when those are unique, else its path.
func chainNames(paths []string) []string {
	var names []string
	seen := map[string]bool{}
	for _, p := range paths {
		names = append(names, filepath.Base(p))
		seen[filepath.Base(p)] = true
	}
	if len(seen) < len(paths) {
		names = slices.Clone(paths)
	}
	return names
}

// verifyChain verifies every report of a history with opts and audits the
// chains; pol, when set, appraises each report that verified.
func (a *app) verifyChain(args []string, opts attest.VerifyOptions, pol *policy.Policy, asJSON bool, lc *chainLogCheck) error {
	if opts.Nonce != nil {
		return configErr(errors.New("--nonce cannot be combined with --chain: each report answers its own nonce"))
	}
	paths, names, err := chainFiles(args)
	if err != nil {
		return err
	}
	return a.auditHistory(paths, names, nil, lc, opts, pol, asJSON)
}

// chainLogCheck is verify --chain --log-key: each report that verified
// has its proof checked next to it.
type chainLogCheck struct {
	policy   *tlog.Policy
	required bool
}

// logCheck returns the chain's log check, nil without a log policy.
func logCheck(p *tlog.Policy, required bool) *chainLogCheck {
	if p == nil {
		return nil
	}
	return &chainLogCheck{p, required}
}

// auditHistory verifies the reports at paths with opts and audits them as
// one history: verify --chain and log verify. check, when set, vets each
// report's bytes first (log verify: the file still hashes to its name);
// its error stands for the report's verification error.
//
// lc, when set, checks each verified report's log proof: with
// lc.required a failing one fails the report (exit 3), else it is a
// warning line.
func (a *app) auditHistory(paths, names []string, check func(i int, data []byte) error, lc *chainLogCheck, opts attest.VerifyOptions, pol *policy.Policy, asJSON bool) error {
	// --vm restricts the audit to one VM's reports: each report is
	// verified without it and kept only when it is about that VM. A
	// report whose signature did not verify names no VM anyone can
	// trust, so it stays in (and fails the audit).
	vm := opts.VM
	opts.VM = ""
	skipped := 0
	var (
		in      []policy.ChainReport
		reports []chainReportJSON
		failed  error // the verification failure with the lowest exit code
		logs    []string
	)
	for i, p := range paths {
		if a.context().Err() != nil {
			return configErr(errInterrupted)
		}
		data, err := a.readReport(p)
		if err != nil {
			return err
		}
		// Without --at, each report is verified as of its own issued-at:
		// a history is audited long after its reports expired.
		var (
			res  *attest.Result
			verr error
		)
		if check != nil {
			verr = check(i, data)
		}
		switch {
		case verr != nil:
		case opts.Now.IsZero():
			res, verr = verifyStored(data, opts)
		default:
			res, verr = attest.Verify(data, opts)
		}
		if vm != "" && res != nil && res.Report != nil && !res.Report.IsAbout(vm) {
			skipped++
			continue
		}
		var lj *logJSON
		if lc != nil && verr == nil {
			var lerr error
			lj, lerr = checkLogProof(lc.policy, p, "", data)
			logs = append(logs, strings.Replace(logLine(lj, lc.required), "log  ", "log  "+printable(names[i])+"  ", 1))
			if lerr != nil && lc.required {
				verr = &logError{fmt.Errorf("log %s: %w", lc.policy.Log.Name(), lerr)}
			}
		}
		cr := policy.ChainReport{Name: names[i], Result: res, Err: verr}
		if pol != nil && verr == nil {
			at := opts.Now
			if at.IsZero() {
				at = res.Report.IssuedAt
			}
			cr.Findings = aboutReport(pol.At(at).AppraiseResult(res), res.Report.Workload)
		}
		in = append(in, cr)
		rj := chainReportJSON{Report: names[i], Path: p, Hash: attest.ReportHash(data), Valid: verr == nil, Log: lj}
		if verr != nil {
			rj.Error = verr.Error()
			if c := exitCode(verr); c != exitAppraisal && (failed == nil || c < exitCode(failed)) {
				failed = fmt.Errorf("%s: %w", names[i], verr)
			}
		}
		reports = append(reports, rj)
	}
	if vm != "" && len(in) == 0 {
		return configErr(fmt.Errorf("--vm %s: none of the %d report(s) is about that VM", vm, len(paths)))
	}
	audit := policy.AuditChain(in)
	var err error
	if asJSON {
		v := chainJSON{ChainAudit: audit, Reports: reports}
		if failed != nil {
			v.Error = failed.Error()
		} else if err := audit.Err(); err != nil {
			v.Error = err.Error()
		}
		err = writeJSON(a.stdout, v)
	} else {
		for _, l := range logs {
			if _, err = fmt.Fprintln(a.stdout, l); err != nil {
				return configErr(err)
			}
		}
		err = writeChainText(a.stdout, audit)
	}
	if err != nil {
		return configErr(err)
	}
	if failed != nil {
		return fmt.Errorf("chain audit: %w", failed)
	}
	if err := audit.Err(); err != nil {
		return fmt.Errorf("chain audit: %w", err)
	}
	a.log.Info("chain audited", "reports", len(in), "other_vms", skipped, "vms", len(audit.VMs), "status", audit.Status)
	return nil
}

// aboutReport readies a policy's findings about one report for the chain
// verdict (storeaudit.AboutReport).
func aboutReport(v policy.Verdict, vm string) []policy.Finding {
	return storeaudit.AboutReport(v, vm)
}

// chainJSON is verify --chain --json: the audit, each report's
// verification, and the error when the command fails.
type chainJSON struct {
	*policy.ChainAudit
	Reports []chainReportJSON `json:"reports"`
	Error   string            `json:"error,omitempty"`
}

type chainReportJSON struct {
	Report string        `json:"report"`
	Path   string        `json:"path"`
	Hash   attest.Digest `json:"hash"`
	Valid  bool          `json:"valid"`
	Error  string        `json:"error,omitempty"`
	// Log is the report's log step, with --log-key.
	Log *logJSON `json:"log,omitempty"`
}

func writeChainText(w io.Writer, audit *policy.ChainAudit) error {
	for _, vm := range audit.VMs {
		fmt.Fprintf(w, "VM %s: %s\n", printable(vm.VM), vm.Status)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tREPORT\tEVENT\tHOST\tHOST SEQ\tGUEST SEQ\tAGENT\tSTATUS\tNOTES")
		for i, e := range vm.Timeline {
			gseq, agent, notes := "-", e.Agent, strings.Join(e.Notes, ",")
			if e.GuestSeq != nil {
				gseq = fmt.Sprint(*e.GuestSeq)
			}
			if agent == "" {
				agent = "-"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", i+1, printable(e.Report), e.Event, printable(e.Host), e.Seq, gseq, printable(agent), e.Status, notes)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "FINDINGS")
	if err := writeFindings(w, audit.Verdict); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, chainVerdictLine(audit))
	return err
}

// chainVerdictLine is the last line of verify --chain: the verdict, and
// the reasons that are not affirming.
func chainVerdictLine(audit *policy.ChainAudit) string {
	var reasons []string
	for _, st := range []policy.Status{policy.Contraindicated, policy.Warning} {
		for _, f := range audit.Findings {
			if f.Status == st && !slices.Contains(reasons, f.Reason) {
				reasons = append(reasons, f.Reason)
			}
		}
	}
	line := verdictLine(audit.Verdict)
	if audit.Status == policy.None {
		line = "VERDICT: none (no report verified)"
	}
	if len(reasons) > 0 {
		line += ": " + strings.Join(reasons, ", ")
	}
	n := 0
	for _, vm := range audit.VMs {
		n += len(vm.Timeline)
	}
	return line + fmt.Sprintf(" [%d report(s) of %d VM(s)]", n, len(audit.VMs))
}
