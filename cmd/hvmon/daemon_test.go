package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/internal/syncbuf"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// TestDaemon runs the daemon against a fake QEMU, asks for a report over
// the API, and reads it back with hvmon log and hvmon vm.
func TestDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "hvmon-d")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	q, err := qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Handle("migrate-set-capabilities", func(json.RawMessage) (any, string, string) { return nil, "", "" })
	keyPath := filepath.Join(dir, "host.key")
	if _, err := keyfile.Generate(keyPath, keyfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfgText := `
host_name = "hv-test"
key = "` + keyPath + `"
data_dir = "` + filepath.Join(dir, "data") + `"
api_socket = "` + filepath.Join(dir, "api.sock") + `"
metrics_listen = "127.0.0.1:0"
vm "vm-1" {
  qmp = "` + q.Path + `"
}
`
	cfg, err := host.ParseConfig([]byte(cfgText), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &stderr, log: hclog.New(&hclog.LoggerOptions{Output: &stderr, Level: hclog.Debug})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.runDaemon(ctx, cfg, false, reloader{}) }()

	var out bytes.Buffer
	runOK := func(args ...string) string {
		t.Helper()
		out.Reset()
		var errb bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("hvmon %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var errb bytes.Buffer
		out.Reset()
		if run([]string{"vm", "list", "--api-socket", cfg.APISocket}, nil, &out, &errb) == 0 && strings.Contains(out.String(), "true") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not come up: %s %s", out.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A second daemon on the same configuration is refused at once,
	// naming the first's PID, and the first keeps its socket and answers.
	second := a.runDaemon(ctx, cfg, false, reloader{})
	if !errors.Is(second, host.ErrDataDirInUse) || !strings.Contains(second.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second daemon: %v", second)
	}
	if got := runOK("vm", "list", "--api-socket", cfg.APISocket); !strings.Contains(got, "vm-1") {
		t.Fatalf("the first daemon after a second was refused: vm list printed %q", got)
	}
	// On demand only checks: a lifecycle step is refused (422) and an
	// unknown event is a bad request (400); neither signs anything.
	for event, want := range map[string]string{
		"boot":    `"boot" is a lifecycle step only the VM's own lifecycle records; on demand ask for on-demand or periodic (HTTP 422)`,
		"restore": "(HTTP 422)",
		"reboot":  `unknown event "reboot" (HTTP 400)`,
	} {
		var o, errb bytes.Buffer
		if code := run([]string{"vm", "attest", "vm-1", "--event", event, "--api-socket", cfg.APISocket}, nil, &o, &errb); code != exitUsage || !strings.Contains(errb.String(), want) {
			t.Errorf("vm attest --event %s: exit %d, want %d and %q\n%s", event, code, exitUsage, want, errb.String())
		}
	}
	if got := runOK("vm", "attest", "vm-1", "--api-socket", cfg.APISocket); !strings.Contains(got, "vm-1 on-demand seq 0") {
		t.Errorf("vm attest printed %q", got)
	}
	// A relying party's own nonce, end to end: the report answers it, and
	// verify --nonce tells it from another. (This VM has no agent, so the
	// report covers no region: exit 5 after the nonce check passed.)
	mine := filepath.Join(dir, "mine.cose")
	const nonce = "00112233445566778899aabbccddeeff"
	runOK("vm", "attest", "vm-1", "--nonce", nonce, "-o", mine, "--api-socket", cfg.APISocket)
	for _, tc := range []struct {
		nonce string
		code  int
	}{{nonce, exitAppraisal}, {"ffeeddccbbaa99887766554433221100", exitFreshness}} {
		var o, errb bytes.Buffer
		code := run([]string{"verify", "--trust", keyPath + ".pub", "--vm", "vm-1", "--nonce", tc.nonce, mine}, nil, &o, &errb)
		if code != tc.code {
			t.Errorf("verify --nonce %s: exit %d, want %d\n%s%s", tc.nonce, code, tc.code, o.String(), errb.String())
		}
		if want := tc.nonce == nonce; strings.Contains(o.String(), "matches the verifier's nonce") != want {
			t.Errorf("verify --nonce %s: nonce check passed %v\n%s", tc.nonce, !want, o.String())
		}
	}
	q.Inject("SHUTDOWN", map[string]any{"reason": "guest-shutdown"})
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(runOK("log", "list", "--data-dir", cfg.DataDir), "shutdown"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no shutdown report")
		}
	}
	got := runOK("log", "verify", "--data-dir", cfg.DataDir, "--trust", keyPath+".pub")
	// The two on-demand reports (one for the relying party's nonce) have
	// no guest evidence (no agent): a warning each; the shutdown's needs none.
	if !strings.Contains(got, "[3 report(s) of 1 VM(s)]") || !strings.Contains(got, "VERDICT: warning (2 warning(s)): no_evidence") {
		t.Errorf("log verify:\n%s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("daemon returned %v", err)
	}
	if _, err := os.Stat(cfg.APISocket); !os.IsNotExist(err) {
		t.Error("the API socket was left behind")
	}
	// A tampered store is caught.
	es, _ := (&host.FileStore{Dir: cfg.DataDir}).List(context.Background(), host.Query{})
	b, _ := os.ReadFile(es[0].Path)
	b[len(b)-40] ^= 1
	os.WriteFile(es[0].Path, b, 0o640)
	var errb bytes.Buffer
	out.Reset()
	if code := run([]string{"log", "verify", "--data-dir", cfg.DataDir, "--trust", keyPath + ".pub"}, nil, &out, &errb); code != exitTrust {
		t.Errorf("log verify of a tampered store: exit %d, want %d\n%s", code, exitTrust, out.String())
	}
}

// TestDaemonReload: SIGHUP applies the file's vm blocks (a new VM is
// followed, a removed one no longer), logs other changes as needing a
// restart, and a file that does not parse changes nothing — the daemon
// never dies of the signal.
func TestDaemonReload(t *testing.T) {
	dir, err := os.MkdirTemp("", "hvmon-r")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var qs []*qmptest.Server
	for range 2 {
		q, err := qmptest.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		q.Handle("migrate-set-capabilities", func(json.RawMessage) (any, string, string) { return nil, "", "" })
		qs = append(qs, q)
	}
	keyPath := filepath.Join(dir, "host.key")
	if _, err := keyfile.Generate(keyPath, keyfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "hvmon.hcl")
	write := func(metrics string, vms ...int) {
		text := "key = \"" + keyPath + "\"\ndata_dir = \"" + filepath.Join(dir, "data") + "\"\napi_socket = \"" +
			filepath.Join(dir, "api.sock") + "\"\nmetrics_listen = \"" + metrics + "\"\n"
		for _, i := range vms {
			text += fmt.Sprintf("vm \"vm-%d\" {\n  qmp = %q\n}\n", i+1, qs[i].Path)
		}
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() (*host.Config, error) {
		src, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, err
		}
		return host.ParseConfig(src, cfgPath)
	}
	write("off", 0)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- a.runDaemon(ctx, cfg, false, reloader{load: load, hup: hup}) }()
	vmList := func() string {
		var out, errb bytes.Buffer
		run([]string{"vm", "list", "--api-socket", cfg.APISocket}, nil, &out, &errb)
		return out.String()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: vm list %q\n%s", what, vmList(), logs.String())
			}
		}
	}
	waitFor("start", func() bool { return strings.Contains(vmList(), "vm-1") })

	write("off", 0, 1)
	hup <- syscall.SIGHUP
	waitFor("vm-2 added", func() bool { return strings.Contains(vmList(), "vm-2") })

	if err := os.WriteFile(cfgPath, []byte("vm \"x\" {"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	waitFor("a broken file logged", func() bool {
		return strings.Contains(logs.String(), "the configuration does not load; nothing changed")
	})
	if l := vmList(); !strings.Contains(l, "vm-1") || !strings.Contains(l, "vm-2") {
		t.Fatalf("a broken file changed the VMs: %q", l)
	}

	write("127.0.0.1:0", 1)
	hup <- syscall.SIGHUP
	waitFor("vm-1 removed", func() bool { l := vmList(); return !strings.Contains(l, "vm-1") && strings.Contains(l, "vm-2") })
	if !strings.Contains(logs.String(), "take effect at the next restart") || !strings.Contains(logs.String(), "metrics_listen") {
		t.Errorf("a restart-only change was not logged:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("daemon returned %v", err)
	}
}
