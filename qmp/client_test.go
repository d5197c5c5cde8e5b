package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"

	"hvmon.dev/hvmon/qmp/qmptest"
)

func fake(t *testing.T) (*qmptest.Server, *Client) {
	t.Helper()
	s, err := qmptest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := New(s.Path, Options{Reconnect: true})
	t.Cleanup(func() { c.Disconnect() })
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestConnectAndRun(t *testing.T) {
	s, c := fake(t)
	if v := c.Greeting().QMP.Version.String(); v != "7.2.0" {
		t.Errorf("greeting version = %s", v)
	}
	// go-qemu's generated API runs on the client.
	st, err := raw.NewMonitor(c).QueryStatus()
	if err != nil || st.Status != raw.RunStateRunning || !st.Running {
		t.Fatalf("QueryStatus = %+v, %v", st, err)
	}
	if got := s.Received(); got[0] != "qmp_capabilities" {
		t.Errorf("first command = %q, want qmp_capabilities", got[0])
	}
	var unknown *Error
	if err := c.Execute(context.Background(), "no-such-command", nil, nil); !errors.As(err, &unknown) || unknown.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v, want a *Error of class CommandNotFound", err)
	}
}

// TestRepliesMatchedByID: a slow command does not receive a fast one's
// reply, whatever the order QEMU answers in.
func TestRepliesMatchedByID(t *testing.T) {
	s, c := fake(t)
	s.Handle("slow", func(json.RawMessage) (any, string, string) { return "slow", "", "" })
	s.Handle("fast", func(json.RawMessage) (any, string, string) { return "fast", "", "" })
	s.Delay("slow", 300*time.Millisecond)
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i, name := range []string{"slow", "fast"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r string
			if err := c.Execute(context.Background(), name, nil, &r); err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if results[0] != "slow" || results[1] != "fast" {
		t.Fatalf("results = %v, want [slow fast]", results)
	}
}

// TestOversizeReply: a reply far beyond 64 KiB (the limit of a line
// scanner) arrives whole.
func TestOversizeReply(t *testing.T) {
	s, c := fake(t)
	big := strings.Repeat("x", 1<<20)
	s.Handle("big", func(json.RawMessage) (any, string, string) { return big, "", "" })
	var got string
	if err := c.Execute(context.Background(), "big", nil, &got); err != nil || got != big {
		t.Fatalf("big reply: %d bytes, %v", len(got), err)
	}
	if err := c.Execute(context.Background(), "query-status", nil, nil); err != nil {
		t.Fatalf("after a big reply: %v", err)
	}
}

func TestContextTimeout(t *testing.T) {
	s, c := fake(t)
	s.Handle("hang", func(json.RawMessage) (any, string, string) { return nil, "", "" })
	s.Delay("hang", 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Execute(ctx, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Execute(hang) = %v, want DeadlineExceeded", err)
	}
	// The late reply is dropped; the next command gets its own.
	var st struct{ Status string }
	if err := c.Execute(context.Background(), "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Fatalf("after a timeout: %+v, %v", st, err)
	}
}

// TestEventsNeverBlockCommands: a subscriber that reads nothing does not
// stall commands, and when it reads again it learns how many events it lost.
func TestEventsNeverBlockCommands(t *testing.T) {
	s, c := fake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range QueueSize + 100 {
		s.Inject("STOP", map[string]any{"n": i})
	}
	if err := c.Execute(context.Background(), "query-status", nil, nil); err != nil {
		t.Fatalf("command while a subscriber lags: %v", err)
	}
	deadline := time.After(5 * time.Second)
	got, dropped := 0, 0
	for got+dropped < QueueSize+100 {
		select {
		case e := <-events:
			if e.Event == EventDropped {
				dropped += int(e.Data["count"].(int))
				continue
			}
			if e.Event == "STOP" {
				got++
			}
		case <-deadline:
			t.Fatalf("received %d events and %d drops, want %d in all", got, dropped, QueueSize+100)
		}
	}
	// One event may already be in hand, waiting to be sent, when the queue fills.
	if got < QueueSize || got > QueueSize+1 || got+dropped != QueueSize+100 {
		t.Errorf("got %d events, %d dropped; want %d (+1 in flight) and the rest dropped", got, dropped, QueueSize)
	}
}

// TestReconnect: QEMU goes away and comes back; the client reconnects,
// subscribers hear about it, and commands work again.
func TestReconnect(t *testing.T) {
	s, c := fake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, _ := c.Events(ctx)
	s.DropConnections()
	want := []string{EventDisconnected, EventConnected}
	for len(want) > 0 {
		select {
		case e := <-events:
			if e.Event == want[0] {
				want = want[1:]
			}
		case <-ctx.Done():
			t.Fatalf("still waiting for %v", want)
		}
	}
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
	c.Disconnect()
	if _, ok := <-events; ok {
		// drain: the channel must close after Disconnect
		for range events {
		}
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Disconnect: %v, want ErrClosed", err)
	}
}

func TestBadCommand(t *testing.T) {
	_, c := fake(t)
	for _, bad := range []string{`nope`, `{}`, `{"execute":""}`, `[1]`} {
		if _, err := c.Run([]byte(bad)); err == nil {
			t.Errorf("Run(%s) accepted", bad)
		}
	}
}

func TestRunJob(t *testing.T) {
	s, c := fake(t)
	jobs := map[string]string{}
	var mu sync.Mutex
	s.Handle("snapshot-save", func(args json.RawMessage) (any, string, string) {
		var a struct {
			JobID string `json:"job-id"`
			Tag   string `json:"tag"`
		}
		json.Unmarshal(args, &a)
		go func() {
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			if a.Tag == "bad" {
				jobs[a.JobID] = "Device 'x' is writable but does not support snapshots"
			} else {
				jobs[a.JobID] = ""
			}
			mu.Unlock()
			s.Inject("JOB_STATUS_CHANGE", map[string]any{"id": a.JobID, "status": "concluded"})
		}()
		return nil, "", ""
	})
	s.Handle("query-jobs", func(json.RawMessage) (any, string, string) {
		mu.Lock()
		defer mu.Unlock()
		var out []map[string]any
		for id, e := range jobs {
			j := map[string]any{"id": id, "type": "snapshot-save", "status": "concluded"}
			if e != "" {
				j["error"] = e
			}
			out = append(out, j)
		}
		return out, "", ""
	})
	s.Handle("job-dismiss", func(args json.RawMessage) (any, string, string) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		mu.Lock()
		delete(jobs, a.ID)
		mu.Unlock()
		return nil, "", ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	events, _ := c.Events(ctx)
	err := c.RunJob(ctx, events, "snap1", func(ctx context.Context) error {
		return c.SnapshotSave(ctx, "snap1", "good", "disk0", []string{"disk0"})
	})
	if err != nil {
		t.Fatalf("RunJob(good) = %v", err)
	}
	err = c.RunJob(ctx, events, "snap2", func(ctx context.Context) error {
		return c.SnapshotSave(ctx, "snap2", "bad", "disk0", nil)
	})
	if !errors.Is(err, ErrJobFailed) || !strings.Contains(err.Error(), "does not support snapshots") {
		t.Fatalf("RunJob(bad) = %v, want ErrJobFailed with QEMU's reason", err)
	}
	if len(jobs) != 0 {
		t.Errorf("jobs left undismissed: %v", jobs)
	}
}
