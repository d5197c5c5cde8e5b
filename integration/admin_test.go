//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
)

// TestAdminPath walks the admin path of docs/OPERATIONS.md with a real
// libvirtd, as an admin types it: a configuration started from the
// commented example and checked, the daemon started, the hook installed
// from the configuration, a domain's start, snapshot, revert and destroy
// with virsh, vm list and log verify finding the daemon through the
// configuration, a second daemon refused without harm, SIGHUP reloads (a
// changed file, a broken one), and daemon --check on a broken file —
// asserting what the docs say each step prints.
func TestAdminPath(t *testing.T) {
	r := newLibvirtRig(t)
	etc := filepath.Join(r.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(etc, "hvmon.hcl")
	hvmon := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(r.bin, args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("hvmon %v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}
	must := func(args ...string) string {
		t.Helper()
		out, errb, code := hvmon(args...)
		if code != 0 {
			t.Fatalf("hvmon %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errb)
		}
		return out
	}

	// Install: the commented example, a host key, the settings of this
	// host; daemon --check says OK. The example follows no VM.
	example, err := os.ReadFile("../contrib/hvmon.hcl")
	if err != nil {
		t.Fatal(err)
	}
	must("keygen", "-o", filepath.Join(etc, "host.key"))
	if r.pub, err = keyfile.LoadPublic(filepath.Join(etc, "host.key.pub")); err != nil { // the rig verifies reports with it
		t.Fatal(err)
	}
	set := func(text, key, value string) string {
		re := regexp.MustCompile(`(?m)^` + key + ` = .*$`)
		if !re.MatchString(text) {
			t.Fatalf("the example has no %s setting", key)
		}
		return re.ReplaceAllString(text, key+" = "+value)
	}
	cfg := string(example)
	cfg = set(cfg, "key", `"host.key"`) // relative: resolves against the file
	cfg = set(cfg, "data_dir", strconv.Quote(filepath.Join(r.dir, "data")))
	cfg = set(cfg, "api_socket", strconv.Quote(r.api))
	cfg = set(cfg, "metrics_listen", `"off"`)
	cfg = set(cfg, "periodic", `""`)
	cfg += fmt.Sprintf("\nlibvirt {\n  uri = %q\n  regions = [\"tiny\"]\n}\nevidence {\n  allow_simulated = true\n  simulated_seed = %q\n}\n", r.uri, simulatedSeed)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must("daemon", "--check", "--config", cfgPath); !strings.Contains(out, ": OK: host key ") || !strings.Contains(out, "0 vm block(s)") || !strings.Contains(out, "libvirt "+r.uri) {
		t.Errorf("daemon --check printed %q", out)
	}

	// The hook: installed from the configuration, it is the rig's already
	// (same socket): nothing changed, no restart hint, no warning.
	out, errb, code := hvmon("hook", "install", "--config", cfgPath, "--dir", r.hooksDir)
	if code != 0 || !strings.Contains(out, "already installed") || strings.Contains(out, "restart libvirtd") || strings.Contains(errb, "warning") {
		t.Errorf("hook install --config: exit %d\n%s%s", code, out, errb)
	}

	r.launchDaemon(cfgPath)
	pid := strconv.Itoa(r.daemon.Process.Pid)

	// A second daemon on the same configuration: refused at once, naming
	// the first, which keeps answering.
	out, errb, code = hvmon("daemon", "--config", cfgPath)
	if code != 1 || !strings.Contains(errb, "data directory in use") || !strings.Contains(errb, "(pid "+pid+")") {
		t.Errorf("second daemon: exit %d\n%s%s", code, out, errb)
	}
	if _, errb, code := hvmon("vm", "list", "--config", cfgPath); code != 0 {
		t.Fatalf("vm list after a second daemon was refused: exit %d: %s", code, errb)
	}

	// A domain's life with virsh.
	const name = "hvmon-it"
	disk := filepath.Join(r.dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	channel := must("libvirt", "channel-xml", "--name", name)
	xml := filepath.Join(r.dir, name+".xml")
	if err := os.WriteFile(xml, []byte(fmt.Sprintf(domainXML, name, image.Kernel, image.Initramfs, disk, filepath.Join(r.dir, "console.log"), channel)), 0o644); err != nil {
		t.Fatal(err)
	}
	virsh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("virsh", append([]string{"-c", r.uri}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("virsh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	virsh("define", xml)
	t.Cleanup(func() {
		exec.Command("virsh", "-c", r.uri, "destroy", name).Run()
		exec.Command("virsh", "-c", r.uri, "undefine", name, "--snapshots-metadata").Run()
	})
	virsh("start", name)
	r.waitReport(name, 1, attest.EventBoot)
	row := regexp.MustCompile(`(?m)^` + name + `\s+running\s+true\s+ok\s+1\s+boot\s+\S+$`)
	if out := must("vm", "list", "--config", cfgPath); !row.MatchString(out) {
		t.Errorf("vm list after the boot (want STATE running, CONNECTED true, AGENT ok):\n%s", out)
	}
	virsh("snapshot-create-as", name, "s1")
	r.waitReport(name, 2, attest.EventSnapshot)
	virsh("snapshot-revert", name, "s1")
	r.waitReport(name, 3, attest.EventRestore)

	// SIGHUP: a change of a restart-only setting is logged as such; a
	// broken file changes nothing; the daemon lives on.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(cfg, `ttl = "5m"`, `ttl = "6m"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r.daemon.Process.Signal(syscall.SIGHUP)
	r.waitLog("SIGHUP: these settings changed and take effect at the next restart")
	if !strings.Contains(r.daemonLog.String(), "settings=ttl") {
		t.Errorf("the reload did not name ttl:\n%s", r.daemonLog.String())
	}
	if err := os.WriteFile(cfgPath, []byte(cfg+"\nvm \"x\" {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.daemon.Process.Signal(syscall.SIGHUP)
	r.waitLog("SIGHUP: the configuration does not load; nothing changed")
	out, errb, code = hvmon("daemon", "--check", "--config", cfgPath)
	if code != 1 || !strings.Contains(errb, "hvmon.hcl:") {
		t.Errorf("daemon --check of a broken file: exit %d\n%s%s", code, out, errb)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	virsh("destroy", name)
	r.waitReport(name, 4, attest.EventShutdown)
	shut := regexp.MustCompile(`(?m)^` + name + `\s+shutoff\s+false\s+`)
	deadline := time.Now().Add(10 * time.Second)
	for out = must("vm", "list", "--config", cfgPath); !shut.MatchString(out); out = must("vm", "list", "--config", cfgPath) {
		if time.Now().After(deadline) {
			t.Fatalf("vm list after the destroy (want STATE shutoff, CONNECTED false):\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// log verify finds the store through the configuration; the revert
	// is a rollback (exit 5), as the docs say.
	out, errb, code = hvmon("log", "verify", "--config", cfgPath, "--trust", filepath.Join(etc, "host.key.pub"),
		"--allow-simulated", "--simulated-seed", simulatedSeed)
	if code != 5 || !strings.Contains(out, "[4 report(s) of 1 VM(s)]") || !strings.Contains(out, "rollback") {
		t.Errorf("log verify: exit %d, want 5 with a rollback\n%s%s", code, out, errb)
	}
	if out := must("log", "list", "--config", cfgPath); strings.Count(out, name) != 4 {
		t.Errorf("log list:\n%s", out)
	}

	// The daemon (alive through both reloads: it answered since) stops
	// cleanly and takes its socket with it.
	r.daemon.Process.Signal(syscall.SIGTERM)
	r.daemon.Wait()
	if _, err := os.Stat(r.api); !os.IsNotExist(err) {
		t.Errorf("the API socket outlived the daemon: %v", err)
	}
	if _, errb, code := hvmon("vm", "list", "--config", cfgPath); code != 1 || !strings.Contains(errb, "is the daemon running? (it listens on "+r.api+", from "+cfgPath+")") {
		t.Errorf("vm list with the daemon stopped: exit %d: %s", code, errb)
	}
}

// waitLog waits until the daemon's log has the text.
func (r *libvirtRig) waitLog(text string) {
	r.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(r.daemonLog.String(), text); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("the daemon did not log %q:\n%s", text, r.daemonLog.String())
		}
	}
}
