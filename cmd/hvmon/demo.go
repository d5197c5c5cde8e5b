package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/demo"
)

func (a *app) demoCmd() *cobra.Command {
	var (
		out, agent, moduleRoot, accel string
		periodic                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "demo [--out DIR]",
		Short: "Run hvmon's whole lifecycle on real QEMU VMs and verify every report",
		Long: `Run hvmon's main job end to end on this machine, with no root needed.

It builds a small guest from this machine's kernel with the hvmon agent
(simulated SEV-SNP evidence) and two measured regions, boots it under QEMU
(KVM when a guest actually runs under it, else TCG: a /dev/kvm that opens
but makes QEMU abort, exit or hang, as on many nested-virt hosts, means
TCG, said in one warning), and follows it with two host supervisors
(hv-a, hv-b) through: boot, periodic, live migration from QEMU A to QEMU B,
snapshot-save, tampering with the weights inside the guest, an on-demand
report, snapshot-load (restore) and shutdown. Each host signs with its own
key, generated for the run and never written: the migration hands the VM
over from one key to the other. It prints a timeline (event, host seq,
guest seq, verdict, drift), writes the hosts' public keys to DIR/hv-a.pub
and DIR/hv-b.pub, the simulated SEV-SNP roots to DIR/simulated-roots.pem
and every report to DIR/reports/*.cose, then verifies each with hvmon
verify (trusting both keys and those roots, as of the report's issue
time) and audits them as one history with hvmon verify --chain (the
handover is affirming; the restore shows as a rollback: exit 5 is the
expected verdict). It writes DIR/policy.hcl from the boot report (hvmon
policy init, pinning both keys) and audits the history against it.

It also runs a transparency log in process (the log server of hvmon logd,
POSIX storage in DIR/log, origin demo.hvmon.dev/log, a checkpoint every
second, its ML-DSA-44 key from a fixed public seed): both hosts submit
every report they store, as the daemon's outbox does. It writes the log's
verifier key to DIR/log.vkey and each report's inclusion proof to
DIR/reports/NAME.proof beside NAME.cose, checks every proof (hvmon verify
--log-key --require-log), and runs the log monitor (hvmon log audit) over
DIR/log with the stores of both hosts: the log must be consistent and hold
every stored report. A hvmon built with -tags nologd says "log: not built
in" and runs without the log.

Last, it writes DIR/README: what the directory holds, and one-line
commands, run from DIR, that check the files again later (each report as
of its own issue time) with the exit code the demo got for each. A
previous run's files in DIR are replaced; a DIR/reports or DIR/log that
holds anything the demo does not write is an error.

It needs qemu-system-x86, qemu-utils, linux-image-amd64, busybox-static,
xz-utils and cpio (make test installs them), and a static hvmon to put in
the guest: this binary when it is static (make demo builds it so), else
--agent FILE or --module-root DIR to build one.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch accel {
			case "", "kvm", "tcg":
			default:
				return configErr(fmt.Errorf("--accel %q: want kvm or tcg (or leave it out: KVM when it runs guests here, else TCG)", accel))
			}
			if err := demo.Requirements(); err != nil {
				return configErr(err)
			}
			if agent == "" && moduleRoot == "" {
				self, err := os.Executable()
				if err != nil || !isStatic(self) {
					return configErr(errors.New("this hvmon is not a static binary: give --agent FILE (built with CGO_ENABLED=0) or --module-root DIR"))
				}
				agent = self
			}
			if out == "" {
				out = "hvmon-demo"
			}
			if err := os.MkdirAll(filepath.Join(out, "reports"), 0o755); err != nil {
				return configErr(err)
			}
			fmt.Fprintln(a.stdout, "hvmon demo: a real VM under QEMU, real reports")
			if err := resetDemoDir(out); err != nil {
				return configErr(err)
			}
			start := a.demoLogStarter()
			if start == nil {
				fmt.Fprintln(a.stdout, "log: not built in (this hvmon was built with -tags nologd): the demo runs without a transparency log")
			}
			res, err := demo.Run(cmd.Context(), demo.Options{Agent: agent, ModuleRoot: moduleRoot, Accel: accel, Log: a.log, Out: a.stdout, Periodic: periodic,
				StartLog: start, LogDir: filepath.Join(out, "log")})
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			return a.demoReport(res, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "write README, hv-a.pub, hv-b.pub, simulated-roots.pem, policy.hcl, reports/*.cose and *.proof, log/ and log.vkey to `DIR` (default ./hvmon-demo)")
	f.StringVar(&agent, "agent", "", "static hvmon binary `FILE` for the guest")
	f.StringVar(&moduleRoot, "module-root", "", "build the guest's hvmon from the source tree at `DIR`")
	f.StringVar(&accel, "accel", "", "QEMU accelerator: kvm or tcg (default: KVM when a guest runs under it, else TCG, said in one log line); an explicit kvm never falls back")
	f.DurationVar(&periodic, "periodic", 5*time.Second, "interval of the source host's periodic reports")
	return cmd
}

// demoReport prints the timeline, writes the files, verifies every
// report with hvmon verify as a user would, and writes DIR/README with the
// commands that check the files again later.
func (a *app) demoReport(res *demo.Result, out string) error {
	f := newDemoFiles(out, res.Log != nil)
	if err := f.writeKeys(res); err != nil {
		return err
	}
	if res.Log != nil {
		if err := os.WriteFile(f.vkey, []byte(res.Log.VKey+"\n"), 0o644); err != nil {
			return configErr(err)
		}
	}
	verdicts, err := demo.Verify(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\n== Keys: %s signs with key %s (%s), %s with key %s (%s); simulated SEV-SNP roots in %s\n",
		demo.SourceHost, shortKeyID(res, demo.SourceHost), f.pubs[0], demo.DestHost, shortKeyID(res, demo.DestHost), f.pubs[1], f.roots)
	fmt.Fprintln(a.stdout, "\n== Timeline")
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tHOST\tEVENT\tHOST SEQ\tGUEST SEQ\tLOG\tVERDICT\tDRIFT")
	var files []string
	for i, v := range verdicts {
		name := filepath.Join(f.reports, fmt.Sprintf("%02d-%s-%s.cose", i+1, v.Report.Host, v.Report.Entry.Event))
		if err := os.WriteFile(name, v.Report.Signed, 0o644); err != nil {
			return configErr(err)
		}
		logIdx := "-"
		if v.Report.Proof != nil {
			if err := os.WriteFile(strings.TrimSuffix(name, ".cose")+".proof", v.Report.Proof, 0o644); err != nil {
				return configErr(err)
			}
			logIdx = fmt.Sprint(v.Report.LogIndex)
		}
		files = append(files, name)
		gseq, verdict := "-", "VALID"
		if v.Guest != nil {
			gseq = fmt.Sprint(v.Guest.Seq)
		}
		switch {
		case errors.Is(v.Err, attest.ErrIncomplete) && v.Result != nil && v.Result.Report != nil && v.Result.Report.Host != nil:
			verdict = "NO EVIDENCE (agent " + string(v.Result.Report.Host.Agent) + ")"
		case v.Err != nil:
			verdict = "INVALID: " + v.Err.Error()
		}
		drift := "-"
		if len(v.Drifted) > 0 {
			var parts []string
			for _, id := range v.Drifted {
				part := id
				for j, r := range v.Pages[id] {
					if j == 0 {
						part += ": "
					} else {
						part += ", "
					}
					part += r.String()
				}
				parts = append(parts, part)
			}
			drift = strings.Join(parts, "; ")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", i+1, v.Report.Host, v.Report.Entry.Event, v.Report.Entry.Seq, gseq, logIdx, verdict, drift)
	}
	tw.Flush()

	logArgs := ""
	if res.Log != nil {
		logArgs = ", --log-key " + f.vkey + " --require-log: its proof " + filepath.Join(f.reports, "NAME.proof")
	}
	fmt.Fprintf(a.stdout, "\n== hvmon verify on each of %s/*.cose (--trust %s --trust %s --simulated-roots %s, --as-of-issue%s)\n",
		f.reports, f.pubs[0], f.pubs[1], f.roots, logArgs)
	failed, bootExit := 0, 0
	for i, file := range files {
		args := f.verifyOneArgs(file, verdicts[i].Guest != nil)
		var sink strings.Builder
		code := run(args, nil, &sink, &sink)
		if i == 0 {
			bootExit = code
		}
		fmt.Fprintf(a.stdout, "  %-40s exit %d  %s\n", filepath.Base(file), code, verifyOutcome(sink.String()))
		if res.Log != nil {
			fmt.Fprintf(a.stdout, "  %-40s %s\n", "", logStepLine(sink.String()))
		}
		if code != exitOK && code != exitAppraisal {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("demo: %d report(s) failed verification", failed)
	}
	fmt.Fprintln(a.stdout, "\nEvery report is authentic; drift and missing evidence are shown where they happened.")
	chainExit, err := a.demoChain(f)
	if err != nil {
		return err
	}
	policyExit, err := a.demoPolicy(f, files[0])
	if err != nil {
		return err
	}
	auditExit := 0
	if res.Log != nil {
		if auditExit, err = a.demoLog(res, f); err != nil {
			return err
		}
	}
	readme := demoReadme(res, files, demoRechecks(res, filepath.Base(files[0]), bootExit, chainExit, policyExit, auditExit))
	if err := os.WriteFile(f.readme, []byte(readme), 0o644); err != nil {
		return configErr(err)
	}
	fmt.Fprintf(a.stdout, "\n== To check these files again later: %s says what they are, and gives the commands and the exit codes to expect\n", f.readme)
	return nil
}

// shortKeyID is the first 12 hex digits of a host's key id, as the chain
// audit prints it.
func shortKeyID(res *demo.Result, host string) string {
	return res.Keys[host].KeyID().String()[:12]
}

// verifyOutcome returns the line of hvmon verify's output that gives its
// outcome: the last one that is not the log step's (the error, or the
// VALID line).
func verifyOutcome(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "log ") {
			return lines[i]
		}
	}
	return ""
}

// logStepLine returns the log step's line of hvmon verify's text output,
// or says there was none (a report that failed before the log step).
func logStepLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "log ") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "log: no log step (the report did not verify)"
}

// demoPolicy writes a starting policy from the boot report (hvmon policy
// init, trusting both hosts' keys and the simulated roots, so the policy
// pins them) and audits the history against it (hvmon verify --policy
// --chain): the tampered region and the rollback are contraindicated. It
// returns the audit's exit code.
func (a *app) demoPolicy(f demoFiles, golden string) (int, error) {
	b, err := os.ReadFile(golden)
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	in, err := attest.Inspect(b)
	if err != nil {
		return 0, fmt.Errorf("demo: %s: %w", golden, err)
	}
	os.Remove(f.policy) // policy init never overwrites: this run's policy replaces the last run's
	args := append([]string{"policy", "init", "--from", golden}, f.trustArgs()...)
	args = append(args, "--at", in.Report.IssuedAt.Format(time.RFC3339), "--out", f.policy)
	var sink strings.Builder
	if code := run(args, nil, &sink, &sink); code != exitOK {
		return 0, fmt.Errorf("demo: hvmon policy init: exit %d\n%s", code, sink.String())
	}
	fmt.Fprintf(a.stdout, "\n== Against a policy made from the boot report: hvmon policy init --from %s --trust %s --trust %s ... --out %s\n",
		filepath.Base(golden), f.pubs[0], f.pubs[1], f.policy)
	fmt.Fprintf(a.stdout, "   then hvmon %s\n", strings.Join(f.policyChainArgs(), " "))
	sink.Reset()
	code := run(f.policyChainArgs(), nil, &sink, &sink)
	if n := strings.Count(sink.String(), "identity_bound"); n > 0 {
		fmt.Fprintf(a.stdout, "  the policy pins the VM's launch identity (bind_vm_identity: HOST_DATA = SHA3-256 of its name, set at launch): bound in %d report(s) with evidence\n", n)
	}
	for _, l := range strings.Split(strings.TrimSpace(sink.String()), "\n") {
		fs := strings.Fields(l)
		if strings.HasPrefix(l, "VERDICT: ") || (len(fs) >= 4 && (fs[2] == "contraindicated" || fs[2] == "warning")) {
			fmt.Fprintf(a.stdout, "  %s\n", l)
		}
	}
	fmt.Fprintf(a.stdout, "  (exit %d)\n", code)
	if code != exitAppraisal {
		return code, fmt.Errorf("demo: the policy audit gave exit %d, want %d (the tampering and the rollback are contraindicated)", code, exitAppraisal)
	}
	return code, nil
}

// demoChain audits the demo's reports as one history with hvmon verify
// --chain, trusting both hosts' keys (and requiring each report's proof
// when there is a log), and prints the findings that are not plain links,
// and the verdict. The migration must show as an affirming handover from
// one host key to the other; the restore is expected to show as a
// rollback (exit 5). It returns the exit code.
func (a *app) demoChain(f demoFiles) (int, error) {
	args := f.chainArgs()
	fmt.Fprintf(a.stdout, "\n== The history as a whole: hvmon %s\n", strings.Join(args, " "))
	var sink strings.Builder
	code := run(args, nil, &sink, &sink)
	rollback, handover := false, false
	for _, l := range strings.Split(strings.TrimSpace(sink.String()), "\n") {
		fs := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "VERDICT: "):
		case len(fs) >= 4 && strings.HasPrefix(fs[0], "chain.") && (fs[2] != "affirming" || fs[3] == "handover"):
			rollback = rollback || fs[3] == "rollback"
			handover = handover || (fs[0] == "chain.migration" && fs[2] == "affirming" && fs[3] == "handover")
		default:
			continue
		}
		fmt.Fprintf(a.stdout, "  %s\n", l)
	}
	fmt.Fprintf(a.stdout, "  (exit %d)\n", code)
	if code != exitOK && code != exitAppraisal {
		return code, fmt.Errorf("demo: the chain audit failed with exit %d", code)
	}
	if !handover {
		return code, fmt.Errorf("demo: the chain audit shows no affirming handover from %s to %s", demo.SourceHost, demo.DestHost)
	}
	fmt.Fprintf(a.stdout, "\nThe migration is a handover between two host keys: %s's chain ends with its migrate-out, %s's starts\n", demo.SourceHost, demo.DestHost)
	fmt.Fprintln(a.stdout, "with the migrate-in, and the guest chain runs on across them.")
	if rollback {
		fmt.Fprintln(a.stdout, "The restore took the guest back to the snapshot: the chain audit calls it a rollback, names the")
		fmt.Fprintln(a.stdout, "snapshot-load that explains it, and still contraindicates the history (exit 5).")
	}
	return code, nil
}
