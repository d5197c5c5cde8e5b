package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/qmp/qmptest"
)

// TestEndlessMessage: a QEMU that streams one message without end (a
// string, an array, a number, nesting) costs the client its connection,
// with ErrMessageTooLarge, not memory: the client allocates a few times
// MaxMessageSize (the decoder's buffer doubles), far under the 128 MiB
// streamed, reconnects, and works.
func TestEndlessMessage(t *testing.T) {
	const streamed = 128 << 20
	for _, tc := range []struct{ name, prefix, fill string }{
		{"string in an event", `{"event":"X","data":{"s":"`, "a"},
		{"array in a reply", `{"id":"hvmon-1","return":[`, "0,"},
		{"number", ` `, "1"},
		{"whitespace", "", " \n"},
		{"nesting", "", "["},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := fake(t)
			events, _ := c.Events(context.Background())
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			n, err := s.Stream(qmptest.Repeat(tc.prefix, tc.fill, streamed))
			if err == nil {
				t.Fatalf("the client read all %d bytes of one message", n)
			}
			var cause string
			for e := range events {
				if e.Event == EventDisconnected {
					cause = fmt.Sprint(e.Data["error"])
					break
				}
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 6*MaxMessageSize {
				t.Errorf("the client allocated %d MiB for an endless message, want at most %d MiB", alloc>>20, 6*MaxMessageSize>>20)
			}
			if tc.fill != "[" && !strings.Contains(cause, ErrMessageTooLarge.Error()) {
				t.Errorf("disconnected with %q, want %q", cause, ErrMessageTooLarge)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.WaitConnected(ctx); err != nil {
				t.Fatalf("no reconnection: %v", err)
			}
			if _, err := c.QueryStatus(ctx); err != nil {
				t.Fatalf("after reconnecting: %v", err)
			}
		})
	}
}

// TestLargeMessageUnderTheBound: a reply of nearly MaxMessageSize arrives.
func TestLargeMessageUnderTheBound(t *testing.T) {
	s, c := fake(t)
	big := strings.Repeat("x", MaxMessageSize-100)
	s.Handle("big", func(json.RawMessage) (any, string, string) { return big, "", "" })
	var got string
	if err := c.Execute(context.Background(), "big", nil, &got); err != nil || got != big {
		t.Fatalf("Execute(big) = %d bytes, %v", len(got), err)
	}
}

// TestSilentQEMU: a command QEMU never answers ends with the client's
// timeout when the caller gave no deadline, and the connection serves
// the next command.
func TestSilentQEMU(t *testing.T) {
	s, err := qmptest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.Handle("silent", func(json.RawMessage) (any, string, string) { return nil, "", "" })
	s.Delay("silent", time.Hour)
	c := New(s.Path, Options{Timeout: 100 * time.Millisecond})
	t.Cleanup(func() { c.Disconnect() })
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(context.Background(), "silent", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Execute(a command never answered) = %v, want DeadlineExceeded", err)
	}
	if _, err := c.QueryStatus(context.Background()); err != nil {
		t.Fatalf("after a timeout: %v", err)
	}
}
