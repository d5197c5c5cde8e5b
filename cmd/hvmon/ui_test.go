package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/syncbuf"
)

// TestUIRefusesRemote: without --allow-remote, hvmon ui refuses an
// address that is not loopback before it opens anything.
func TestUIRefusesRemote(t *testing.T) {
	dir := t.TempDir()
	for _, addr := range []string{"0.0.0.0:8089", ":8089", "[::]:8089", "192.0.2.1:8089", "monitor.example:8089"} {
		code, _, stderr := runIn(t, nil, "ui", "--data-dir", dir, "--trust", "none.pub", "--listen", addr)
		if code != exitUsage || !strings.Contains(stderr, "is not a loopback address") || !strings.Contains(stderr, "--allow-remote") {
			t.Errorf("ui --listen %s: exit %d, stderr %q; want exit %d refusing a non-loopback address", addr, code, stderr, exitUsage)
		}
	}
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if err := checkUIListen(addr, false); err != nil {
			t.Errorf("checkUIListen(%s): %v; want loopback accepted", addr, err)
		}
	}
	if err := checkUIListen("nonsense", false); err == nil {
		t.Error("checkUIListen(nonsense): want an error")
	}
}

// TestUIServes runs hvmon ui over a store with one report on an ephemeral
// loopback port, reads the fleet page and the report's JSON, and stops it
// by cancelling its context.
func TestUIServes(t *testing.T) {
	dir := t.TempDir()
	pub, report := fixture(t, dir)
	store, err := host.NewFileStore(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := attest.Inspect(report)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(context.Background(), "vm-ui", report, in.Report); err != nil {
		t.Fatal(err)
	}
	out := &syncbuf.Buffer{}
	a := &app{stdout: out, stderr: io.Discard, log: hclog.NewNullLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.ctx = ctx
	root := a.rootCmd()
	root.SetArgs([]string{"ui", "--data-dir", store.Dir, "--trust", pub, "--listen", "127.0.0.1:0"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	addr := regexp.MustCompile(`serving (http://[0-9.:]+)/`)
	var base string
	for i := 0; i < 200 && base == ""; i++ {
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("ui ended before serving: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if base == "" {
		t.Fatalf("ui never said where it serves: %q", out.String())
	}
	getBody := func(path string) (int, string) {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := getBody("/"); code != 200 || !strings.Contains(body, `<a href="/vm/`) {
		t.Errorf("GET /: %d\n%s", code, body)
	}
	code, body := getBody("/api/report/" + attest.ReportHash(report).String())
	if code != 200 || !strings.Contains(body, `"valid": true`) {
		t.Errorf("GET /api/report: %d\n%s", code, body)
	}
	res, err := http.Post(base+"/", "text/plain", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ui after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ui did not stop after its context ended")
	}
}
