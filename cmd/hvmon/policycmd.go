package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/policy"
)

// loadPolicyFlag loads the policy file given to a verify command. Every
// error is a configError (exit 1): a bad policy says nothing about a
// report.
func loadPolicyFlag(path string) (*policy.Policy, error) {
	p, err := policy.Load(path, policy.Options{Hardware: evidence.PolicyHardware{}})
	if err != nil {
		return nil, configErr(fmt.Errorf("--policy: %w", err))
	}
	return p, nil
}

// evidenceFlags are the verify flags that a policy's hardware_roots block
// replaces.
var evidenceFlags = []string{"allow-simulated", "simulated-roots", "simulated-seed", "allow-debug", "amd-roots", "intel-roots"}

// policyVerifyOptions loads --policy and completes opts from it: its host
// keys join --trust, and its hardware roots give the evidence verifier.
// Mixing it with the evidence flags is a usage error, so that one place
// says what hardware is trusted.
func policyVerifyOptions(cmd *cobra.Command, path string, opts *attest.VerifyOptions) (*policy.Policy, error) {
	for _, f := range evidenceFlags {
		if cmd.Flags().Changed(f) {
			return nil, configErr(fmt.Errorf("--%s cannot be combined with --policy: set hardware trust in the policy's hardware_roots block", f))
		}
	}
	pol, err := loadPolicyFlag(path)
	if err != nil {
		return nil, err
	}
	o, err := pol.VerifyOptions(*opts)
	if err != nil {
		return nil, configErr(fmt.Errorf("--policy %s: %w", path, err))
	}
	*opts = o
	return pol, nil
}

// writeFindings lists a verdict's findings, one per line: check, subject,
// status, reason, detail.
func writeFindings(w io.Writer, v policy.Verdict) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range v.Findings {
		reason := f.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Check, printable(f.Subject), f.Status, reason, printable(f.Detail))
	}
	return tw.Flush()
}

// verdictLine is the last line of verify --policy's text output.
func verdictLine(v policy.Verdict) string {
	n := map[policy.Status]int{}
	for _, f := range v.Findings {
		n[f.Status]++
	}
	switch v.Status {
	case policy.Contraindicated:
		return fmt.Sprintf("VERDICT: contraindicated (%d finding(s) contraindicated, %d warning(s))", n[policy.Contraindicated], n[policy.Warning])
	case policy.Warning:
		return fmt.Sprintf("VERDICT: warning (%d warning(s))", n[policy.Warning])
	default:
		return "VERDICT: " + string(v.Status)
	}
}
