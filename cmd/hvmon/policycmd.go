package main

import (
	"encoding/hex"
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
	"hvmon.dev/hvmon/host/libvirt"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/launch"
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
		fromLaunch       bool
		domainXML, vm    string
		in               launchInputs
	)
	cmd := &cobra.Command{
		Use:   "init (--from REPORT | --from-launch [launch flags | --domain-xml FILE]) --trust PUB [--out FILE]",
		Short: "Write a starting policy from a trusted golden report or from launch inputs",
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

With --from-launch, no report is trusted: the policy pins the SEV-SNP
measurement computed from the VM's launch inputs (as "hvmon launch measure"
computes it), requires SEV-SNP evidence, and names the inputs and their
digests in comments. The inputs come from the launch flags (--ovmf, --vcpus,
--vcpu-type, --kernel, --initrd, --append, --guest-features, --vmm-type;
--vm names the VM) or from a libvirt domain XML (--domain-xml: its name,
loader, vCPU count, CPU model and, with kernelHashes='yes', its kernel,
initrd and command line; launch flags given as well override it). Only
--amd-roots of the evidence flags applies.

` + exitCodeHelp,
		Example: `  hvmon policy init --from golden.cose --trust host.key.pub --out vm.policy.hcl
  hvmon policy init --from-launch --domain-xml vm.xml --trust host.key.pub --out vm.policy.hcl
  hvmon policy init --from-launch --vm vm1 --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan --trust host.key.pub
  hvmon verify --policy vm.policy.hcl report.cose`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fromLaunch == (from != "") {
				return configErr(errors.New("give one of --from REPORT and --from-launch"))
			}
			if fromLaunch {
				return a.policyInitFromLaunch(cmd, &in, domainXML, vm, trust, ev.amdRoots, out, force)
			}
			for _, name := range []string{"domain-xml", "vm", "ovmf", "vcpus", "vcpu-type", "vcpu-sig", "kernel", "initrd", "append", "guest-features", "vmm-type", "type"} {
				if cmd.Flags().Changed(name) {
					return configErr(fmt.Errorf("--%s needs --from-launch", name))
				}
			}
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
	f.BoolVar(&fromLaunch, "from-launch", false, "pin the SEV-SNP measurement computed from the launch inputs instead of a report's")
	f.StringVar(&domainXML, "domain-xml", "", "with --from-launch: read the launch inputs from this libvirt domain XML `FILE`")
	f.StringVar(&vm, "vm", "", "with --from-launch: the VM's `NAME` (default: the domain XML's name)")
	in.addFlags(f, a)
	cmd.MarkFlagRequired("trust")
	return cmd
}

// policyInitFromLaunch writes a policy that pins the measurement computed
// from the launch inputs: the flags, over what the domain XML says.
func (a *app) policyInitFromLaunch(cmd *cobra.Command, in *launchInputs, domainXML, vm string, trust []string, amdRoots, out string, force bool) error {
	for _, name := range []string{"at", "allow-simulated", "simulated-roots", "simulated-seed", "allow-debug", "intel-roots"} {
		if cmd.Flags().Changed(name) {
			return configErr(fmt.Errorf("--%s has no meaning with --from-launch", name))
		}
	}
	var notes []string
	if domainXML != "" {
		b, _, err := readLaunchFile("domain-xml", domainXML, libvirt.MaxDomainXML)
		if err != nil {
			return configErr(err)
		}
		d, err := libvirt.ParseDomainXML(string(b))
		if err != nil {
			return configErr(fmt.Errorf("--domain-xml %s: %w", domainXML, err))
		}
		if d.LaunchSecurity != "sev-snp" {
			return configErr(fmt.Errorf("--domain-xml %s: domain %s has no <launchSecurity type='sev-snp'> (it has %q): its launch is not measured by SEV-SNP", domainXML, d.Name, d.LaunchSecurity))
		}
		if vm == "" {
			vm = d.Name
		}
		f, l := cmd.Flags(), d.Launch
		set := func(flag string, dst *string, v string) {
			if !f.Changed(flag) {
				*dst = v
			}
		}
		set("ovmf", &in.ovmf, l.Loader)
		if !f.Changed("vcpus") {
			in.vcpus = int(min(l.VCPUs, launch.MaxVCPUs+1))
		}
		if !f.Changed("vcpu-sig") {
			set("vcpu-type", &in.vcpuType, l.CPUModel)
		}
		if in.vcpuType == "" && in.vcpuSig == "" {
			return configErr(fmt.Errorf("--domain-xml %s: the CPU has no model (mode %q): give the vCPUs' signature with --vcpu-sig (or a model with --vcpu-type)", domainXML, l.CPUMode))
		}
		if l.KernelHashes {
			set("kernel", &in.kernel, l.Kernel)
			set("initrd", &in.initrd, l.Initrd)
			if !f.Changed("append") && l.Cmdline != "" {
				if err := f.Set("append", l.Cmdline); err != nil {
					return configErr(err)
				}
			}
		} else if l.Kernel != "" {
			notes = append(notes, "the domain boots a kernel directly without kernelHashes='yes': the kernel, initrd and command line are NOT measured")
		}
		notes = append(notes, "domain XML "+domainXML)
	}
	if vm == "" {
		return configErr(errors.New("--from-launch: name the VM with --vm NAME (or give --domain-xml)"))
	}
	if err := attest.CheckVMName(vm); err != nil {
		return configErr(fmt.Errorf("--vm: %w", err))
	}
	res, err := in.measure()
	if err != nil {
		return err
	}
	m, err := hex.DecodeString(res.Measurement)
	if err != nil {
		return err
	}
	l := policy.Launch{VM: vm, Measurement: m, Inputs: append(notes, launchInputLines(res)...)}
	if l.HostKeys, err = relPaths(out, trust...); err != nil {
		return err
	}
	if amdRoots != "" {
		if l.AMDRoots, err = relPaths(out, amdRoots); err != nil {
			return err
		}
	}
	text, err := policy.GenerateLaunch(l)
	if err != nil {
		return configErr(err)
	}
	// What was written must load: the same check as verify --policy.
	if _, err := policy.Parse(text, policyName(out), policy.Options{Hardware: evidence.PolicyHardware{}}); err != nil {
		return configErr(fmt.Errorf("the policy does not load: %w", err))
	}
	if err := a.writePolicy(out, text, force); err != nil {
		return err
	}
	a.log.Info("policy written", "from", "launch inputs", "vm", vm, "out", displayName(out), "measurement", res.Measurement)
	return nil
}

// launchInputLines describes the launch inputs of a policy, one line each.
func launchInputLines(r *launchResult) []string {
	file := func(what string, f *launchFile) string {
		return fmt.Sprintf("%s %s (%d bytes, sha256 %s)", what, f.Path, f.Size, f.SHA256)
	}
	lines := []string{file("firmware", &r.OVMF)}
	if r.Kernel != nil {
		lines = append(lines, file("kernel", r.Kernel))
	}
	if r.Initrd != nil {
		lines = append(lines, file("initrd", r.Initrd))
	}
	if r.Cmdline != nil {
		lines = append(lines, fmt.Sprintf("command line %q (sha256 with its NUL %s)", *r.Cmdline, r.CmdlineSHA256))
	}
	cpu := r.VCPUType + " "
	if cpu == " " {
		cpu = ""
	}
	lines = append(lines, fmt.Sprintf("%d vCPU(s) %s(signature %s), VMM %s, guest features %s",
		r.VCPUs, cpu, r.VCPUSignature, r.VMMType, r.GuestFeatures))
	return lines
}

// relPaths rewrites paths as a policy written to out names them.
func relPaths(out string, paths ...string) ([]string, error) {
	var r []string
	for _, p := range paths {
		q, err := pathFrom(out, p)
		if err != nil {
			return nil, configErr(err)
		}
		r = append(r, q)
	}
	return r, nil
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
