//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
)

// The migration destination is a second libvirtd on this machine with a
// host identity of its own: its own network namespace (reached over a veth
// pair), hostname (UTS namespace), host UUID, and its own libvirt state
// and configuration directories (a mount namespace with bind mounts over
// /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and
// /var/cache/libvirt). libvirt refuses to migrate a domain to the host it
// runs on; to it, these are two hosts.
const (
	destNetns    = "hvmon-it-b"
	destHostname = "hvmon-it-b"
	destHostUUID = "5e1a1b7c-2f4d-4c3b-9a8e-7d6c5b4a3921"
	vethSource   = "hvmonit-a"
	vethDest     = "hvmonit-b"
	sourceAddr   = "10.77.0.1"
	destAddr     = "10.77.0.2"
)

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newDestination starts the destination host: namespaces, libvirtd and
// virtlogd inside them, and hvmon's hook in its own hooks directory.
func newDestination(t testing.TB, src *libvirtRig) *libvirtRig {
	t.Helper()
	exec.Command("ip", "netns", "del", destNetns).Run() // a leftover of an interrupted run
	exec.Command("ip", "link", "del", vethSource).Run()
	mustRun(t, "ip", "link", "add", vethSource, "type", "veth", "peer", "name", vethDest)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vethSource).Run() })
	mustRun(t, "ip", "netns", "add", destNetns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", destNetns).Run() })
	mustRun(t, "ip", "link", "set", vethDest, "netns", destNetns)
	mustRun(t, "ip", "addr", "add", sourceAddr+"/24", "dev", vethSource)
	mustRun(t, "ip", "link", "set", vethSource, "up")
	for _, args := range [][]string{{"addr", "add", destAddr + "/24", "dev", vethDest}, {"link", "set", vethDest, "up"}, {"link", "set", "lo", "up"}} {
		mustRun(t, "ip", append([]string{"netns", "exec", destNetns, "ip"}, args...)...)
	}

	dir := filepath.Join(src.dir, "hv-b")
	for _, d := range []string{"run", "etc", "var-lib", "run-libvirt", "var-log", "var-cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The destination's /etc/libvirt: the machine's, without its domains
	// and without the source's hook.
	mustRun(t, "cp", "-a", "/etc/libvirt/.", filepath.Join(dir, "etc"))
	xmls, _ := filepath.Glob(filepath.Join(dir, "etc", "qemu", "*.xml"))
	for _, x := range xmls {
		os.Remove(x)
	}
	os.RemoveAll(filepath.Join(dir, "etc", "hooks", "qemu.d"))
	r := &libvirtRig{t: t, dir: dir, bin: src.bin, hooksDir: filepath.Join(dir, "etc", "hooks"), api: filepath.Join(dir, "api.sock"),
		daemonLog: &bytes.Buffer{}}
	r.run("keygen", "--out", filepath.Join(dir, "host.key"))
	var err error
	if r.pub, err = keyfile.LoadPublic(filepath.Join(dir, "host.key.pub")); err != nil {
		t.Fatal(err)
	}
	r.run("hook", "install", "--dir", r.hooksDir, "--api-socket", r.api)

	r.conf = filepath.Join(dir, "libvirtd.conf")
	if err := os.WriteFile(r.conf, []byte(libvirtdConf(filepath.Join(dir, "run"), filepath.Join(dir, "libvirtd.log"), destHostUUID)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.pidFile = filepath.Join(dir, "libvirtd.pid")
	logdPid := filepath.Join(dir, "virtlogd.pid")
	r.uri = "qemu:///system?socket=" + filepath.Join(dir, "run", "libvirt-sock")
	script := "set -e\nhostname " + destHostname + "\n"
	for _, m := range [][2]string{{"etc", "/etc/libvirt"}, {"var-lib", "/var/lib/libvirt"}, {"run-libvirt", "/run/libvirt"},
		{"var-log", "/var/log/libvirt"}, {"var-cache", "/var/cache/libvirt"}} {
		script += fmt.Sprintf("mkdir -p %s\nmount --bind %s %s\n", m[1], filepath.Join(dir, m[0]), m[1])
	}
	script += fmt.Sprintf("virtlogd -d -p %s\nlibvirtd -d --config %s --pid-file %s\n", logdPid, r.conf, r.pidFile)
	cmd := exec.Command("ip", "netns", "exec", destNetns, "unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starting the destination libvirtd: %v\n%s", err, out)
	}
	t.Cleanup(func() { killPidFile(t, logdPid) })
	t.Cleanup(r.stopLibvirtd)
	r.waitLibvirtd()
	pid, err := os.ReadFile(r.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	// The destination's daemon lives in its namespaces: the agent channel
	// sockets are under its /var/lib/libvirt.
	r.enter = []string{"nsenter", "-t", strings.TrimSpace(string(pid)), "-m", "-u", "-n"}
	return r
}

// TestLibvirtMigration live-migrates a domain between two libvirt hosts,
// each followed by its own hvmon daemon with its own key: the source
// reports migrate-out, the destination migrate-in with the guest chain
// continuing across, and the chain audit over both stores names the
// handover.
func TestLibvirtMigration(t *testing.T) {
	a := newLibvirtRig(t)
	a.startDaemon()
	b := newDestination(t, a)
	b.startDaemon()
	connA, err := golibvirt.NewConnect(a.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer connA.Close()
	connB, err := golibvirt.NewConnect(b.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer connB.Close()

	// A transient domain without a disk: nothing to share between hosts.
	const name = "hvmon-mig"
	channel := a.run("libvirt", "channel-xml", "--name", name)
	xml := fmt.Sprintf(domainXML, name, image.Kernel, image.Initramfs, "", filepath.Join(a.dir, "console-mig.log"), channel)
	start, end := strings.Index(xml, "<disk"), strings.Index(xml, "</disk>")+len("</disk>")
	xml = xml[:start] + xml[end:]
	dom, err := connA.DomainCreateXML(xml, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { dom.Destroy(); dom.Free() }()
	a.waitReport(name, 1, attest.EventBoot)

	t0 := time.Now()
	moved, err := dom.Migrate(connB, golibvirt.MIGRATE_LIVE, "", "tcp://"+destAddr, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { moved.Destroy(); moved.Free() }()
	t.Logf("live migration between the two libvirt hosts took %v", time.Since(t0))

	_, out := a.waitReport(name, 2, attest.EventMigrateOut)
	_, in := b.waitReport(name, 1, attest.EventMigrateIn)
	if missing := handover(out, in); missing != "" {
		t.Fatalf("live migration between the libvirt hosts: missing %s", missing)
	}
	// The source's hvmon held the migration (through libvirt) until its
	// agent had answered.
	if f := out.Report.Host.Facts; f["migration_hold"] != "held" || f["migration_hold_ms"] == "" {
		t.Errorf("migrate-out facts %v: the migration was not held", f)
	}
	if in.Report.Host.Host != destHostname || out.Report.Host.Host == destHostname {
		t.Errorf("hosts: source %q, destination %q", out.Report.Host.Host, in.Report.Host.Host)
	}
	if in.KeyID == out.KeyID {
		t.Errorf("both hosts signed with key %s", in.KeyID)
	}
	// The destination's libvirtd ran its hook for the incoming migration.
	var ops []string
	for _, h := range b.hooks(name) {
		ops = append(ops, h.Op)
	}
	if !slices.Contains(ops, "migrate") {
		t.Errorf("destination hooks %v: no migrate", ops)
	}

	if err := moved.Destroy(); err != nil {
		t.Fatal(err)
	}
	b.waitReport(name, 2, attest.EventShutdown)
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	es, err := a.client.Reports(ctx, name, 0)
	cancel()
	if err != nil || len(es) != 2 {
		t.Fatalf("source reports %v, %v: want boot and migrate-out only (its QEMU ending is no shutdown)", apiEvents(es), err)
	}

	// The chain audit over both hosts' stores: one history, handed over.
	cmd := exec.Command(a.bin, "verify", "--trust", filepath.Join(a.dir, "host.key.pub"), "--trust", filepath.Join(b.dir, "host.key.pub"),
		"--allow-simulated", "--simulated-seed", simulatedSeed, "--chain",
		filepath.Join(a.dir, "data", "reports", name), filepath.Join(b.dir, "data", "reports", name))
	audit, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(string(audit), "handover") {
		t.Fatalf("chain audit over both hosts: exit %s\n%s", strconv.Itoa(code), audit)
	}
	t.Logf("chain audit over both hosts:\n%s", audit)
}
