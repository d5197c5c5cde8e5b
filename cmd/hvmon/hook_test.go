package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
)

func hookTestXML(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../hook/testdata/domain-snp.xml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// domainXML returns the test domain renamed to name, with the
// attestation marker set or removed.
func domainXML(t testing.TB, name string, required bool) []byte {
	b := bytes.ReplaceAll(hookTestXML(t), []byte("llm-1"), []byte(name))
	if !required {
		b = bytes.Replace(b, []byte(`required="yes"`), []byte(`required="no"`), 1)
	}
	return b
}

func runWith(stdin []byte, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestHookArgs(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want []string
	}{
		{[]string{"/usr/local/bin/hvmon", "verify", "x"}, []string{"verify", "x"}},
		{[]string{"/etc/libvirt/hooks/qemu", "vm", "start", "begin", "-"}, []string{"hook", "--", "vm", "start", "begin", "-"}},
		{[]string{"/etc/libvirt/hooks/qemu.d/50-hvmon", "install", "prepare", "begin", "-"}, []string{"hook", "--", "install", "prepare", "begin", "-"}},
		{[]string{"/etc/libvirt/hooks/network", "default", "start", "begin", "-"}, []string{"default", "start", "begin", "-"}},
	} {
		if got := hookArgs(c.argv); !slices.Equal(got, c.want) {
			t.Errorf("hookArgs(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

// TestHookNoDaemon runs the hook with its socket pointing at nothing.
func TestHookNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nothing.sock")
	for _, c := range []struct {
		name       string
		failClosed bool
		op         string
		required   bool
		xml        []byte // nil: the test domain
		code       int
		stderr     string // regexp-free substring; "" means stderr must be empty
	}{
		{"open start required", false, "start", true, nil, 0, `warning: start of domain "vm-a" not recorded: the hvmon daemon at ` + sock + ` did not answer`},
		{"open migrate", false, "migrate", false, nil, 0, "(fail-open)"},
		{"closed prepare required", true, "prepare", true, nil, 1, `refusing prepare of domain "vm-a": its policy requires attestation and the hvmon daemon at ` + sock + ` did not answer`},
		{"closed start required", true, "start", true, nil, 1, "(fail-closed)"},
		{"closed start not required", true, "start", false, nil, 0, "warning: start of domain"},
		{"closed started required", true, "started", true, nil, 0, "warning: started of domain"},
		{"closed release required", true, "release", true, nil, 0, "(fail-open)"},
		{"closed migrate", true, "migrate", false, nil, 1, `refusing migrate of domain "vm-a": an incoming migration needs the daemon's word`},
		{"open malformed", false, "start", true, []byte("<domain><name>vm-a</name"), 0, `warning: start of domain "vm-a" not forwarded: domain XML:`},
		{"closed malformed start", true, "start", false, []byte("<domain><name>vm-a</name"), 1, `refusing start of domain "vm-a": domain XML:`},
		{"closed malformed stopped", true, "stopped", false, []byte("<domain><name>vm-a</name"), 0, "not forwarded"},
		{"closed other driver", true, "start", true, []byte("not even xml"), 0, ""},
		{"closed unknown op", true, "future-op", true, []byte("not even xml"), 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			xml := c.xml
			if xml == nil {
				xml = domainXML(t, "vm-a", c.required)
			}
			args := []string{"hook", "--syslog=false", "--api-socket", sock, "--timeout", "1s"}
			if c.failClosed {
				args = append(args, "--fail-closed")
			}
			if c.name == "closed other driver" {
				args = append(args, "--driver", "network")
			}
			args = append(args, "--", "vm-a", c.op, "begin", "-")
			code, stdout, stderr := runWith(xml, args...)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, c.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q: a hook must print nothing there (libvirt takes it as XML)", stdout)
			}
			if c.stderr == "" && stderr != "" || !strings.Contains(stderr, c.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, c.stderr)
			}
			if strings.Count(stderr, "\n") > 1 {
				t.Errorf("stderr has more than one line: %q", stderr)
			}
		})
	}
}

// hookReport signs a report for vm with k, with guest evidence whose
// claims verify (platform none).
func hookReport(t *testing.T, k *attest.PrivateKey, vm string, seq uint64, at time.Time) ([]byte, *attest.Report) {
	t.Helper()
	nonce := bytes.Repeat([]byte{9}, 32)
	gk, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	claims := []attest.Claim{{Region: attest.Region{ID: "weights", Size: 4096}, Workload: vm, Platform: "none",
		Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{1}, Size: 4096, TakenAt: at, PageSize: 4096}}}
	g, err := attest.SignGuestEvidence(gk, &attest.GuestEvidence{IssuedAt: at, Nonce: nonce, Event: attest.EventMigrateOut, VM: vm,
		Platform: "none", Claims: claims, GuestKey: gk.PublicKey().Bytes()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(time.Minute), Nonce: nonce, Event: attest.EventMigrateOut, Workload: vm,
		Platform: "host", Seq: seq, Guest: g, Host: &attest.Observations{Host: "src", EventAt: at, Agent: "ok"}}
	b, err := attest.Sign(k, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, r
}

// TestHookDaemon runs the daemon with reports in its store and the hook
// against it: allow and deny of incoming migrations, fail-open and
// fail-closed, and the daemon's record of every event, across a restart.
func TestHookDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "hvmon-h") // short: unix socket paths are bounded
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	keyPath := filepath.Join(dir, "host.key")
	own, err := keyfile.Generate(keyPath, keyfile.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := keyfile.Generate(filepath.Join(dir, "peer.key"), keyfile.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	dataDir := filepath.Join(dir, "data")
	store, err := host.NewFileStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	for vm, k := range map[string]*attest.PrivateKey{"from-self": own, "from-peer": peer, "from-rogue": rogue} {
		b, r := hookReport(t, k, vm, 0, at)
		if _, err := store.Put(context.Background(), vm, b, r); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "api.sock")
	cfg, err := host.ParseConfig([]byte(`
key = "`+keyPath+`"
data_dir = "`+dataDir+`"
api_socket = "`+sock+`"
metrics_listen = "off"
trust_peers = ["`+filepath.Join(dir, "peer.key.pub")+`"]
`), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	start := func() (stop func()) {
		var stderr bytes.Buffer
		a := &app{stdout: &bytes.Buffer{}, stderr: &stderr, log: hclog.NewNullLogger()}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.runDaemon(ctx, cfg, false, reloader{}) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := host.NewAPIClient(sock).VMs(context.Background()); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("daemon did not come up: %v %s", <-done, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		}
	}
	stop := start()

	hookRun := func(failClosed bool, vm, op string, required bool) (int, string) {
		t.Helper()
		args := []string{"hook", "--syslog=false", "--api-socket", sock}
		if failClosed {
			args = append(args, "--fail-closed")
		}
		code, stdout, stderr := runWith(domainXML(t, vm, required), append(args, "--", vm, op, "begin", "-")...)
		if stdout != "" {
			t.Errorf("hook %s %s wrote to stdout: %q", vm, op, stdout)
		}
		return code, stderr
	}
	for _, c := range []struct {
		failClosed bool
		vm, op     string
		required   bool
		code       int
		stderr     string
	}{
		{true, "from-self", "prepare", true, 0, ""},
		{true, "from-self", "start", true, 0, ""},
		{true, "from-self", "migrate", true, 0, ""},
		{true, "from-peer", "migrate", true, 0, ""},
		{true, "from-rogue", "migrate", false, exitTrust, `refusing migrate of domain "from-rogue": last report of "from-rogue" (migrate-out, seq 0,`},
		{false, "from-rogue", "migrate", false, 0, "warning: the hvmon daemon would refuse migrate of domain \"from-rogue\""},
		{true, "unseen", "migrate", false, exitTrust, `no stored report for "unseen"`},
		{true, "unseen", "start", true, 0, ""},
	} {
		code, stderr := hookRun(c.failClosed, c.vm, c.op, c.required)
		if code != c.code || (c.stderr == "") != (stderr == "") || !strings.Contains(stderr, c.stderr) {
			t.Errorf("hook (fail-closed %v) %s %s = exit %d, stderr %q; want exit %d, stderr containing %q", c.failClosed, c.vm, c.op, code, stderr, c.code, c.stderr)
		}
	}
	c := host.NewAPIClient(sock)
	evs, err := c.Hooks(context.Background(), "", 0)
	if err != nil || len(evs) != 8 {
		t.Fatalf("Hooks = %d events, %v; want 8", len(evs), err)
	}
	if e := evs[4]; e.VM() != "from-rogue" || e.Allow || e.Domain.LaunchSecurity != "sev-snp" || e.Domain.AgentSocket != "/run/hvmon/agents/from-rogue.agent" {
		t.Errorf("recorded event 5 = %+v", e)
	}
	// hvmon hook events shows the record.
	code, stdout, stderr := runWith(nil, "hook", "events", "--api-socket", sock, "--vm", "from-rogue")
	if code != 0 || strings.Count(stdout, "\n") != 3 || !strings.HasPrefix(stdout, "SEQ ") || !strings.Contains(stdout, "from-rogue  migrate  begin   deny") {
		t.Errorf("hook events --vm from-rogue = %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runWith(nil, "hook", "events", "--api-socket", sock, "--limit", "1", "--json")
	var last []host.HookEvent
	if err := json.Unmarshal([]byte(stdout), &last); code != 0 || err != nil || len(last) != 1 || last[0].Seq != 8 || last[0].VM() != "unseen" {
		t.Errorf("hook events --limit 1 --json = %d %v\n%s", code, err, stdout)
	}
	stop()
	if code, _, stderr := runWith(nil, "hook", "events", "--api-socket", sock); code != exitUsage || !strings.Contains(stderr, "api.sock") {
		t.Errorf("hook events without a daemon = %d %s", code, stderr)
	}

	// The record survives a restart of the daemon.
	if b, err := os.ReadFile(filepath.Join(dataDir, "hooks.jsonl")); err != nil || bytes.Count(b, []byte("\n")) != 8 {
		t.Fatalf("hooks.jsonl: %d lines, %v", bytes.Count(b, []byte("\n")), err)
	}
	stop = start()
	defer stop()
	if code, _ := hookRun(false, "from-self", "started", true); code != 0 {
		t.Fatalf("hook after restart exits %d", code)
	}
	evs, err = c.Hooks(context.Background(), "from-self", 0)
	if err != nil || len(evs) != 4 || evs[3].Op != "started" || evs[3].Seq != 9 || evs[0].Seq != 1 {
		t.Fatalf("Hooks(from-self) after restart = %+v, %v", evs, err)
	}
}

func TestHookInstall(t *testing.T) {
	dir := t.TempDir()
	hooks := filepath.Join(dir, "hooks")
	os.MkdirAll(hooks, 0o755)
	// An admin's own hook, which must survive install and uninstall.
	mine := []byte("#!/bin/sh\necho admin-hook >> /tmp/log\n")
	os.WriteFile(filepath.Join(hooks, "qemu"), mine, 0o755)
	bin := filepath.Join(dir, "bin dir", "hvmon's")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	wrapper := filepath.Join(hooks, "qemu.d", "hvmon")

	code, stdout, stderr := runWith(nil, "hook", "install", "--dir", hooks, "--binary", bin, "--fail-closed")
	if code != 0 || !strings.Contains(stdout, "installed "+wrapper) || !strings.Contains(stdout, "kept "+filepath.Join(hooks, "qemu")) || !strings.Contains(stdout, "restart libvirtd") {
		t.Fatalf("install = %d\n%s%s", code, stdout, stderr)
	}
	st, err := os.Stat(wrapper)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("wrapper: %v %v", st, err)
	}
	b, _ := os.ReadFile(wrapper)
	if !strings.Contains(string(b), `exec '`+filepath.Join(dir, "bin dir")+`/hvmon'\''s' hook --api-socket '/run/hvmon/api.sock' --timeout 2s --fail-closed -- "$@"`) {
		t.Errorf("wrapper:\n%s", b)
	}
	if got, _ := os.ReadFile(filepath.Join(hooks, "qemu")); !bytes.Equal(got, mine) {
		t.Errorf("install changed the existing qemu hook: %q", got)
	}
	for _, d := range []string{hooks, filepath.Join(hooks, "qemu.d")} {
		if es, _ := os.ReadDir(d); len(es) != 2 && d == hooks || len(es) != 1 && d != hooks {
			t.Errorf("install left files behind in %s: %v", d, es)
		}
	}
	// Again with the same flags: nothing changes.
	if code, stdout, _ := runWith(nil, "hook", "install", "--dir", hooks, "--binary", bin, "--fail-closed"); code != 0 || !strings.Contains(stdout, "already installed") || strings.Contains(stdout, "restart libvirtd") {
		t.Errorf("second install = %d %s", code, stdout)
	}
	// Other flags: the wrapper is rewritten.
	if code, stdout, _ := runWith(nil, "hook", "install", "--dir", hooks, "--binary", bin); code != 0 || !strings.Contains(stdout, "updated") {
		t.Errorf("install without --fail-closed = %d %s", code, stdout)
	}
	if b, _ := os.ReadFile(wrapper); strings.Contains(string(b), "--fail-closed") {
		t.Errorf("wrapper still fail-closed:\n%s", b)
	}
	if code, stdout, _ := runWith(nil, "hook", "uninstall", "--dir", hooks); code != 0 || !strings.Contains(stdout, "removed "+wrapper) {
		t.Errorf("uninstall = %d %s", code, stdout)
	}
	if _, err := os.Stat(wrapper); !os.IsNotExist(err) {
		t.Errorf("wrapper still there: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(hooks, "qemu")); !bytes.Equal(got, mine) {
		t.Errorf("uninstall changed the existing qemu hook: %q", got)
	}
	if code, stdout, _ := runWith(nil, "hook", "uninstall", "--dir", hooks); code != 0 || !strings.Contains(stdout, "nothing to remove") || strings.Contains(stdout, "restart libvirtd") {
		t.Errorf("second uninstall = %d %s", code, stdout)
	}

	// A qemu.d/hvmon that install did not write is never touched.
	foreign := []byte("#!/bin/sh\n# someone else's\n")
	os.WriteFile(wrapper, foreign, 0o755)
	if code, _, stderr := runWith(nil, "hook", "install", "--dir", hooks, "--binary", bin); code != exitUsage || !strings.Contains(stderr, "was not written by hvmon hook install") {
		t.Errorf("install over a foreign file = %d %s", code, stderr)
	}
	if code, _, stderr := runWith(nil, "hook", "uninstall", "--dir", hooks); code != exitUsage || !strings.Contains(stderr, "left alone") {
		t.Errorf("uninstall of a foreign file = %d %s", code, stderr)
	}
	if got, _ := os.ReadFile(wrapper); !bytes.Equal(got, foreign) {
		t.Errorf("the foreign file changed: %q", got)
	}
	os.Remove(wrapper)
	os.Symlink(bin, wrapper)
	if code, _, _ := runWith(nil, "hook", "install", "--dir", hooks, "--binary", bin); code != exitUsage {
		t.Errorf("install over a symlink = %d, want %d", code, exitUsage)
	}
	if code, _, _ := runWith(nil, "hook", "install", "--dir", hooks, "--binary", "relative/hvmon"); code != exitUsage {
		t.Errorf("install with a relative binary = %d", code)
	}
}

// TestHookWrapperRuns installs the wrapper for a stand-in binary and runs
// it as libvirt would: the arguments arrive intact, even a domain named
// like a subcommand.
func TestHookWrapperRuns(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-hvmon")
	out := filepath.Join(dir, "args")
	os.WriteFile(bin, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+shellQuote(out)+"\n"), 0o755)
	if code, _, stderr := runWith(nil, "hook", "install", "--dir", dir, "--binary", bin); code != 0 {
		t.Fatalf("install: %s", stderr)
	}
	if err := runProgram(filepath.Join(dir, "qemu.d", "hvmon"), "install", "prepare", "begin", "-"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	want := "hook\n--api-socket\n/run/hvmon/api.sock\n--timeout\n2s\n--\ninstall\nprepare\nbegin\n-\n"
	if string(b) != want {
		t.Errorf("the wrapper ran the binary with\n%s\nwant\n%s", b, want)
	}
	// The small binary takes the same flags without the subcommand.
	small := filepath.Join(dir, "hvmon-hook")
	os.WriteFile(small, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+shellQuote(out)+"\n"), 0o755)
	if code, stdout, stderr := runWith(nil, "hook", "install", "--dir", dir, "--binary", small, "--fail-closed"); code != 0 || !strings.Contains(stdout, "updated") {
		t.Fatalf("install hvmon-hook: %s %s", stdout, stderr)
	}
	if err := runProgram(filepath.Join(dir, "qemu.d", "hvmon"), "vm", "migrate", "begin", "-"); err != nil {
		t.Fatal(err)
	}
	// For hvmon-hook the file is no shell script: the kernel runs
	// hvmon-hook through its "#!" line, with the file's path, and
	// hvmon-hook reads the flags line.
	hookFile := filepath.Join(dir, "qemu.d", "hvmon")
	b, _ = os.ReadFile(out)
	if want := "--config\n" + hookFile + "\nvm\nmigrate\nbegin\n-\n"; string(b) != want {
		t.Errorf("the hook file ran hvmon-hook with\n%s\nwant\n%s", b, want)
	}
	if content, _ := os.ReadFile(hookFile); !strings.HasPrefix(string(content), "#!"+small+" --config\n") ||
		!strings.Contains(string(content), "\nflags: --api-socket /run/hvmon/api.sock --timeout 2s --fail-closed\n") {
		t.Errorf("hook file:\n%s", content)
	}
	// A binary path with a space cannot go in a "#!" line: a shell wrapper.
	spaced := filepath.Join(dir, "a b")
	os.Mkdir(spaced, 0o755)
	os.WriteFile(filepath.Join(spaced, "hvmon-hook"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+shellQuote(out)+"\n"), 0o755)
	if code, _, stderr := runWith(nil, "hook", "install", "--dir", dir, "--binary", filepath.Join(spaced, "hvmon-hook")); code != 0 {
		t.Fatalf("install: %s", stderr)
	}
	if err := runProgram(hookFile, "vm", "migrate", "begin", "-"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(out)
	if want := "--api-socket\n/run/hvmon/api.sock\n--timeout\n2s\n--\nvm\nmigrate\nbegin\n-\n"; string(b) != want {
		t.Errorf("the wrapper ran hvmon-hook with\n%s\nwant\n%s", b, want)
	}
	// And the real command line treats "install" after "--" as a domain.
	code, _, stderr := runWith(domainXML(t, "install", true), "hook", "--syslog=false", "--api-socket", filepath.Join(dir, "none.sock"), "--", "install", "prepare", "begin", "-")
	if code != 0 || !strings.Contains(stderr, `prepare of domain "install" not recorded`) {
		t.Errorf("hook -- install ... = %d %s", code, stderr)
	}
}

func TestChannelXML(t *testing.T) {
	code, stdout, stderr := runWith(nil, "libvirt", "channel-xml", "--name", "llm-1")
	if code != 0 {
		t.Fatalf("channel-xml = %d %s", code, stderr)
	}
	want := "/var/lib/libvirt/qemu/channel/target/llm-1.org.hvmon.agent.0"
	// What it prints, put into a domain, is what the hook finds.
	d, err := hook.ParseDomain([]byte("<domain><name>llm-1</name><devices>" + stdout + "</devices></domain>"))
	if err != nil || d.AgentSocket != want {
		t.Fatalf("channel-xml printed\n%s\nthe hook reads agent socket %q, %v; want %q", stdout, d.AgentSocket, err, want)
	}
	if !strings.Contains(stdout, `<target type="virtio" name="org.hvmon.agent.0">`) || !strings.Contains(stdout, `mode="bind"`) {
		t.Errorf("channel-xml = %s", stdout)
	}
	if _, stdout, _ := runWith(nil, "libvirt", "channel-xml", "--path", "/run/vm/a.sock"); !strings.Contains(stdout, `path="/run/vm/a.sock"`) {
		t.Errorf("channel-xml --path = %s", stdout)
	}
	for _, args := range [][]string{{}, {"--name", "../x"}, {"--path", "rel.sock"}, {"extra"}} {
		if code, _, _ := runWith(nil, append([]string{"libvirt", "channel-xml"}, args...)...); code != exitUsage {
			t.Errorf("channel-xml %q = %d, want %d", args, code, exitUsage)
		}
	}
}

func runProgram(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, out)
	}
	return nil
}
