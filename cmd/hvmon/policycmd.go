package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/keyfile"
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
	if len(o.TrustedKeys) == 0 {
		return nil, configErr(fmt.Errorf("--policy %s names no host key file (trust { host_keys = [...] }) and no --trust was given", path))
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
	case policy.None, "":
		return "VERDICT: none (no rule of the policy applied to this report)"
	default:
		return "VERDICT: " + string(v.Status)
	}
}

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Write and check appraisal policies",
		Long: `Policies say what a verifier trusts (host keys, hardware roots) and what it
expects of each VM (hardware evidence, SEV-SNP and TDX reference values,
region roots, events, report age). "hvmon verify --policy FILE" appraises a
report against one; docs/POLICY.md describes the file.`,
	}
	cmd.AddCommand(a.policyInitCmd(), a.policyCheckCmd())
	return cmd
}

func (a *app) policyInitCmd() *cobra.Command {
	var (
		from, out, at    string
		trust            []string
		ev               evidenceSettings
		asOfIssue, force bool
	)
	cmd := &cobra.Command{
		Use:   "init --from REPORT --trust PUB [--out FILE]",
		Short: "Write a starting policy from a trusted golden report",
		Long: `Write a starting policy from a golden report: a report of the VM in a
state you trust. The report must verify (against --trust and the evidence
flags, as of --at); an unverifiable report is refused with the exit code of
its failure.

The policy pins the host keys and hardware roots used here, requires
hardware evidence when the report has some, and records its hardware
reference values (SEV-SNP measurement, TCB, guest policy bits and host data,
or TDX MR_TD, RTMRs, MRCONFIGID and TEE TCB SVN), every region's root and the
lifecycle events, as commented HCL to review before use. Paths in it are
relative to --out (absolute when writing to stdout).

` + exitCodeHelp,
		Example: `  hvmon policy init --from golden.cose --trust host.key.pub --out vm.policy.hcl
  hvmon verify --policy vm.policy.hcl report.cose`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := attest.VerifyOptions{}
			if asOfIssue && at != "" {
				return configErr(errors.New("--as-of-issue and --at contradict each other: choose one"))
			}
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return configErr(fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", at))
				}
				opts.Now = t
			}
			for _, p := range trust {
				k, err := keyfile.LoadPublic(p)
				if err != nil {
					return configErr(fmt.Errorf("--trust: %w", err))
				}
				opts.TrustedKeys = append(opts.TrustedKeys, k)
			}
			var err error
			if opts.Evidence, err = ev.verifier(); err != nil {
				return configErr(err)
			}
			data, err := a.readReport(from)
			if err != nil {
				return err
			}
			if asOfIssue {
				// As in verify --as-of-issue: the report's own time, its
				// signature and everything else then checked as of it.
				if in, err := attest.Inspect(data); err == nil {
					opts.Now = in.Report.IssuedAt
					fmt.Fprintf(a.stderr, "hvmon: verifying the golden report as of its issue time %s (--as-of-issue): its freshness against the clock was not checked\n", opts.Now.UTC().Format(time.RFC3339))
				}
			}
			res, err := attest.Verify(data, opts)
			if err != nil {
				if errors.Is(err, attest.ErrExpired) && at == "" && !asOfIssue {
					fmt.Fprintln(a.stderr, "hvmon: hint: an archived golden report is past its lifetime; use --as-of-issue to verify it as of its issue time, or --at TIME")
				}
				return fmt.Errorf("%s: refusing a golden report that does not verify: %w", displayName(from), err)
			}
			g := policy.Golden{Result: res, AllowSimulated: ev.allowSimulated, SimulatedSeed: ev.simulatedSeed}
			if res.Guest != nil && res.Guest.Hardware != nil {
				if g.Hardware, err = (evidence.PolicyHardware{}).Facts(res.Guest.Hardware); err != nil {
					return fmt.Errorf("%s: %w", displayName(from), err)
				}
			}
			rel := func(paths ...string) ([]string, error) {
				var outp []string
				for _, p := range paths {
					r, err := pathFrom(out, p)
					if err != nil {
						return nil, configErr(err)
					}
					outp = append(outp, r)
				}
				return outp, nil
			}
			if g.HostKeys, err = rel(trust...); err != nil {
				return err
			}
			if g.SimulatedRoots, err = rel(ev.simulatedRoots...); err != nil {
				return err
			}
			if ev.amdRoots != "" {
				if g.AMDRoots, err = rel(ev.amdRoots); err != nil {
					return err
				}
			}
			if ev.intelRoots != "" {
				if g.IntelRoots, err = rel(ev.intelRoots); err != nil {
					return err
				}
			}
			text, err := policy.Generate(g)
			if err != nil {
				return err
			}
			// What was written must load: the same check as verify --policy.
			if _, err := policy.Parse(text, policyName(out), policy.Options{Hardware: evidence.PolicyHardware{}}); err != nil {
				return fmt.Errorf("generated policy does not load (this is a bug): %w", err)
			}
			if err := a.writePolicy(out, text, force); err != nil {
				return err
			}
			a.log.Info("policy written", "from", displayName(from), "out", displayName(out), "hash", res.ReportHash.String())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "golden report `FILE` (\"-\" for stdin)")
	f.StringArrayVar(&trust, "trust", nil, "trusted public key `PUB` file (PEM SPKI) that signed the golden report; repeat to pin several")
	f.StringVarP(&out, "out", "o", "-", "write the policy to `FILE` (\"-\" for stdout)")
	f.StringVar(&at, "at", "", "verify the golden report as of this RFC 3339 `TIME` instead of now")
	f.BoolVar(&asOfIssue, "as-of-issue", false, "verify an archived golden report as of its own issued-at (its freshness against the clock is not checked)")
	f.BoolVar(&force, "force", false, "overwrite --out when it exists")
	ev.flags(f)
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("trust")
	return cmd
}

func (a *app) policyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Check that a policy file loads",
		Long: `Check that a policy file loads: its syntax, every setting and value, and the
key and root files it names. Prints a summary; exit 0 when it loads, 1 when
not, with the file and line of the first error.`,
		Args: exactArgs(1, "one policy FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadPolicyFlag(args[0])
			if err != nil {
				return err
			}
			d := p.Defaults()
			_, err = fmt.Fprintf(a.stdout, "%s: OK: %d host key(s), %d vm block(s) %q; defaults: require_hardware=%t, %d region rule(s)\n",
				args[0], p.KeyCount(), len(p.VMPatterns()), p.VMPatterns(), d.RequireHardware, len(d.Regions))
			return configErr(err)
		},
	}
}

// pathFrom rewrites p (relative to the working directory) as the policy
// written to out should name it: relative to out's directory, or absolute
// when out is stdout.
func pathFrom(out, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if out == "-" {
		return abs, nil
	}
	dir, err := filepath.Abs(filepath.Dir(out))
	if err != nil {
		return "", err
	}
	r, err := filepath.Rel(dir, abs)
	if err != nil {
		return abs, nil
	}
	return r, nil
}

// policyName is the name relative paths in a generated policy resolve
// against.
func policyName(out string) string {
	if out == "-" {
		return "stdin.hcl" // paths are absolute then
	}
	return out
}

// writePolicy writes the policy to stdout or, atomically and without
// replacing an existing file, to path.
func (a *app) writePolicy(path string, data []byte, force bool) error {
	if path == "-" {
		_, err := a.stdout.Write(data)
		return configErr(err)
	}
	err := atomicfile.Write(path, data, 0o644, atomicfile.Options{Replace: force})
	if errors.Is(err, fs.ErrExist) {
		return configErr(fmt.Errorf("%s exists: pass --force to overwrite it", path))
	}
	return configErr(err)
}
