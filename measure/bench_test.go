package measure

import (
	"context"
	"crypto/sha3"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// The benchmarks `make bench` runs and tabulates: the engine over 1 GiB in
// memory next to the standard library's single-stream SHA3-256 over the
// same buffer, and a 1% re-measurement next to a full one.

var gib = sync.OnceValue(func() []byte { return content(1 << 30) })

// BenchmarkSHA3Stream is the baseline: crypto/sha3 over 1 GiB, one stream.
func BenchmarkSHA3Stream(b *testing.B) {
	buf := gib()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sha3.Sum256(buf)
	}
}

// BenchmarkPageTree is Bytes over 1 GiB: the page-tree root, all cores.
func BenchmarkPageTree(b *testing.B) {
	buf := gib()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		Bytes(buf)
	}
}

// BenchmarkPageTreeSection is the same through Section (ReadAt into
// per-worker buffers), as files are read.
func BenchmarkPageTreeSection(b *testing.B) {
	src := must(Section(memReaderAt(gib()), 0, 1<<30))
	b.SetBytes(1 << 30)
	b.ReportAllocs()
	for b.Loop() {
		must(Root(context.Background(), src, nil))
	}
}

type memReaderAt []byte

func (m memReaderAt) ReadAt(p []byte, off int64) (int, error) { return copy(p, m[off:]), nil }

// BenchmarkLeavesX4 is the four-way leaf kernel on one core.
func BenchmarkLeavesX4(b *testing.B) {
	if !simd {
		b.Skip("no four-way SIMD permutation on this CPU")
	}
	h := newX4()
	buf := content(4 * PageSize)
	p := func(i int) *[PageSize]byte { return (*[PageSize]byte)(buf[i*PageSize:]) }
	var out [4]Digest
	b.SetBytes(4 * PageSize)
	for b.Loop() {
		h.leaves(p(0), p(1), p(2), p(3), &out)
	}
}

// BenchmarkMeasureFull is a full measurement of 1 GiB keeping the leaves
// (what a Tracker does first).
func BenchmarkMeasureFull(b *testing.B) {
	buf := gib()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		must(Measure(context.Background(), Memory(buf), nil))
	}
}

// BenchmarkUpdate1Percent re-hashes 1% of the pages of 1 GiB, chosen at
// random, and recomputes the root.
func BenchmarkUpdate1Percent(b *testing.B) {
	buf := gib()
	tr := must(Measure(context.Background(), Memory(buf), nil))
	pages := int64(len(tr.leaves))
	rng := rand.New(rand.NewPCG(1, 2))
	dirty := make([]PageRange, pages/100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for k := range dirty {
			p := rng.Int64N(pages)
			dirty[k] = PageRange{p, p}
		}
		b.StartTimer()
		must(tr.Update(context.Background(), Memory(buf), dirty, nil))
	}
}

// TestMemoryBound checks the memory budget of a measurement: at most
// 40 MiB plus 32 bytes a page allocated in total (so at most that much
// live at its peak), for Root, Measure and Update over a 256 MiB source
// read through per-worker buffers, starting with no pooled workers.
func TestMemoryBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("256 MiB: skipped with -short and -race")
	}
	const size = 256 << 20
	src := genSource{size}
	budget := uint64(40<<20 + 32*size/PageSize)
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC() // twice: the second empties the pool of workers,
		runtime.GC() // whose buffers the pass must then allocate and count
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var tr *Tree
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Root", func() { must(Root(context.Background(), src, nil)) }},
		{"Measure", func() { tr = must(Measure(context.Background(), src, nil)) }},
		{"Update(all pages)", func() { must(tr.Update(context.Background(), src, []PageRange{{0, size/PageSize - 1}}, nil)) }},
	} {
		got := allocated(tc.f)
		t.Logf("%s of 256 MiB allocated %.2f MiB (budget %.0f MiB)", tc.name, float64(got)/(1<<20), float64(budget)/(1<<20))
		if got > budget {
			t.Errorf("%s of 256 MiB allocated %d bytes, budget %d", tc.name, got, budget)
		}
	}
}
