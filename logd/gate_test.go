package logd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/transparency-dev/tessera"
)

// sizedReader is a reader whose log has sequenced next entries.
type sizedReader struct {
	fakeReader
	next uint64
}

func (r *sizedReader) NextIndex(context.Context) (uint64, error)      { return r.next, nil }
func (r *sizedReader) IntegratedSize(context.Context) (uint64, error) { return r.next - 1, nil }

// stepFollower is a dedup index follower whose progress the test sets,
// counting the times it is asked.
type stepFollower struct {
	processed atomic.Uint64
	asked     atomic.Int64
}

func (f *stepFollower) Name() string                              { return "test" }
func (f *stepFollower) Follow(context.Context, tessera.LogReader) {}
func (f *stepFollower) EntriesProcessed(context.Context) (uint64, error) {
	f.asked.Add(1)
	return f.processed.Load(), nil
}

// The server refuses submissions until the dedup index has followed every
// entry sequenced before the start: a report resubmitted after a crash
// would otherwise be logged twice.
func TestReadinessGate(t *testing.T) {
	f := &stepFollower{}
	f.processed.Store(4)
	s := &Server{reader: &sizedReader{next: 5}, follower: f, log: hclog.NewNullLogger(), metrics: NewMetrics(nil), cfg: &Config{}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { s.gate(ctx); close(done) }()
	for f.asked.Load() < 3 {
		if t.Context().Err() != nil {
			t.Fatal("the gate never asked the follower")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Ready() {
		t.Fatal("ready with 4 of 5 entries followed")
	}
	f.processed.Store(5)
	<-done
	if !s.Ready() {
		t.Fatal("not ready once every entry is followed")
	}
}

func TestFallbackReadTile(t *testing.T) {
	full := bytes.Repeat([]byte{7}, 256*32)
	read := fallbackReadTile(func(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
		switch {
		case index == 9:
			return nil, errors.New("broken")
		case p != 0:
			return nil, os.ErrNotExist
		case index == 8:
			return full[:64], nil
		}
		return full, nil
	})
	if b, err := read(t.Context(), 0, 1, 3); err != nil || len(b) != 96 {
		t.Errorf("partial from full: %d bytes, %v", len(b), err)
	}
	if _, err := read(t.Context(), 0, 8, 3); err == nil {
		t.Error("a short full tile served as a partial one")
	}
	if _, err := read(t.Context(), 0, 9, 0); err == nil {
		t.Error("a read error was swallowed")
	}
}
