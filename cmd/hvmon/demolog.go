package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/policy"
)

// resetDemoLog removes a previous run's log from the demo's output
// directory (DIR/log, DIR/log.vkey and the reports' proofs): each run has
// its own log. A DIR/log that holds anything a log does not is left alone
// and is an error.
func resetDemoLog(out string) error {
	dir := filepath.Join(out, "log")
	names, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, n := range names {
		if !slices.Contains([]string{"checkpoint", "tile", ".state", ".antispam"}, n.Name()) {
			return fmt.Errorf("%s holds %s, which is not part of a demo log: remove it or choose another --out", dir, n.Name())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(out, "log.vkey")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	proofs, err := filepath.Glob(filepath.Join(out, "reports", "*.proof"))
	if err != nil {
		return err
	}
	for _, p := range proofs {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// demoLog prints what the demo's log holds and what the log monitor found
// in it, and fails when the monitor found anything wrong with the log
// itself: the demo's log must be consistent and hold every stored report.
// It returns the exit code hvmon log audit gives for what the monitor
// found (5 for the restore's rollback).
func (a *app) demoLog(res *demo.Result, f demoFiles) (int, error) {
	l := res.Log
	cp := l.Checkpoint
	w := a.stdout
	fmt.Fprintf(w, "\n== The transparency log: %s (tlog-tiles), verifier key %s\n", l.Dir, f.vkey)
	fmt.Fprintf(w, "  checkpoint: %s, tree size %d, root %x\n", cp.Origin, cp.Size, cp.Root)
	fmt.Fprintf(w, "  proofs: %d of %d reports proven in it with the log's key; each is %s/NAME.proof beside NAME.cose\n",
		l.Proofs, len(res.Reports), f.reports)
	fmt.Fprintf(w, "  log monitor (hvmon log audit) over %s with the stores of both hosts, trusting both host keys:\n", l.Dir)
	if l.Audit == nil {
		return 0, fmt.Errorf("demo: the log monitor gave no result: %v", l.AuditErr)
	}
	var b strings.Builder
	if err := writeChainText(&b, &policy.ChainAudit{Verdict: l.Audit.Verdict, VMs: l.Audit.VMs}); err != nil {
		return 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "VERDICT: "):
		case len(f) >= 4 && strings.HasPrefix(f[0], "log."):
		case len(f) >= 4 && strings.HasPrefix(f[0], "chain.") && (f[2] != "affirming" || f[3] == "handover"):
		default:
			continue
		}
		fmt.Fprintf(w, "    %s\n", line)
	}
	var bad []string
	for _, f := range l.Audit.Findings {
		if strings.HasPrefix(f.Check, "log.") && f.Status != policy.Affirming {
			bad = append(bad, f.Check+" "+f.Reason)
		}
	}
	switch {
	case l.AuditErr != nil:
		return 0, fmt.Errorf("demo: the log monitor: %w", l.AuditErr)
	case l.Audit.Failed != nil:
		return 0, fmt.Errorf("demo: the log monitor: a logged report failed verification: %w", l.Audit.Failed)
	case len(bad) > 0:
		return 0, fmt.Errorf("demo: the log monitor found a problem with the log: %s", strings.Join(bad, ", "))
	}
	fmt.Fprintln(w, "\nNo log-level finding: the checkpoint is signed by the log's key, every report both hosts stored")
	fmt.Fprintln(w, "is in the log, and every proof the hosts hold comes from this log's history. The chain findings")
	fmt.Fprintln(w, "are the chain audit's across the whole log (the monitor takes no reference roots: no drift).")
	fmt.Fprintf(w, "Run the monitor again from these files: hvmon %s\n", strings.Join(f.logAuditArgs(), " "))
	if l.Audit.Status == policy.Contraindicated {
		return exitAppraisal, nil
	}
	return exitOK, nil
}
