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
report, snapshot-load (restore) and shutdown. It prints a timeline (event,
host seq, guest seq, verdict, drift), writes the host public key to
DIR/host.pub and every report to DIR/reports/*.cose, then verifies each
with hvmon verify and audits them as one history with hvmon verify --chain
(the restore shows as a rollback there: exit 5 is the expected verdict).

It also runs a transparency log in process (the log server of hvmon logd,
POSIX storage in DIR/log, origin demo.hvmon.dev/log, a checkpoint every
second, its ML-DSA-44 key from a fixed public seed): both hosts submit
every report they store, as the daemon's outbox does. It writes the log's
verifier key to DIR/log.vkey and each report's inclusion proof to
DIR/reports/NAME.proof beside NAME.cose, checks every proof (hvmon verify
--log-key --require-log), and runs the log monitor (hvmon log audit) over
DIR/log with the stores of both hosts: the log must be consistent and hold
every stored report. A hvmon built with -tags nologd says "log: not built
in" and runs without the log. A previous run's DIR/log is replaced.

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
			start := a.demoLogStarter()
			if start == nil {
				fmt.Fprintln(a.stdout, "log: not built in (this hvmon was built with -tags nologd): the demo runs without a transparency log")
			} else if err := resetDemoLog(out); err != nil {
				return configErr(err)
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
	f.StringVar(&out, "out", "", "write host.pub, reports/*.cose and *.proof, log/ and log.vkey to `DIR` (default ./hvmon-demo)")
	f.StringVar(&agent, "agent", "", "static hvmon binary `FILE` for the guest")
	f.StringVar(&moduleRoot, "module-root", "", "build the guest's hvmon from the source tree at `DIR`")
	f.StringVar(&accel, "accel", "", "QEMU accelerator: kvm or tcg (default: KVM when a guest runs under it, else TCG, said in one log line); an explicit kvm never falls back")
	f.DurationVar(&periodic, "periodic", 5*time.Second, "interval of the source host's periodic reports")
	return cmd
}

// demoReport prints the timeline, writes the files, and verifies every
// report with hvmon verify as a user would.
func (a *app) demoReport(res *demo.Result, out string) error {
	pub, err := attestPublicPEM(res.Key)
	if err != nil {
		return err
	}
	pubPath := filepath.Join(out, "host.pub")
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return configErr(err)
	}
	vkeyPath := filepath.Join(out, "log.vkey")
	if res.Log != nil {
		if err := os.WriteFile(vkeyPath, []byte(res.Log.VKey+"\n"), 0o644); err != nil {
			return configErr(err)
		}
	}
	verdicts, err := demo.Verify(res)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\n== Timeline")
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tHOST\tEVENT\tHOST SEQ\tGUEST SEQ\tLOG\tVERDICT\tDRIFT")
	var files []string
	for i, v := range verdicts {
		name := filepath.Join(out, "reports", fmt.Sprintf("%02d-%s-%s.cose", i+1, v.Report.Host, v.Report.Entry.Event))
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
		logArgs = ", --log-key " + vkeyPath + " --require-log: its proof " + filepath.Join(out, "reports", "NAME.proof")
	}
	fmt.Fprintf(a.stdout, "\n== hvmon verify on each of %s/reports/*.cose (--trust %s, as of its issue time%s)\n", out, pubPath, logArgs)
	failed := 0
	for i, f := range files {
		in, _ := attest.Inspect(verdicts[i].Report.Signed)
		args := []string{"verify", "--trust", pubPath, "--at", in.Report.IssuedAt.Format(time.RFC3339),
			"--allow-simulated", "--simulated-seed", demo.SimulatedSeed}
		if res.Log != nil {
			args = append(args, "--log-key", vkeyPath, "--require-log")
		}
		for _, e := range demo.Expected() {
			if in.Guest != nil {
				args = append(args, "--expect", e.RegionID+"="+e.Roots[0].String())
			}
		}
		var sink strings.Builder
		code := run(append(args, f), nil, &sink, &sink)
		last := strings.TrimSpace(sink.String())
		if j := strings.LastIndexByte(last, '\n'); j >= 0 {
			last = last[j+1:]
		}
		fmt.Fprintf(a.stdout, "  %-40s exit %d  %s\n", filepath.Base(f), code, last)
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
	if err := a.demoChain(pubPath, filepath.Join(out, "reports")); err != nil {
		return err
	}
	if err := a.demoPolicy(pubPath, out, files[0]); err != nil {
		return err
	}
	if res.Log != nil {
		return a.demoLog(res, out, pubPath, vkeyPath)
	}
	return nil
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
// init) and audits the history against it (hvmon verify --policy
// --chain): the tampered region and the rollback are contraindicated.
func (a *app) demoPolicy(pubPath, out, golden string) error {
	b, err := os.ReadFile(golden)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	in, err := attest.Inspect(b)
	if err != nil {
		return fmt.Errorf("demo: %s: %w", golden, err)
	}
	pol := filepath.Join(out, "policy.hcl")
	os.Remove(pol) // policy init never overwrites: this run's policy replaces the last run's
	args := []string{"policy", "init", "--from", golden, "--trust", pubPath, "--at", in.Report.IssuedAt.Format(time.RFC3339),
		"--allow-simulated", "--simulated-seed", demo.SimulatedSeed, "--out", pol}
	var sink strings.Builder
	if code := run(args, nil, &sink, &sink); code != exitOK {
		return fmt.Errorf("demo: hvmon policy init: exit %d\n%s", code, sink.String())
	}
	dir := filepath.Join(out, "reports")
	fmt.Fprintf(a.stdout, "\n== Against a policy made from the boot report: hvmon policy init --from %s ... --out %s\n", filepath.Base(golden), pol)
	fmt.Fprintf(a.stdout, "   then hvmon verify --policy %s --chain %s\n", pol, dir)
	sink.Reset()
	code := run([]string{"verify", "--policy", pol, "--chain", dir}, nil, &sink, &sink)
	if n := strings.Count(sink.String(), "identity_bound"); n > 0 {
		fmt.Fprintf(a.stdout, "  the policy pins the VM's launch identity (bind_vm_identity: HOST_DATA = SHA3-256 of its name, set at launch): bound in %d report(s) with evidence\n", n)
	}
	for _, l := range strings.Split(strings.TrimSpace(sink.String()), "\n") {
		f := strings.Fields(l)
		if strings.HasPrefix(l, "VERDICT: ") || (len(f) >= 4 && (f[2] == "contraindicated" || f[2] == "warning")) {
			fmt.Fprintf(a.stdout, "  %s\n", l)
		}
	}
	fmt.Fprintf(a.stdout, "  (exit %d)\n", code)
	if code != exitAppraisal {
		return fmt.Errorf("demo: the policy audit gave exit %d, want %d (the tampering and the rollback are contraindicated)", code, exitAppraisal)
	}
	return nil
}

// demoChain audits the demo's reports as one history with hvmon verify
// --chain and prints the findings that are not plain links, and the
// verdict. The restore is expected to show as a rollback (exit 5).
func (a *app) demoChain(pubPath, dir string) error {
	args := []string{"verify", "--trust", pubPath, "--allow-simulated", "--simulated-seed", demo.SimulatedSeed}
	for _, e := range demo.Expected() {
		args = append(args, "--expect", e.RegionID+"="+e.Roots[0].String())
	}
	args = append(args, "--chain", dir)
	fmt.Fprintf(a.stdout, "\n== The history as a whole: hvmon verify --trust %s --allow-simulated --simulated-seed %s --expect ... --chain %s\n",
		pubPath, demo.SimulatedSeed, dir)
	var sink strings.Builder
	code := run(args, nil, &sink, &sink)
	rollback := false
	for _, l := range strings.Split(strings.TrimSpace(sink.String()), "\n") {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "VERDICT: "):
		case len(f) >= 4 && strings.HasPrefix(f[0], "chain.") && (f[2] != "affirming" || f[3] == "handover"):
			rollback = rollback || f[3] == "rollback"
		default:
			continue
		}
		fmt.Fprintf(a.stdout, "  %s\n", l)
	}
	fmt.Fprintf(a.stdout, "  (exit %d)\n", code)
	if code != exitOK && code != exitAppraisal {
		return fmt.Errorf("demo: the chain audit failed with exit %d", code)
	}
	if rollback {
		fmt.Fprintln(a.stdout, "\nThe restore took the guest back to the snapshot: the chain audit calls it a rollback, names the")
		fmt.Fprintln(a.stdout, "snapshot-load that explains it, and still contraindicates the history (exit 5).")
	}
	return nil
}

func attestPublicPEM(k *attest.PrivateKey) ([]byte, error) {
	return attest.MarshalPublicKeyPEM(k.PublicKey())
}
