// Package storeaudit holds what hvmon's readers of a report history share:
// verifying a stored report as of its own issued-at, and readying a
// policy's appraisal of one report for the chain audit. hvmon verify
// --chain, hvmon log verify and hvmon ui use it, so that the web view's
// verdicts are the command line's.
package storeaudit

import (
	"slices"
	"strings"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
)

// VerifyStored verifies a stored report as of its own issued-at: a history
// is read long after its reports expired. opts.Now is ignored. A report
// that does not decode gives an empty Result and the decoding error.
func VerifyStored(b []byte, opts attest.VerifyOptions) (*attest.Result, error) {
	in, err := attest.Inspect(b)
	if err != nil {
		return &attest.Result{}, err
	}
	opts.Now = in.Report.IssuedAt
	return attest.Verify(b, opts)
}

// AboutReport readies a policy's findings about one report for the chain
// audit, where the report is the subject: a subject that named more than
// the VM (a region) moves into the detail.
func AboutReport(v policy.Verdict, vm string) []policy.Finding {
	out := slices.Clone(v.Findings)
	for i, f := range out {
		if f.Subject != "" && f.Subject != vm {
			out[i].Detail = strings.TrimSuffix(f.Subject+": "+f.Detail, ": ")
		}
		out[i].Subject = ""
	}
	return out
}
