package policy

import (
	"fmt"

	"hvmon.dev/hvmon/attest"
)

// Status is an appraisal outcome in the spirit of the RATS EAR trust tiers
// (draft-ietf-rats-ear): affirming, warning or contraindicated. None marks a
// rule that did not apply.
type Status string

// Appraisal statuses, from best to worst.
const (
	None            Status = "none"
	Affirming       Status = "affirming"
	Warning         Status = "warning"
	Contraindicated Status = "contraindicated"
)

func (s Status) rank() int {
	switch s {
	case Affirming:
		return 1
	case Warning:
		return 2
	case Contraindicated:
		return 3
	default:
		return 0
	}
}

// Worse returns the more severe of a and b.
func Worse(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Finding is the outcome of one rule. Check names the rule (for example
// "snp.measurement", "region.weights", "chain.link"), Reason is a stable
// machine-readable code (for example "measurement_not_allowed", "rollback",
// "fork", "gap"); Detail is for people.
type Finding struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Subject string `json:"subject,omitempty"` // region, report hash or VM the finding is about
	Detail  string `json:"detail,omitempty"`
}

// Verdict is an overall status and the findings that produced it. The
// status is the worst of the findings' statuses, Affirming when every
// finding affirms, and None when there is none.
type Verdict struct {
	Status   Status    `json:"status"`
	Findings []Finding `json:"findings"`
}

// Add records f and folds its status into the overall status.
func (v *Verdict) Add(f Finding) {
	v.Findings = append(v.Findings, f)
	v.Status = Worse(v.Status, f.Status)
}

// Merge adds every finding of o.
func (v *Verdict) Merge(o Verdict) {
	for _, f := range o.Findings {
		v.Add(f)
	}
}

// AppraisalError is returned (through Verdict.Err) when a verdict is
// contraindicated. It wraps attest.ErrAppraisal, so the CLI's exit code is
// the appraisal one.
type AppraisalError struct {
	Verdict *Verdict
}

func (e *AppraisalError) Error() string {
	for _, f := range e.Verdict.Findings {
		if f.Status == Contraindicated {
			n := 0
			for _, g := range e.Verdict.Findings {
				if g.Status == Contraindicated {
					n++
				}
			}
			msg := fmt.Sprintf("contraindicated: %s: %s", f.Check, f.Reason)
			if f.Detail != "" {
				msg += " (" + f.Detail + ")"
			}
			if n > 1 {
				msg += fmt.Sprintf(" and %d more", n-1)
			}
			return msg
		}
	}
	return "contraindicated"
}

func (e *AppraisalError) Unwrap() error { return attest.ErrAppraisal }

// Err returns an *AppraisalError when the verdict is contraindicated and
// nil otherwise.
func (v *Verdict) Err() error {
	if v.Status == Contraindicated {
		return &AppraisalError{Verdict: v}
	}
	return nil
}
