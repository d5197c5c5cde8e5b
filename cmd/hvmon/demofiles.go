package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/demo"
)

// demoFiles names the files of the demo's output directory. With an
// empty dir the paths are relative to it: what DIR/README prints, so
// that the directory can be moved and checked again from inside it.
type demoFiles struct {
	dir     string
	pubs    []string // one public key per host, in the order of demo.HostNames
	roots   string   // the simulated roots
	vkey    string   // the log's verifier key; "" without a log
	tlog    string   // the log's tiles
	reports string
	policy  string
	state   string // hvmon log audit's state
	readme  string
}

func newDemoFiles(dir string, withLog bool) demoFiles {
	f := demoFiles{dir: dir, roots: filepath.Join(dir, demoRootsFile), reports: filepath.Join(dir, "reports"),
		policy: filepath.Join(dir, "policy.hcl"), readme: filepath.Join(dir, "README")}
	for _, h := range demo.HostNames() {
		f.pubs = append(f.pubs, filepath.Join(dir, h+".pub"))
	}
	if withLog {
		f.vkey, f.tlog, f.state = filepath.Join(dir, "log.vkey"), filepath.Join(dir, "log"), filepath.Join(dir, "log-audit.state")
	}
	return f
}

// demoRootsFile holds the demo's simulated roots in its output directory.
const demoRootsFile = "simulated-roots.pem"

// trustArgs are the flags that trust what signed the demo's reports: both
// hosts' keys and the simulated SEV-SNP roots.
func (f demoFiles) trustArgs() []string {
	var args []string
	for _, p := range f.pubs {
		args = append(args, "--trust", p)
	}
	return append(args, "--allow-simulated", "--simulated-roots", f.roots)
}

// expectArgs are the reference roots of the demo's regions.
func expectArgs() []string {
	var args []string
	for _, e := range demo.Expected() {
		args = append(args, "--expect", e.RegionID+"="+e.Roots[0].String())
	}
	return args
}

// logArgs require each report's proof from the demo log; none without a
// log.
func (f demoFiles) logArgs() []string {
	if f.vkey == "" {
		return nil
	}
	return []string{"--log-key", f.vkey, "--require-log"}
}

// verifyOneArgs verifies one report as of its own issue time; guest says
// whether it has guest evidence (the regions to expect).
func (f demoFiles) verifyOneArgs(report string, guest bool) []string {
	args := append([]string{"verify"}, f.trustArgs()...)
	if guest {
		args = append(args, expectArgs()...)
	}
	args = append(args, f.logArgs()...)
	return append(args, "--as-of-issue", report)
}

// chainArgs audits the reports as one history, each verified as of its
// own issue time, with its proof.
func (f demoFiles) chainArgs() []string {
	args := append([]string{"verify"}, f.trustArgs()...)
	args = append(args, expectArgs()...)
	args = append(args, f.logArgs()...)
	return append(args, "--chain", f.reports)
}

// policyChainArgs audits the history against the policy made from the
// boot report.
func (f demoFiles) policyChainArgs() []string {
	return []string{"verify", "--policy", f.policy, "--chain", f.reports}
}

// logAuditArgs re-runs the demo's log monitor from the files (without the
// hosts' stores, which the demo does not keep).
func (f demoFiles) logAuditArgs() []string {
	args := append([]string{"log", "audit", "--tlog", f.tlog, "--log-key", f.vkey}, f.trustArgs()...)
	return append(args, "--state", f.state)
}

// writeKeys writes each host's public key and the simulated roots. The
// hosts' private keys are never written: nobody can sign more reports
// under the demo's host keys.
func (f demoFiles) writeKeys(res *demo.Result) error {
	for i, h := range demo.HostNames() {
		k := res.Keys[h]
		if k == nil {
			return fmt.Errorf("demo: no key for host %s", h)
		}
		pub, err := attest.MarshalPublicKeyPEM(k.PublicKey())
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.pubs[i], pub, 0o644); err != nil {
			return configErr(err)
		}
	}
	roots, err := demo.SimulatedRootsPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(f.roots, roots, 0o644); err != nil {
		return configErr(err)
	}
	return nil
}

// demoReportName matches the names the demo gives its reports and their
// proofs: NN-HOST-EVENT.cose and .proof.
var demoReportName = regexp.MustCompile(`^[0-9]{2,}-hv-[a-z]-[a-z-]+\.(cose|proof)$`)

// resetDemoDir removes a previous run's files from the demo's output
// directory: its reports (a run may make more or fewer of them, and a
// leftover would join this run's history), the files named in the
// README, the log (resetDemoLog) and the state of a log audit of that
// log. A DIR/reports that holds anything the demo does not write is left
// alone and is an error.
func resetDemoDir(out string) error {
	dir := filepath.Join(out, "reports")
	names, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, n := range names {
		if !demoReportName.MatchString(n.Name()) || !n.Type().IsRegular() {
			return fmt.Errorf("%s holds %s, which the demo did not write: remove it or choose another --out", dir, n.Name())
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n.Name())); err != nil {
			return err
		}
	}
	if err := resetDemoLog(out); err != nil {
		return err
	}
	// host.pub is the single host key of older demos.
	for _, name := range []string{"host.pub", "hv-a.pub", "hv-b.pub", demoRootsFile, "policy.hcl", "log-audit.state", "README"} {
		if err := os.Remove(filepath.Join(out, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// demoRecheck is one command of DIR/README: why to run it, its arguments
// (after "hvmon"), and the exit code the demo got for it.
type demoRecheck struct {
	why  []string // lines
	args []string
	exit int
	// then, when set, completes "Expect exit N" (lines): what later runs
	// give.
	then []string
}

// demoRechecks are the README's commands, with paths relative to the
// output directory, and the exit codes the demo's own run gave for them.
func demoRechecks(res *demo.Result, boot string, bootExit, chainExit, policyExit, auditExit int) []demoRecheck {
	f := newDemoFiles("", res.Log != nil)
	withProof := ""
	if res.Log != nil {
		withProof = " with its inclusion proof"
	}
	in, _ := attest.Inspect(res.Reports[0].Signed)
	rs := []demoRecheck{
		{why: []string{
			"The whole history: every report verified as of its own issue time" + withProof + ",",
			fmt.Sprintf("then the host chains, the guest chain and the %s -> %s handover audited. The", demo.SourceHost, demo.DestHost),
			"handover is affirming; the restore is a rollback, which contraindicates the history.",
		}, args: f.chainArgs(), exit: chainExit},
		{why: []string{
			"One report, as of its own issue time (--as-of-issue): its signature, its simulated",
			"SEV-SNP evidence and both regions' reference roots" + strings.Replace(withProof, " with", ", with", 1) + ".",
		}, args: f.verifyOneArgs(filepath.Join(f.reports, boot), in != nil && in.Guest != nil), exit: bootExit},
		{why: []string{
			"The history against policy.hcl, which pins both host keys, the simulated roots, the",
			"VM's launch identity and the boot report's region roots: the tampered weights and the",
			"rollback are contraindicated.",
		}, args: f.policyChainArgs(), exit: policyExit},
	}
	if res.Log != nil {
		rs = append(rs, demoRecheck{why: []string{
			"The log monitor over log/: the checkpoint's signature, every entry verified as of its",
			"issue time, and the chain audit across the whole log (the handover, the rollback).",
		}, args: f.logAuditArgs(), exit: auditExit, then: []string{
			"the first time; it then keeps the checkpoint it saw in log-audit.state, and a",
			"later run checks that the log only grew from it and audits only what was added",
			"(nothing: exit 0).",
		}})
	}
	return rs
}

// demoReadme is DIR/README: what the directory holds and how to check it
// again later, from inside it.
func demoReadme(res *demo.Result, reports []string, rechecks []demoRecheck) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("What this directory holds (written by hvmon demo), and how to check it again later")
	w("")
	w("The demo followed one VM, %s, under QEMU: boot on host %s, a periodic report, live", demo.VMName, demo.SourceHost)
	w("migration to host %s, snapshot-save, tampering with its weights, an on-demand report,", demo.DestHost)
	w("snapshot-load (restore) and shutdown. Each host signed its reports with its own key, so")
	w("the migration hands the VM over from one key to the other.")
	w("")
	w("Files")
	w("")
	for _, h := range demo.HostNames() {
		w("  %-28s %s's public key (ML-DSA-65, PEM), key id %s", h+".pub", h, res.Keys[h].KeyID())
	}
	w("  %-28s the %d signed reports, in the order they were made", "reports/NN-HOST-EVENT.cose", len(reports))
	if res.Log != nil {
		w("  %-28s each report's inclusion proof in the demo's log (tlog-proof)", "reports/NN-HOST-EVENT.proof")
	}
	w("  %-28s the roots of the SIMULATED SEV-SNP chain the guest's evidence chains to", demoRootsFile)
	w("  %-28s a policy made from the boot report (hvmon policy init; paths relative to it)", "policy.hcl")
	if res.Log != nil {
		w("  %-28s the demo's transparency log, %s (tlog-tiles, POSIX layout)", "log/", demo.LogOrigin)
		w("  %-28s the log's verifier key", "log.vkey")
		w("  %-28s written by the log audit command below: the checkpoint it last saw", "log-audit.state")
	}
	w("")
	w("The hosts' private keys were never written: they lived in the demo's memory only, so")
	w("nobody can sign more reports under these keys. Simulated evidence proves nothing about")
	w("hardware: its roots come from a public seed, and they are trusted here for this demo only.")
	if res.Log != nil {
		w("The log's key, too, comes from a public seed: the log shows the mechanism, not this machine.")
	}
	w("")
	w("Checking again later")
	w("")
	w("Run these from this directory with the hvmon that ran the demo (make demo builds")
	w("bin/hvmon). Each says the exit code the demo got for it; the same code again means the")
	w("files are unchanged and say what they said. A report is valid for minutes after it was")
	w("issued, so a later check is made as of each report's own issue time: verify --chain does")
	w("that for every report (unless --at TIME names another time), and verify --as-of-issue")
	w("for one report; the output says that freshness against the clock was not checked. Exit")
	w("codes: 0 valid, 2 malformed, 3 signature, trust or log proof, 4 freshness, 5 appraisal")
	w("(drift under --strict, a rollback, a policy violation).")
	for _, r := range rechecks {
		w("")
		for _, l := range r.why {
			w("# %s", l)
		}
		if len(r.then) == 0 {
			w("# Expect exit %d.", r.exit)
		} else {
			w("# Expect exit %d %s", r.exit, r.then[0])
			for _, l := range r.then[1:] {
				w("# %s", l)
			}
		}
		w("hvmon %s", strings.Join(r.args, " "))
	}
	return b.String()
}
