package logd

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

// The proofs logd builds from tiles equal those of an independent tree
// (x/mod's sumdb/tlog in tlogtest) at sizes around tile edges on both tile
// levels, for indexes at both ends and inside, also when the log has
// collected its partial tiles; many proofs of one checkpoint are built
// concurrently.
func TestProofsMatchReference(t *testing.T) {
	const n = 65536 + 300
	for _, gc := range []bool{false, true} {
		t.Run(fmt.Sprintf("gc=%v", gc), func(t *testing.T) {
			l := tlogtest.New(logKey(t), tlog.SignerOptions{Now: func() time.Time { return testNow }})
			l.GC = gc
			var batch [][]byte
			for i := range n {
				batch = append(batch, fmt.Appendf(nil, "entry %d", i))
			}
			if _, err := l.Append(batch...); err != nil {
				t.Fatal(err)
			}
			c := &proofCache{readTile: fallbackReadTile(l.ReadTile), policy: tlog.Policy{Log: logKey(t).Verifier()}}
			for _, size := range []uint64{1, 2, 3, 255, 256, 257, 511, 513, 65535, 65536, 65537, n} {
				cp, err := l.Checkpoint(size)
				if err != nil {
					t.Fatal(err)
				}
				idx := []uint64{0, size / 3, size / 2, size - 1}
				if size > 1 {
					idx = append(idx, size-2)
				}
				var wg sync.WaitGroup
				for _, i := range idx {
					for range 4 {
						wg.Go(func() {
							got, err := c.prove(context.Background(), cp, i)
							if err != nil {
								t.Errorf("size %d index %d: %v", size, i, err)
								return
							}
							want, err := l.Proof(i, cp)
							if err != nil {
								t.Error(err)
								return
							}
							if !bytes.Equal(got, want) {
								t.Errorf("size %d index %d: proof\n%s\nwant\n%s", size, i, got, want)
							}
						})
					}
				}
				wg.Wait()
			}
		})
	}
}

// A tile of the wrong length is an error, not a wrong proof.
func TestProofsShortTile(t *testing.T) {
	l := tlogtest.New(logKey(t), tlog.SignerOptions{Now: func() time.Time { return testNow }})
	for i := range 300 {
		if _, err := l.Append(fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := l.Checkpoint(300)
	if err != nil {
		t.Fatal(err)
	}
	short := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		b, err := l.ReadTile(ctx, level, index, p)
		return b[:len(b)-32], err
	}
	c := &proofCache{readTile: short, policy: tlog.Policy{Log: logKey(t).Verifier()}}
	if p, err := c.prove(context.Background(), cp, 5); err == nil {
		t.Fatalf("proof from a short tile:\n%s", p)
	}
}

// Concurrent proofs of one checkpoint read each tile once, a full tile is
// not read again for a later checkpoint, and a failed read is tried again
// by the next proof.
func TestProofsReadTilesOnce(t *testing.T) {
	l := tlogtest.New(logKey(t), tlog.SignerOptions{Now: func() time.Time { return testNow }})
	for i := range 600 {
		if _, err := l.Append(fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	reads := map[string]int{}
	fail := true
	read := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			fail = false
			return nil, fmt.Errorf("tile store down")
		}
		reads[tlog.TilePath(level, index, p)]++
		return l.ReadTile(ctx, level, index, p)
	}
	c := &proofCache{readTile: read, policy: tlog.Policy{Log: logKey(t).Verifier()}}
	cp300, err := l.Checkpoint(300)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.prove(context.Background(), cp300, 1); err == nil {
		t.Fatal("a proof while the tiles cannot be read")
	}
	var wg sync.WaitGroup
	for i := range uint64(300) {
		wg.Go(func() {
			if _, err := c.prove(context.Background(), cp300, i); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	cp600, err := l.Checkpoint(600)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 100, 599} {
		if _, err := c.prove(context.Background(), cp600, i); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"tile/0/000": 1, "tile/0/001.p/44": 1, "tile/0/002.p/88": 1, "tile/1/000.p/1": 1, "tile/1/000.p/2": 1}
	if fmt.Sprint(reads) != fmt.Sprint(want) {
		t.Errorf("tiles read %v, want %v", reads, want)
	}
}
