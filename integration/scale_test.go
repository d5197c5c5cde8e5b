//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/guest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// TestScaleStorm: one hvmon daemon process follows 300 fake VMs (fake
// QEMUs and real agents in this process) and gets a boot event from all of
// them at once. No event may be lost, every report must be stored, and
// the daemon's RSS must stay within 150 MiB; the wall time is reported.
func TestScaleStorm(t *testing.T) {
	const n = 300
	dir, err := os.MkdirTemp("", "hvmon-s")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "hvmon")
	if b, err := exec.Command("go", "build", "-o", bin, "../cmd/hvmon").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, b)
	}
	weights := filepath.Join(dir, "weights")
	os.WriteFile(weights, bytes.Repeat([]byte("w"), 64<<10), 0o644)
	var cfg strings.Builder
	keyPath := filepath.Join(dir, "host.key")
	if _, err := keyfile.Generate(keyPath, keyfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&cfg, "key = %q\ndata_dir = %q\napi_socket = %q\nmetrics_listen = \"off\"\nagent_timeout = \"60s\"\n",
		keyPath, filepath.Join(dir, "data"), filepath.Join(dir, "api.sock"))
	var servers []*qmptest.Server
	var listeners []net.Listener
	var wg sync.WaitGroup
	for i := range n {
		vdir := filepath.Join(dir, strconv.Itoa(i))
		os.Mkdir(vdir, 0o755)
		q, err := qmptest.New(vdir)
		if err != nil {
			t.Fatal(err)
		}
		q.Handle("migrate-set-capabilities", func(json.RawMessage) (any, string, string) { return nil, "", "" })
		defer q.Close()
		servers = append(servers, q)
		a, err := guest.New(&guest.Config{Regions: []guest.RegionConfig{{ID: "weights", File: weights}}}, guest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("unix", filepath.Join(vdir, "agent.sock"))
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { a.Serve(context.Background(), c); c.Close() }()
			}
		}()
		fmt.Fprintf(&cfg, "vm \"vm-%03d\" {\n  qmp = %q\n  agent = %q\n}\n", i, q.Path, filepath.Join(vdir, "agent.sock"))
	}
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
		wg.Wait()
	}()
	cfgPath := filepath.Join(dir, "hvmon.hcl")
	os.WriteFile(cfgPath, []byte(cfg.String()), 0o600)
	var stderr bytes.Buffer
	d := exec.Command(bin, "daemon", "--config", cfgPath, "--log-level", "warn")
	d.Stderr = &stderr
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { d.Process.Signal(os.Interrupt); d.Wait() }()
	api := host.NewAPIClient(filepath.Join(dir, "api.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		vms, err := api.VMs(ctx)
		connected := 0
		for _, v := range vms {
			if v.Connected {
				connected++
			}
		}
		if err == nil && connected == n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("daemon: %d of %d VMs connected (%v)\n%s", connected, n, err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle := rssKiB(t, d.Process.Pid)
	start := time.Now()
	for _, q := range servers {
		go q.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	}
	store := &host.FileStore{Dir: filepath.Join(dir, "data")}
	peak := idle
	var es []host.Entry
	for {
		es, _ = store.List(ctx, host.Query{Event: attest.EventBoot})
		peak = max(peak, rssKiB(t, d.Process.Pid))
		if len(es) >= n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d boot reports stored\n%s", len(es), n, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	vms := map[string]bool{}
	for _, e := range es {
		vms[e.VM] = true
	}
	if len(es) != n || len(vms) != n {
		t.Errorf("%d boot reports for %d VMs, want %d for %d", len(es), len(vms), n, n)
	}
	t.Logf("storm of %d simultaneous boot events: all %d reports stored in %s; daemon RSS idle %d MiB, peak %d MiB",
		n, len(es), wall.Round(time.Millisecond), idle>>10, peak>>10)
	if peak > 150<<10 {
		t.Errorf("daemon RSS peaked at %d MiB, want <= 150 MiB", peak>>10)
	}
}

func rssKiB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}
