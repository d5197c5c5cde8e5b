package host

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/guest"
)

// TestTrace: Options.Trace gets every report's steps. The first report
// dials and syncs the agent; the next one reuses the connection.
func TestTrace(t *testing.T) {
	var mu sync.Mutex
	var got []Timing
	r := newRigOpts(t, nil, func(o *Options) {
		o.Trace = func(tm Timing) { mu.Lock(); got = append(got, tm); mu.Unlock() }
	})
	for range 2 {
		if _, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.qemu.Inject("SHUTDOWN", map[string]any{"guest": true})
	r.waitReports(3)
	// The worker stores a report before it traces it: wait for the trace
	// of the third too.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("Trace called %d times, want 3", len(got))
	}
	first, second, shutdown := got[0], got[1], got[2]
	for i, tm := range got {
		if tm.VM != "vm-1" || tm.Err != nil || tm.Sign <= 0 || tm.Store <= 0 || tm.Status <= 0 {
			t.Errorf("timing %d = %+v: want vm-1, no error, sign, store and query-status timed", i, tm)
		}
		if sum := tm.Queued + tm.AgentConnect + tm.Agent + tm.Check + tm.HostRegions + tm.Sign + tm.Store; tm.Total < sum {
			t.Errorf("timing %d: total %s is less than its sequential steps (%s)", i, tm.Total, sum)
		}
	}
	if first.Event != attest.EventOnDemand || first.Redials != 1 || first.AgentConnect <= 0 || first.Agent <= 0 || first.Check <= 0 {
		t.Errorf("first report: %+v, want one dial with the connect, the round trip and the check timed", first)
	}
	if second.Redials != 0 || second.AgentConnect != 0 || second.Agent <= 0 {
		t.Errorf("second report: %+v, want the open connection reused", second)
	}
	if shutdown.Event != attest.EventShutdown || shutdown.Agent != 0 || shutdown.Redials != 0 {
		t.Errorf("shutdown report: %+v, want the agent not asked", shutdown)
	}
}

// watchedConn tells when a request for op attest passes through it.
type watchedConn struct {
	net.Conn
	attest func()
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if bytes.Contains(p[:n], []byte(`"op":"attest"`)) {
		c.attest()
	}
	return n, err
}

// TestStatusBesideAgent: query-status does not hold up the agent's round
// trip. QEMU's answer to query-status waits for the agent to receive the
// attest request: were the two in series, it would time out.
func TestStatusBesideAgent(t *testing.T) {
	dir := t.TempDir()
	weights := filepath.Join(dir, "weights")
	os.WriteFile(weights, bytes.Repeat([]byte("w"), 10000), 0o644)
	a, err := guest.New(&guest.Config{Regions: []guest.RegionConfig{{ID: "weights", File: weights}}}, guest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.Serve(context.Background(), &watchedConn{Conn: c, attest: func() { once.Do(func() { close(seen) }) }})
			c.Close()
		}
	}()
	var armed, late atomic.Bool
	r := newRigWith(t, func(c *VMConfig) { c.Agent = sock })
	r.qemu.Handle("query-status", func(json.RawMessage) (any, string, string) {
		if armed.Load() {
			select {
			case <-seen:
			case <-time.After(30 * time.Second): // a bound on the wait, not a measurement
				late.Store(true)
			}
		}
		return map[string]any{"status": "running", "running": true, "singlestep": false}, "", ""
	})
	armed.Store(true)
	e, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := r.verify(e)
	if late.Load() {
		t.Fatal("query-status was answered only after its wait for the agent timed out: it ran before the agent request, not beside it")
	}
	if res.Guest == nil || res.Report.Host.Facts["qmp_status"] != "running" {
		t.Errorf("report: agent %q, qmp_status %q; want guest evidence and running", res.Report.Host.Agent, res.Report.Host.Facts["qmp_status"])
	}
}
