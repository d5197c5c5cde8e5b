//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
)

// libvirtRig is a private libvirtd (with virtlogd) started as root for one
// test, with hvmon's hook installed and an hvmon daemon following it.
type libvirtRig struct {
	t         testing.TB
	dir       string
	bin       string
	uri       string
	conf      string
	pidFile   string
	hooksDir  string
	api       string
	daemon    *exec.Cmd
	daemonLog *bytes.Buffer
	client    *host.APIClient
	pub       *attest.PublicKey
	// enter, when set, runs the daemon inside another host's namespaces
	// (the migration destination's: nsenter and its arguments).
	enter []string
}

// hooksDir is where libvirtd (a root daemon) reads its hooks; it cannot be
// moved, so the test installs hvmon's wrapper there and removes it after.
const libvirtHooksDir = "/etc/libvirt/hooks"

func newLibvirtRig(t testing.TB) *libvirtRig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the libvirt tier runs libvirtd as root: run make test as root")
	}
	for _, b := range []string{"libvirtd", "virtlogd", "qemu-img"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: scripts/deps.sh installs libvirt-daemon-system and qemu-utils", b)
		}
	}
	stopLeftovers(t)
	if pid := runningProcess("libvirtd"); pid != "" {
		t.Fatalf("a libvirtd is already running (pid %s); the libvirt tier needs the machine's libvirt to itself", pid)
	}
	dir, err := os.MkdirTemp("", "hvmon-libvirt")
	if err != nil {
		t.Fatal(err)
	}
	// QEMU runs as libvirt's unprivileged user: it must reach the image.
	for _, d := range []string{dir, imageDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &libvirtRig{t: t, dir: dir, hooksDir: libvirtHooksDir, api: filepath.Join(dir, "api.sock"), daemonLog: &bytes.Buffer{}}
	t.Cleanup(func() {
		if !*keep {
			os.RemoveAll(dir)
		}
	})
	root, _ := filepath.Abs("..")
	r.bin = filepath.Join(dir, "hvmon")
	// hvmon (cgo: the libvirt watcher) and, next to it, a static hvmon-hook
	// (as make build makes them): "hook install" makes libvirt run it.
	for _, pkg := range []string{"./cmd/hvmon", "./cmd/hvmon-hook"} {
		build := exec.Command("go", "build", "-o", dir, pkg)
		build.Dir = root
		if pkg == "./cmd/hvmon-hook" {
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	r.run("keygen", "--out", filepath.Join(dir, "host.key"))
	r.pub, err = keyfile.LoadPublic(filepath.Join(dir, "host.key.pub"))
	if err != nil {
		t.Fatal(err)
	}

	// The hook goes in before libvirtd starts: libvirtd finds hooks only then.
	r.run("hook", "install", "--dir", r.hooksDir, "--api-socket", r.api)
	t.Cleanup(func() { r.run("hook", "uninstall", "--dir", r.hooksDir) })

	sock := filepath.Join(dir, "run")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	r.conf = filepath.Join(dir, "libvirtd.conf")
	conf := libvirtdConf(sock, filepath.Join(dir, "libvirtd.log"), "0b6f3c2a-9d8e-4f71-8a6b-1c2d3e4f5a6b")
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.pidFile = filepath.Join(dir, "libvirtd.pid")
	r.uri = "qemu:///system?socket=" + filepath.Join(sock, "libvirt-sock")
	logdPid := filepath.Join(dir, "virtlogd.pid")
	if out, err := exec.Command("virtlogd", "-d", "-p", logdPid).CombinedOutput(); err != nil {
		t.Fatalf("virtlogd: %v\n%s", err, out)
	}
	t.Cleanup(func() { killPidFile(t, logdPid) })
	r.startLibvirtd()
	t.Cleanup(r.stopLibvirtd)
	r.removeLeftoverDomains()
	return r
}

// rigDomains are the names the libvirt tests give their domains.
var rigDomains = []string{"hvmon-it", "hvmon-mig"}

// removeLeftoverDomains destroys and undefines the tests' domains that an
// interrupted earlier run (a killed test binary runs no cleanup) left in
// the machine's libvirt configuration; defining them again would fail.
func (r *libvirtRig) removeLeftoverDomains() {
	r.t.Helper()
	conn, err := golibvirt.NewConnect(r.uri)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range rigDomains {
		dom, err := conn.LookupDomainByName(name)
		if err != nil {
			continue // not defined: the usual case
		}
		r.t.Logf("removing domain %s, left by an earlier run that did not finish", name)
		dom.Destroy()
		err = dom.UndefineFlags(golibvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | golibvirt.DOMAIN_UNDEFINE_MANAGED_SAVE |
			golibvirt.DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
		dom.Free()
		if err != nil {
			r.t.Fatalf("removing the leftover domain %s: %v", name, err)
		}
	}
}

// stopLeftovers kills the daemons (libvirtd, virtlogd, QEMU) an earlier
// run of these tests started and could not stop (a test binary killed at
// its timeout runs no cleanup): a process whose command line names one of
// the rigs' directories. The machine's own daemons are left alone.
func stopLeftovers(t testing.TB) {
	t.Helper()
	rigDir := regexp.MustCompile(regexp.QuoteMeta(filepath.Join(os.TempDir(), "hvmon-libvirt")) + `[0-9]+/`)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, _ := os.ReadFile(filepath.Join(d, "comm"))
		switch c := strings.TrimSpace(string(comm)); {
		case c == "libvirtd", c == "virtlogd", c == "hvmon", strings.HasPrefix(c, "qemu-system"):
		default:
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !rigDir.Match(cmdline) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		t.Logf("stopping pid %d, left by an earlier run that did not finish: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && live(filepath.Join("/proc", strconv.Itoa(pid))); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// live reports whether the process of a /proc directory exists and is
// not a zombie.
func live(procDir string) bool {
	st, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}

// runningProcess returns the pid of a live (not zombie) process named
// comm, or "".
func runningProcess(comm string) string {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		c, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		if live(d) {
			return filepath.Base(d)
		}
	}
	return ""
}

// libvirtdConf is a private libvirtd configuration: its own socket
// directory and log, no authentication on the (root-only) socket, and a
// host UUID of its own (libvirt refuses to migrate between two hosts with
// the same one).
func libvirtdConf(sockDir, log, hostUUID string) string {
	return fmt.Sprintf("unix_sock_dir = %q\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n"+
		"log_outputs = \"3:file:%s\"\nhost_uuid = %q\n", sockDir, log, hostUUID)
}

// run runs the hvmon binary and fails the test on error.
func (r *libvirtRig) run(args ...string) string {
	r.t.Helper()
	out, err := exec.Command(r.bin, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("hvmon %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *libvirtRig) startLibvirtd() {
	r.t.Helper()
	if out, err := exec.Command("libvirtd", "-d", "--config", r.conf, "--pid-file", r.pidFile).CombinedOutput(); err != nil {
		r.t.Fatalf("libvirtd: %v\n%s", err, out)
	}
	r.waitLibvirtd()
}

// waitLibvirtd waits until the rig's libvirtd answers on its socket.
func (r *libvirtRig) waitLibvirtd() {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := golibvirt.NewConnect(r.uri)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("libvirtd did not answer on %s: %v", r.uri, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *libvirtRig) stopLibvirtd() { killPidFile(r.t, r.pidFile) }

// killPidFile stops a daemon by the PID in its pid file and waits for it.
func killPidFile(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("no pid file %s: %v", path, err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Errorf("pid file %s: %q", path, b)
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// startDaemon runs "hvmon daemon" following the private libvirtd.
func (r *libvirtRig) startDaemon() {
	r.t.Helper()
	cfg := fmt.Sprintf(`key = %q
data_dir = %q
api_socket = %q
metrics_listen = "off"
libvirt {
  uri = %q
  regions = ["tiny"]
}
evidence {
  allow_simulated = true
  simulated_seed = %q
}
`, filepath.Join(r.dir, "host.key"), filepath.Join(r.dir, "data"), r.api, r.uri, simulatedSeed)
	path := filepath.Join(r.dir, "hvmon.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.launchDaemon(path)
}

// launchDaemon runs "hvmon daemon --config path" and waits for its API.
func (r *libvirtRig) launchDaemon(path string) {
	r.t.Helper()
	args := append(append([]string{}, r.enter...), r.bin, "daemon", "--config", path, "--log-level", "trace")
	r.daemon = exec.Command(args[0], args[1:]...)
	r.daemon.Stdout, r.daemon.Stderr = r.daemonLog, r.daemonLog
	if err := r.daemon.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		r.daemon.Process.Signal(syscall.SIGTERM)
		r.daemon.Wait()
		if r.t.Failed() {
			r.t.Logf("daemon log:\n%s", r.daemonLog.String())
		}
	})
	r.client = host.NewAPIClient(r.api)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := r.client.VMs(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the daemon's API did not come up: %v\n%s", err, r.daemonLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReport waits until the daemon has stored n reports of vm and
// returns the last one, verified.
func (r *libvirtRig) waitReport(vm string, n int, want attest.Event) (host.APIEntry, *attest.Result) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		es, err := r.client.Reports(ctx, vm, 0)
		cancel()
		if err == nil && len(es) >= n {
			e := es[n-1]
			if e.Event != want {
				r.t.Fatalf("report %d of %s is %s, want %s (all: %v)", n, vm, e.Event, want, apiEvents(es))
			}
			return e, r.verify(e)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no report %d (%s) for %s after 3 minutes: %v, %v", n, want, vm, apiEvents(es), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hooks returns the hook events the daemon recorded for vm.
func (r *libvirtRig) hooks(vm string) []host.HookEvent {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs, err := r.client.Hooks(ctx, vm, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return hs
}

func apiEvents(es []host.APIEntry) []attest.Event {
	var out []attest.Event
	for _, e := range es {
		out = append(out, e.Event)
	}
	return out
}

// verify fetches a stored report and verifies it against the host key.
func (r *libvirtRig) verify(e host.APIEntry) *attest.Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := r.client.Report(ctx, e.Hash)
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{r.pub}, Now: e.Time,
		Evidence: evidenceVerifier(r.t)})
	if errors.Is(err, attest.ErrIncomplete) && res != nil && res.Report != nil && res.Guest == nil && res.Report.Host.Agent != "ok" {
		// Signed and intact, but without evidence: the verifier refuses a
		// report that covers no region, and the host says why it has none.
		return res
	}
	if err != nil {
		r.t.Fatalf("%s report %s does not verify: %v", e.Event, e.Hash, err)
	}
	return res
}

const domainXML = `<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>384</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='%s'/></serial>
    %s
    <memballoon model='none'/>
  </devices>
</domain>`

// TestLibvirt drives a real libvirtd, with hvmon's hook installed, through
// start, snapshot, libvirtd restart, revert, save, restore and destroy, and
// checks the signed report hvmon makes for each.
func TestLibvirt(t *testing.T) {
	r := newLibvirtRig(t)
	r.startDaemon()
	conn, err := golibvirt.NewConnect(r.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { conn.Close() }() // the connection in use at the end: it is replaced after each libvirtd restart

	const name = "hvmon-it"
	disk := filepath.Join(r.dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	channel := r.run("libvirt", "channel-xml", "--name", name)
	dom, err := conn.DomainDefineXML(fmt.Sprintf(domainXML, name, image.Kernel, image.Initramfs, disk,
		filepath.Join(r.dir, "console.log"), channel))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		dom.Destroy()
		dom.UndefineFlags(golibvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
		dom.Free()
	}()

	// start → boot, with guest evidence, once the agent is up.
	if err := dom.Create(); err != nil {
		t.Fatal(err)
	}
	_, boot := r.waitReport(name, 1, attest.EventBoot)
	if boot.Guest == nil || boot.Report.Host.Agent != "ok" || boot.Report.Host.Facts["domain_xml_sha3"] == "" {
		t.Fatalf("boot report: agent %q (%s), facts %v", boot.Report.Host.Agent, boot.Report.Host.Detail, boot.Report.Host.Facts)
	}
	uuid, _ := dom.GetUUIDString()
	if boot.Report.Host.Facts["vm_uuid"] != uuid {
		t.Errorf("vm_uuid = %q, want %q", boot.Report.Host.Facts["vm_uuid"], uuid)
	}

	// libvirtd ran the hook for prepare, start and started, and the hook
	// reached the daemon: its journal holds them.
	var ops []string
	for _, h := range r.hooks(name) {
		ops = append(ops, h.Op)
		if h.Domain.UUID != uuid || h.XMLSHA3 == "" {
			t.Errorf("hook event %s: uuid %q xml digest %q", h.Op, h.Domain.UUID, h.XMLSHA3)
		}
	}
	for _, op := range []string{"prepare", "start", "started"} {
		if !slices.Contains(ops, op) {
			t.Errorf("the daemon recorded hooks %v: no %s", ops, op)
		}
	}
	// ... and the boot report lists them.
	if h := boot.Report.Host.Facts["libvirt_hooks"]; !strings.Contains(h, "prepare/begin") || !strings.Contains(h, "started/begin") {
		t.Errorf("boot report facts libvirt_hooks = %q", h)
	}

	// snapshot-create → snapshot, with evidence.
	snap, err := dom.CreateSnapshotXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Free()
	_, snapRes := r.waitReport(name, 2, attest.EventSnapshot)
	if snapRes.Guest == nil || snapRes.Report.Host.Facts["snapshot"] != "s1" {
		t.Fatalf("snapshot report: agent %q (%s), facts %v", snapRes.Report.Host.Agent, snapRes.Report.Host.Detail, snapRes.Report.Host.Facts)
	}

	// libvirtd restarts while the domain runs: the watcher reconnects and
	// the next event is reported.
	r.stopLibvirtd()
	r.startLibvirtd()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.daemonLog.String(), "reconnected to libvirt") {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not reconnect to libvirtd")
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn.Close()
	if conn, err = golibvirt.NewConnect(r.uri); err != nil {
		t.Fatal(err)
	}
	dom.Free()
	if dom, err = conn.LookupDomainByName(name); err != nil {
		t.Fatal(err)
	}
	if snap, err = dom.SnapshotLookupByName("s1", 0); err != nil {
		t.Fatal(err)
	}

	// snapshot-revert → restore, and the guest's own chain shows the
	// rollback: its evidence seq goes back to the one after the snapshot.
	if err := snap.RevertToSnapshot(0); err != nil {
		t.Fatal(err)
	}
	_, rev := r.waitReport(name, 3, attest.EventRestore)
	if rev.Guest == nil || rev.Report.Host.Facts["restore_from"] != "from_snapshot" {
		t.Fatalf("revert report: agent %q (%s), facts %v", rev.Report.Host.Agent, rev.Report.Host.Detail, rev.Report.Host.Facts)
	}
	if rev.Guest.Seq > snapRes.Guest.Seq {
		t.Errorf("after the revert the guest seq is %d, after the snapshot it was %d: no rollback seen", rev.Guest.Seq, snapRes.Guest.Seq)
	}

	// save → snapshot without evidence (the guest is stopped); restore →
	// restore with evidence.
	saved := filepath.Join(r.dir, "domain.save")
	if err := dom.Save(saved); err != nil {
		t.Fatal(err)
	}
	_, sv := r.waitReport(name, 4, attest.EventSnapshot)
	if sv.Guest != nil || sv.Report.Host.Agent != "none" || sv.Report.Host.Facts["libvirt_event"] != "stopped/saved" {
		t.Fatalf("save report: agent %q, facts %v", sv.Report.Host.Agent, sv.Report.Host.Facts)
	}
	if err := conn.DomainRestore(saved); err != nil {
		t.Fatal(err)
	}
	_, rs := r.waitReport(name, 5, attest.EventRestore)
	if rs.Guest == nil || rs.Report.Host.Facts["restore_from"] != "restored" {
		t.Fatalf("restore report: agent %q (%s), facts %v", rs.Report.Host.Agent, rs.Report.Host.Detail, rs.Report.Host.Facts)
	}

	// destroy → shutdown.
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	_, down := r.waitReport(name, 6, attest.EventShutdown)
	if down.Report.Host.Facts["shutdown_reason"] != "destroyed" {
		t.Fatalf("shutdown facts %v", down.Report.Host.Facts)
	}

	// QEMU dies while libvirtd is down: nothing can tell hvmon at that
	// moment. Once libvirtd is back, the stop is reported, once.
	if err := dom.Create(); err != nil {
		t.Fatal(err)
	}
	r.waitReport(name, 7, attest.EventBoot)
	pidText, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	qemuPid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	r.stopLibvirtd()
	syscall.Kill(qemuPid, syscall.SIGKILL)
	r.startLibvirtd()
	_, lost := r.waitReport(name, 8, attest.EventShutdown)
	t.Logf("QEMU killed while libvirtd was down: shutdown reported with facts %v", lost.Report.Host.Facts)

	// Nothing more than one report per operation, and one unbroken host
	// chain.
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	es, err := r.client.Reports(ctx, name, 0)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	want := []attest.Event{attest.EventBoot, attest.EventSnapshot, attest.EventRestore, attest.EventSnapshot, attest.EventRestore, attest.EventShutdown,
		attest.EventBoot, attest.EventShutdown}
	if got := apiEvents(es); !slices.Equal(got, want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	for i, e := range es {
		res := r.verify(e)
		if res.Report.Seq != uint64(i) || (i > 0 && (res.Report.Prev == nil || *res.Report.Prev != es[i-1].Hash)) {
			t.Fatalf("report %d: seq %d prev %v", i, res.Report.Seq, res.Report.Prev)
		}
	}
	// hvmon log verify audits the store as verify --chain does: the
	// snapshot-revert is a rollback (contraindicated, exit 5) and nothing
	// else is; the save and the new guest key after the second boot are
	// warnings.
	out, err := exec.Command(r.bin, "log", "verify", "--data-dir", filepath.Join(r.dir, "data"), "--trust", filepath.Join(r.dir, "host.key.pub"),
		"--allow-simulated", "--simulated-seed", simulatedSeed).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Errorf("hvmon log verify: %v, want exit 5 (the rollback)\n%s", err, out)
	}
	rollbacks := 0
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && strings.HasPrefix(f[0], "chain.") && f[2] == "contraindicated" {
			if f[3] != "rollback" {
				t.Errorf("hvmon log verify: a contraindicated finding that is not the rollback: %s", l)
			}
			rollbacks++
		}
	}
	if rollbacks != 1 {
		t.Errorf("hvmon log verify: %d rollback finding(s), want 1\n%s", rollbacks, out)
	}
	conn.Close()
	if conn, err = golibvirt.NewConnect(r.uri); err != nil {
		t.Fatal(err)
	}
	dom.Free()
	if dom, err = conn.LookupDomainByName(name); err != nil {
		t.Fatal(err)
	}
	xml, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatal(err)
	}
	r.hookLatency(t, name, []byte(xml))
}

// hookLatency runs the installed hook the way libvirtd does (argv and the
// domain XML on stdin) against the running daemon, and logs its run time.
func (r *libvirtRig) hookLatency(t *testing.T, name string, xml []byte) {
	wrapper := filepath.Join(r.hooksDir, "qemu.d", "hvmon")
	// Baseline: /bin/true exec'd the same way, interleaved with the hook
	// runs so that both see the same machine.
	const runs = 100
	var hookD, trueD []time.Duration
	timed := func(cmd *exec.Cmd) (time.Duration, []byte, error) {
		cmd.Stdin = bytes.NewReader(xml)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return time.Since(start), out, err
	}
	for i := 0; i < runs; i++ {
		d, out, err := timed(exec.Command(wrapper, name, "started", "begin", "-"))
		if err != nil || len(out) != 0 {
			t.Fatalf("hook run %d: %v, output %q", i, err, out)
		}
		hookD = append(hookD, d)
		d, _, err = timed(exec.Command("/bin/true"))
		if err != nil {
			t.Fatal(err)
		}
		trueD = append(trueD, d)
	}
	q := func(d []time.Duration) string {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return fmt.Sprintf("p50 %v, p99 %v", d[runs/2].Round(10*time.Microsecond), d[runs*99/100-1].Round(10*time.Microsecond))
	}
	t.Logf("hook run time through the installed wrapper (static hvmon-hook, daemon journal synced), %d runs, %d-byte domain XML: %s; /bin/true the same way: %s",
		runs, len(xml), q(hookD), q(trueD))
	n := 0
	for _, h := range r.hooks(name) {
		if h.Op == "started" {
			n++
		}
	}
	if n < runs {
		t.Errorf("the daemon recorded %d started hooks, want at least %d", n, runs)
	}
}
