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

// stormRig is one hvmon daemon process (the real binary) following n fake
// VMs: fake QEMUs (qmptest) and real agents (guest.Agent on each VM's agent
// socket), all in this process.
type stormRig struct {
	t        *testing.T
	n        int
	dir      string
	bin      string
	cfgPath  string
	dataDir  string
	keyPath  string
	metrics  string // host:port, or "off"
	servers  []*qmptest.Server
	agents   []*guest.Agent
	d        *exec.Cmd
	stderr   *os.File
	api      *host.APIClient
	daemonNo int
}

// newStormRig builds hvmon, makes the VMs and writes the daemon's
// configuration; metrics are served on a free loopback port when withMetrics.
func newStormRig(t *testing.T, n int, withMetrics bool) *stormRig {
	t.Helper()
	dir, err := os.MkdirTemp("", "hvmon-s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !*keep {
			os.RemoveAll(dir)
		}
	})
	r := &stormRig{t: t, n: n, dir: dir, bin: filepath.Join(dir, "hvmon"), dataDir: filepath.Join(dir, "data"), metrics: "off"}
	if b, err := exec.Command("go", "build", "-o", r.bin, "../cmd/hvmon").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, b)
	}
	if withMetrics {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.metrics = ln.Addr().String()
		ln.Close()
	}
	weights := filepath.Join(dir, "weights")
	if err := os.WriteFile(weights, bytes.Repeat([]byte("w"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	r.keyPath = filepath.Join(dir, "host.key")
	if _, err := keyfile.Generate(r.keyPath, keyfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&cfg, "key = %q\ndata_dir = %q\napi_socket = %q\nmetrics_listen = %q\nagent_timeout = \"60s\"\n",
		r.keyPath, r.dataDir, filepath.Join(dir, "api.sock"), r.metrics)
	var listeners []net.Listener
	var wg sync.WaitGroup
	for i := range n {
		vdir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		q, err := qmptest.New(vdir)
		if err != nil {
			t.Fatal(err)
		}
		q.Handle("migrate-set-capabilities", func(json.RawMessage) (any, string, string) { return nil, "", "" })
		t.Cleanup(q.Close)
		r.servers = append(r.servers, q)
		a, err := guest.New(&guest.Config{Regions: []guest.RegionConfig{{ID: "weights", File: weights}}}, guest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.agents = append(r.agents, a)
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
		fmt.Fprintf(&cfg, "vm %q {\n  qmp = %q\n  agent = %q\n}\n", stormVM(i), q.Path, filepath.Join(vdir, "agent.sock"))
	}
	t.Cleanup(func() {
		for _, ln := range listeners {
			ln.Close()
		}
		wg.Wait()
	})
	r.cfgPath = filepath.Join(dir, "hvmon.hcl")
	if err := os.WriteFile(r.cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.api = host.NewAPIClient(filepath.Join(dir, "api.sock"))
	return r
}

func stormVM(i int) string { return fmt.Sprintf("vm-%03d", i) }

// start runs the daemon; its stderr goes to a file of its own (logPath).
func (r *stormRig) start(level string, args ...string) {
	r.t.Helper()
	r.daemonNo++
	f, err := os.Create(r.logPath())
	if err != nil {
		r.t.Fatal(err)
	}
	r.stderr = f
	r.d = exec.Command(r.bin, append([]string{"daemon", "--config", r.cfgPath, "--log-level", level}, args...)...)
	r.d.Stderr = f
	if err := r.d.Start(); err != nil {
		r.t.Fatal(err)
	}
	d := r.d
	r.t.Cleanup(func() {
		if d.ProcessState == nil {
			d.Process.Signal(os.Interrupt)
			d.Wait()
		}
	})
}

func (r *stormRig) logPath() string {
	return filepath.Join(r.dir, fmt.Sprintf("daemon-%d.log", r.daemonNo))
}

func (r *stormRig) log() string {
	b, _ := os.ReadFile(r.logPath())
	return string(b)
}

// waitConnected waits until the daemon follows every VM over QMP.
func (r *stormRig) waitConnected(ctx context.Context) {
	r.t.Helper()
	for {
		vms, err := r.api.VMs(ctx)
		connected := 0
		for _, v := range vms {
			if v.Connected {
				connected++
			}
		}
		if err == nil && connected == r.n {
			return
		}
		if ctx.Err() != nil {
			r.t.Fatalf("daemon: %d of %d VMs connected (%v)\n%s", connected, r.n, err, tail(r.log(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestScaleStorm: one hvmon daemon process follows 300 fake VMs (fake
// QEMUs and real agents in this process) and gets a boot event from all of
// them at once. No event may be lost, every report must be stored, and
// the daemon's RSS must stay within 150 MiB; the wall time is reported.
func TestScaleStorm(t *testing.T) {
	const n = 300
	r := newStormRig(t, n, false)
	r.start("warn")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r.waitConnected(ctx)
	pid := r.d.Process.Pid
	idle := rssKiB(t, pid)
	start := time.Now()
	for _, q := range r.servers {
		go q.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
	}
	store := &host.FileStore{Dir: r.dataDir}
	peak := idle
	var es []host.Entry
	for {
		es, _ = store.List(ctx, host.Query{Event: attest.EventBoot})
		peak = max(peak, rssKiB(t, pid))
		if len(es) >= n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d boot reports stored\n%s", len(es), n, tail(r.log(), 4000))
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
