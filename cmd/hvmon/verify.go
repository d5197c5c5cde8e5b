package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		trust, expect     []string
		nonceHex, at, vm  string
		strict, asJSON    bool
		skew, maxLifetime time.Duration
		maxEvidenceAge    time.Duration
		ev                evidenceSettings
		allowHostMeasured bool
		requireHardware   bool
		policyPath        string
		chain             bool
		asOfIssue         bool
		lf                logFlags
	)
	cmd := &cobra.Command{
		Use:   "verify --trust PUB [--expect ID=HEX ...] [flags] REPORT | --chain REPORT|DIR ...",
		Short: "Verify a signed report offline",
		Long: `Verify a signed report offline, reading it from REPORT or, with "-", from
stdin.

Checks run in this order and stop at the first failure: format, trust (the
signing key is one of the --trust keys), signature, guest evidence, freshness
(issued-at and expires-at against --at, with --skew tolerance, none with
--skew 0, a lifetime of at most --max-lifetime, and guest evidence issued
at most --max-evidence-age before the report), nonce (when --nonce is given), vm
(with --vm: the report is about that VM), hardware (with
--require-hardware: the report embeds verified hardware evidence),
completeness (every --expect region is in the report) and drift (each
--expect region has one of the expected roots).

--vm NAME|UUID names the VM the report must be about: its workload equals
NAME byte for byte, or its host's vm_uuid fact equals UUID (any case).
A report about another VM fails (exit 5). The output always names the VM.

Whose measurements count for --expect: regions the guest agent measured
under hardware evidence that verified; and, in a report with neither host
observations nor guest evidence (hvmon attest), the signer's own. A host
report's own regions, whatever platform they name, and guest regions
without hardware evidence are the host's word: they count only with
--allow-host-measured. --require-hardware fails a report without verified
hardware evidence (exit 5) and counts only the guest's hardware-backed
regions.

Hardware evidence inside guest evidence is checked offline against AMD's
and Intel's roots built into hvmon (--amd-roots and --intel-roots replace
them). Simulated evidence verifies only with --allow-simulated and its
roots (--simulated-roots PEM or --simulated-seed HEX); debug guests only
with --allow-debug.

--expect ID=HEX gives a reference root for a region; repeat it with the same
ID to accept several roots. A root outside the accepted set is drift: a
warning that leaves the report valid, or with --strict a failure.

The output is one line per check (name, region, status, detail) and a last
line VALID, "VALID (drift: N region(s))" or "INVALID: <reason>". --json
prints the verification result as JSON instead, with an "error" field when
the report is not valid; the exit code is the same either way.

--policy FILE appraises the report after it verified (docs/POLICY.md): the
policy's host keys are pinned next to any --trust keys, its hardware_roots
replace the evidence flags (which cannot be combined with it), and its rules
for the report's VM give one finding per rule (affirming, warning or
contraindicated, with a reason code), listed after the verification lines,
then a last line "VERDICT: <status>". --json adds a "verdict" object. A
contraindicated verdict exits 5; warnings exit 0.

` + logProofHelp + `

` + chainHelp + `

` + exitCodeHelp,
		Example: `  hvmon verify --trust attester.key.pub report.cose
  hvmon verify --trust host.pub --chain reports/
  hvmon verify --policy vm.policy.hcl report.cose
  hvmon verify --trust attester.key.pub --nonce "$NONCE" --strict \
      --expect weights=3f1c...9a --expect weights=77de...01 report.cose`,
		Args: verifyArgs(&chain),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := attest.VerifyOptions{Strict: strict, ClockSkew: skew, MaxLifetime: maxLifetime, AllowHostMeasured: allowHostMeasured,
				RequireHardware: requireHardware, MaxEvidenceAge: maxEvidenceAge}
			// --skew 0 asks for no tolerance. The library reads a zero
			// ClockSkew as "use the default", so zero is said with
			// NoClockSkew; a negative tolerance means nothing.
			switch {
			case skew < 0:
				return configErr(fmt.Errorf("--skew %s: must not be negative (0 tolerates no skew)", skew))
			case skew == 0:
				opts.NoClockSkew = true
			}
			if maxLifetime <= 0 {
				return configErr(fmt.Errorf("--max-lifetime %s: must be positive", maxLifetime))
			}
			if maxEvidenceAge <= 0 {
				return configErr(fmt.Errorf("--max-evidence-age %s: must be positive", maxEvidenceAge))
			}
			if allowHostMeasured && requireHardware {
				return configErr(errors.New("--allow-host-measured and --require-hardware contradict each other: choose one"))
			}
			if cmd.Flags().Changed("vm") {
				if err := attest.CheckVMName(vm); err != nil {
					return configErr(fmt.Errorf("--vm: %w", err))
				}
				opts.VM = vm
			}
			if cmd.Flags().Changed("nonce") {
				n, err := parseHex("nonce", nonceHex)
				if err != nil {
					return err
				}
				opts.Nonce = n
			}
			if asOfIssue && cmd.Flags().Changed("at") {
				return configErr(errors.New("--as-of-issue and --at contradict each other: choose one"))
			}
			if cmd.Flags().Changed("at") {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return configErr(fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", at))
				}
				opts.Now = t
			}
			exp, err := parseExpectations(expect)
			if err != nil {
				return err
			}
			opts.Expected = exp
			pol, err := appraisalOptions(cmd, trust, policyPath, &ev, &opts)
			if err != nil {
				return err
			}
			logPol, err := lf.policy(cmd)
			if err != nil {
				return err
			}
			if chain {
				if logPol != nil && lf.proof != "" {
					return configErr(errors.New("--proof names one report's proof: --chain finds each report's proof next to it"))
				}
				return a.verifyChain(args, opts, pol, asJSON, logCheck(logPol, lf.requireLog))
			}
			data, err := a.readReport(args[0])
			if err != nil {
				return err
			}

			var asOf *time.Time
			if asOfIssue {
				// The time comes from the report itself, before its
				// signature is checked: Verify then checks everything
				// else as of that time, and the output says that
				// freshness against the clock was not checked.
				if in, err := attest.Inspect(data); err == nil {
					opts.Now = in.Report.IssuedAt
					asOf = &opts.Now
				}
			}
			res, verr := attest.Verify(data, opts)
			var appraisal *policy.Verdict
			if pol != nil && verr == nil {
				v := pol.At(opts.Now).AppraiseResult(res)
				appraisal = &v
			}
			// The log step runs for an authentic report: one that
			// verified, or failed only its appraisal (an incomplete
			// report, drift under --strict), which is still the
			// signed bytes a host logged. A proof says nothing for
			// bytes that are not an authentic report.
			var (
				lj   *logJSON
				lerr error
			)
			if logPol != nil && (verr == nil || errors.Is(verr, attest.ErrAppraisal)) {
				lj, lerr = checkLogProof(logPol, args[0], lf.proof, data)
			}
			if asJSON {
				err = writeVerifyJSON(a.stdout, res, verr, appraisal, lj, asOf)
			} else {
				if asOf != nil {
					fmt.Fprintf(a.stdout, "as of the report's issue time %s (--as-of-issue): its freshness against the clock was not checked\n", asOf.UTC().Format(time.RFC3339))
				}
				err = writeVerifyText(a.stdout, res, verr, appraisal)
				if err == nil && lj != nil {
					err = writeLogLine(a.stdout, lj, lf.requireLog)
				}
			}
			if err != nil {
				return configErr(err)
			}
			if verr != nil {
				if errors.Is(verr, attest.ErrExpired) && !cmd.Flags().Changed("at") {
					fmt.Fprintln(a.stderr, "hvmon: hint: a stored report is checked later than its lifetime; verify it as of its issue time with --as-of-issue, or as of a time with --at")
				}
				return fmt.Errorf("%s: %w", displayName(args[0]), verr)
			}
			if lerr != nil && lf.requireLog {
				return &logError{fmt.Errorf("%s: log %s: %w", displayName(args[0]), logPol.Log.Name(), lerr)}
			}
			if appraisal != nil {
				if err := appraisal.Err(); err != nil {
					return fmt.Errorf("%s: %w", displayName(args[0]), err)
				}
			}
			a.log.Info("report valid", "report", displayName(args[0]), "hash", res.ReportHash.String(),
				"key_id", res.KeyID.String(), "drift", len(res.Drift))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&trust, "trust", nil, "trusted public key `PUB` file (PEM SPKI); repeat to trust several (required)")
	f.StringArrayVar(&expect, "expect", nil, "expected root of a region, `ID=HEX` (64 hex digits); repeat an ID to accept several roots")
	f.StringVar(&nonceHex, "nonce", "", "`HEX` nonce the report must answer")
	f.BoolVar(&allowHostMeasured, "allow-host-measured", false, "let regions no hardware evidence backs (a host report's own regions, guest regions without hardware evidence) count for --expect")
	f.BoolVar(&requireHardware, "require-hardware", false, "fail (exit 5) a report without verified hardware evidence; only the guest's hardware-backed regions count")
	f.StringVar(&vm, "vm", "", "the VM the report must be about: a `NAME` (byte for byte) or the UUID of its vm_uuid fact")
	f.DurationVar(&maxEvidenceAge, "max-evidence-age", attest.DefaultMaxEvidenceAge, "longest time between the guest evidence's and the report's issued-at")
	f.BoolVar(&strict, "strict", false, "fail (exit 5) when a region drifted from --expect, instead of warning")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&at, "at", "", "verify as of this RFC 3339 `TIME` instead of now")
	f.BoolVar(&asOfIssue, "as-of-issue", false, "verify an archived report as of its own issued-at (freshness against the clock is not checked; the output says so)")
	f.DurationVar(&skew, "skew", attest.DefaultClockSkew, "clock skew tolerated on issued-at and expires-at; 0 tolerates none")
	f.DurationVar(&maxLifetime, "max-lifetime", attest.DefaultMaxLifetime, "longest report lifetime (expires-at minus issued-at) accepted")
	f.StringVar(&policyPath, "policy", "", "appraise the report against the policy `FILE` (its host keys are trusted too, its hardware roots replace the evidence flags)")
	f.BoolVar(&chain, "chain", false, "audit a report history: the REPORT arguments are files and directories of *.cose reports")
	lf.register(f)
	ev.flags(f)
	return cmd
}

// verdict is the last line of the human output.
func verdict(res *attest.Result, err error) string {
	switch {
	case err != nil:
		return "INVALID: " + printable(err.Error())
	case len(res.Drift) > 0:
		return fmt.Sprintf("VALID (drift: %d region(s))", len(res.Drift))
	default:
		return "VALID"
	}
}

// writeVerifyText prints one line per check and, when a policy appraised
// the report, one line per finding and the verdict as the last line.
func writeVerifyText(w io.Writer, res *attest.Result, verr error, appraisal *policy.Verdict) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range res.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Region, c.Status, printable(c.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if appraisal != nil {
		if _, err := fmt.Fprintln(w, verdict(res, verr)); err != nil {
			return err
		}
		if err := writeFindings(w, *appraisal); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w, verdictLine(*appraisal))
		return err
	}
	_, err := fmt.Fprintln(w, verdict(res, verr))
	return err
}

// verifyJSON is the --json view of a verification: the attest.Result and,
// when the report is not valid, the reason.
type verifyJSON struct {
	*attest.Result
	Error string `json:"error,omitempty"`
	// Verdict is the policy's appraisal, with --policy and a report that
	// verified.
	Verdict *policy.Verdict `json:"verdict,omitempty"`
	// Log is the log step, with --log-key and a report that verified.
	Log *logJSON `json:"log,omitempty"`
	// AsOfIssue is the report's issued-at with --as-of-issue: the time
	// the report was verified as of (freshness was not checked).
	AsOfIssue *time.Time `json:"as_of_issue,omitempty"`
}

func writeVerifyJSON(w io.Writer, res *attest.Result, verr error, appraisal *policy.Verdict, lj *logJSON, asOf *time.Time) error {
	v := verifyJSON{Result: res, Verdict: appraisal, Log: lj, AsOfIssue: asOf}
	if verr != nil {
		v.Error = verr.Error()
	}
	return writeJSON(w, v)
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// appraisalOptions completes opts from --trust (at least one key unless
// a policy names them) and either --policy (whose hosts, hardware and
// evidence rules it loads) or the evidence flags. It returns the policy,
// nil without --policy.
func appraisalOptions(cmd *cobra.Command, trust []string, policyPath string, ev *evidenceSettings, opts *attest.VerifyOptions) (*policy.Policy, error) {
	if len(trust) == 0 && policyPath == "" {
		return nil, configErr(errors.New(`required flag(s) "trust" not set`))
	}
	for _, p := range trust {
		k, err := keyfile.LoadPublic(p)
		if err != nil {
			return nil, configErr(fmt.Errorf("--trust: %w", err))
		}
		opts.TrustedKeys = append(opts.TrustedKeys, k)
	}
	if policyPath != "" {
		return policyVerifyOptions(cmd, policyPath, opts)
	}
	var err error
	if opts.Evidence, err = ev.verifier(); err != nil {
		return nil, configErr(err)
	}
	return nil, nil
}
