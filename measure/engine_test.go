package measure

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
)

// reference is the single-stream definition, page by page on the
// standard library: what the engine must equal bit for bit.
func reference(b []byte) Digest {
	var leaves []Digest
	for off := 0; off < len(b); off += PageSize {
		leaves = append(leaves, LeafHash(b[off:min(off+PageSize, len(b))]))
	}
	return RootFromLeaves(leaves)
}

// engines runs f on each leaf path this CPU has: eight-way (AVX-512),
// four-way (AVX2) and portable.
func engines(t *testing.T, f func(t *testing.T)) {
	old8, old4 := simd8, simd
	defer func() { simd8, simd = old8, old4 }()
	if old8 {
		t.Run("x8", f)
	}
	simd8 = false
	if old4 {
		t.Run("x4", f)
	}
	simd = false
	t.Run("portable", f)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// sizes covers the page boundaries, odd page counts, powers of two, and
// the subtree and batch boundaries of the engine.
var sizes = []int{
	0, 1, 2, 135, 136, 137, 4095, 4096, 4097, 8191, 8192, 8193, 3*4096 + 1,
	5 * 4096, 7*4096 - 1, 31 * 4096, 32 * 4096, 33*4096 + 17, 63 * 4096,
	64 * 4096, 65 * 4096, 255 * 4096, 256 * 4096, 257*4096 + 1, 1000 * 4096,
	1 << 20, 1<<20 + 4096, 3<<20 + 1, 4 << 20, 9<<20 - 1,
}

func TestEngineEqualsReference(t *testing.T) {
	engines(t, func(t *testing.T) {
		for _, n := range sizes {
			b := content(n)
			want := reference(b)
			if got := Bytes(b); got != want {
				t.Errorf("Bytes(%d bytes) = %s, want %s", n, got, want)
			}
			if got, err := sectionRoot(bytes.NewReader(b), int64(n)); err != nil || got != want {
				t.Errorf("Root(Section(%d bytes)) = %s, %v; want %s", n, got, err, want)
			}
			for _, w := range []int{1, 3} {
				tr, err := Measure(context.Background(), must(Section(bytes.NewReader(b), 0, int64(n))), &Options{Workers: w})
				if err != nil || tr.Root() != want {
					t.Errorf("Measure(%d bytes, %d workers) = %v, %v; want %s", n, w, tr, err, want)
					continue
				}
				var leaves []Digest
				for off := 0; off < n; off += PageSize {
					leaves = append(leaves, LeafHash(b[off:min(off+PageSize, n)]))
				}
				if d := Diff(leaves, tr.Leaves()); d != nil {
					t.Errorf("Measure(%d bytes): leaves differ from LeafHash at %v", n, d)
				}
			}
		}
	})
}

// TestReduceShape: the level-by-level fold equals RFC 9162's recursive
// split for every leaf count up to 300, on both paths.
func TestReduceShape(t *testing.T) {
	leaves := make([]Digest, 300)
	for i := range leaves {
		leaves[i] = LeafHash([]byte{byte(i), byte(i >> 8)})
	}
	for n := 0; n <= len(leaves); n++ {
		want := RootFromLeaves(leaves[:n])
		for _, h := range []nodeHasher{{}, {h4: newX4()}, {h8: new(x8)}} {
			if h.h8 != nil && !simd8 {
				continue
			}
			if got := reduce(h, slices.Clone(leaves[:n])); got != want {
				t.Errorf("reduce(%d leaves, %+v) = %s, want %s", n, h, got, want)
			}
		}
	}
}

// genSource yields the vector pattern of docs/FORMAT.md without holding
// the region in memory.
type genSource struct{ size int64 }

func (g genSource) Size() int64 { return g.size }

// pattern holds the vector pattern from every phase: pattern[k:] is the
// content from any offset ≡ k (mod 251), for up to 1 MiB.
var pattern = content(251 + 1<<20)

func (g genSource) ReadPages(_ context.Context, p []byte, off int64) error {
	for len(p) > 0 {
		n := copy(p, pattern[off%251:][:1<<20])
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// TestOneGiB compares the engine with the single-stream reference on a
// 1 GiB region (262144 leaves), read through a Source: about 7 s here.
// Skipped with -short, and under the race detector, which makes it take
// a minute; scripts/test.sh runs it in a separate pass without -race.
func TestOneGiB(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1 GiB: skipped with -short and -race; run go test -run TestOneGiB ./measure")
	}
	const size = 1 << 30
	src := genSource{size}
	page := make([]byte, PageSize)
	leaves := make([]Digest, 0, size/PageSize)
	for off := int64(0); off < size; off += PageSize {
		src.ReadPages(context.Background(), page, off)
		leaves = append(leaves, LeafHash(page))
	}
	want := RootFromLeaves(leaves)
	got, err := Root(context.Background(), src, nil)
	if err != nil || got != want {
		t.Fatalf("Root(1 GiB) = %s, %v; want %s", got, err, want)
	}
	tr, err := Measure(context.Background(), src, nil)
	if err != nil || tr.Root() != want {
		t.Fatalf("Measure(1 GiB) = %v, %v; want %s", tr, err, want)
	}
	if d := Diff(leaves, tr.Leaves()); d != nil {
		t.Fatalf("Measure(1 GiB): leaves differ at %v", d)
	}
}

// FuzzFastTree checks the engine against the reference on arbitrary
// contents and sizes, on both paths and with a partial update.
func FuzzFastTree(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and large ones take it longer than a smoke run lasts.
	// TestEngineEqualsReference covers the large sizes.
	for _, n := range sizes[:15] {
		f.Add(content(n), uint16(n/3))
	}
	f.Add(bytes.Repeat([]byte{0xff}, 5*PageSize+1), uint16(4*PageSize))
	f.Fuzz(func(t *testing.T, b []byte, at uint16) {
		if len(b) > 1<<16 {
			b = b[:1<<16] // keeps each run, and so minimization, quick
		}
		want := reference(b)
		if got := Bytes(b); got != want {
			t.Fatalf("Bytes(%d bytes) = %s, want %s", len(b), got, want)
		}
		old8, old4 := simd8, simd
		simd8 = false
		got4 := Bytes(b)
		simd = false
		got := Bytes(b)
		simd8, simd = old8, old4
		if got4 != want || got != want {
			t.Fatalf("Bytes(%d bytes) without AVX-512 = %s, portable = %s, want %s", len(b), got4, got, want)
		}
		if len(b) == 0 {
			return
		}
		// Change one byte, update only its page, and compare.
		tr := must(Measure(context.Background(), Memory(b), nil))
		c := slices.Clone(b)
		i := int(at) % len(c)
		c[i] ^= 0x80
		page := int64(i / PageSize)
		changed, err := tr.Update(context.Background(), Memory(c), []PageRange{{page, page}}, nil)
		if err != nil || tr.Root() != reference(c) || !slices.Equal(changed, []PageRange{{page, page}}) {
			t.Fatalf("Update(page %d) = %v, %v, root %s; want page %d changed, root %s", page, changed, err, tr.Root(), page, reference(c))
		}
	})
}

func TestUpdate(t *testing.T) {
	engines(t, func(t *testing.T) {
		for _, n := range []int{1, 4096, 5*4096 + 3, 33 * 4096, 600*4096 + 1} {
			b := content(n)
			tr := must(Measure(context.Background(), Memory(b), nil))
			pages := Pages(int64(n))
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			for round := range 5 {
				c := slices.Clone(b)
				var dirty, want []PageRange
				for range 1 + round*3 {
					p := rng.Int64N(pages)
					c[p*PageSize+rng.Int64N(min(PageSize, int64(n)-p*PageSize))] ^= 1
					dirty = append(dirty, PageRange{p, min(p+rng.Int64N(3), pages-1)}) // a superset
				}
				for p := range pages {
					if !bytes.Equal(b[p*PageSize:min((p+1)*PageSize, int64(n))], c[p*PageSize:min((p+1)*PageSize, int64(n))]) {
						want = append(want, PageRange{p, p})
					}
				}
				changed, err := tr.Update(context.Background(), Memory(c), dirty, &Options{Workers: 2})
				if err != nil || tr.Root() != reference(c) {
					t.Fatalf("%d bytes, round %d: Update = %v, root %s; want %s", n, round, err, tr.Root(), reference(c))
				}
				if want = normalize(want); !slices.Equal(changed, want) {
					t.Errorf("%d bytes, round %d: changed %v, want %v", n, round, changed, want)
				}
				b = c
			}
		}
	})
	tr := must(Measure(context.Background(), Memory(content(8192)), nil))
	for _, bad := range [][]PageRange{{{-1, 0}}, {{0, 2}}, {{1, 0}}} {
		if _, err := tr.Update(context.Background(), Memory(content(8192)), bad, nil); err == nil {
			t.Errorf("Update(%v) of a 2-page tree accepted", bad)
		}
	}
	if _, err := tr.Update(context.Background(), Memory(content(4096)), []PageRange{{0, 0}}, nil); err == nil {
		t.Error("Update from a source of another size accepted")
	}
}

type failingSource struct {
	Source
	at int64
}

func (f failingSource) ReadPages(ctx context.Context, p []byte, off int64) error {
	if off <= f.at && f.at < off+int64(len(p)) {
		return errors.New("boom")
	}
	return f.Source.ReadPages(ctx, p, off)
}

func TestErrors(t *testing.T) {
	src := failingSource{Memory(content(3 << 20)), 2 << 20}
	if _, err := Root(context.Background(), src, nil); err == nil || err.Error() != "boom" {
		t.Errorf("Root(failing source) = %v, want boom", err)
	}
	tr := must(Measure(context.Background(), Memory(content(3<<20)), nil))
	if _, err := tr.Update(context.Background(), src, []PageRange{{0, 767}}, nil); err == nil {
		t.Error("Update(failing source) succeeded")
	}
	if _, err := tr.Update(context.Background(), Memory(content(3<<20)), []PageRange{{0, 0}}, nil); err == nil {
		t.Error("Update of a stale tree succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Root(ctx, Memory(content(1<<20)), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Root(cancelled) = %v", err)
	}
	if _, err := Section(bytes.NewReader(nil), -1, 1); err == nil {
		t.Error("Section(offset -1) accepted")
	}
}

func TestProgress(t *testing.T) {
	var sum atomic.Int64
	n := 5<<20 + 7
	if _, err := Root(context.Background(), Memory(content(n)), &Options{Progress: func(b int64) { sum.Add(b) }}); err != nil {
		t.Fatal(err)
	}
	if sum.Load() != int64(n) {
		t.Errorf("progress summed to %d bytes, want %d", sum.Load(), n)
	}
}

func TestDiff(t *testing.T) {
	l := func(s string) []Digest {
		out := make([]Digest, len(s))
		for i := range s {
			out[i][0] = s[i]
		}
		return out
	}
	for _, tc := range []struct {
		a, b string
		want []PageRange
	}{
		{"", "", nil},
		{"abcd", "abcd", nil},
		{"abcd", "aXcd", []PageRange{{1, 1}}},
		{"abcdefgh", "aXXdeXgh", []PageRange{{1, 2}, {5, 5}}},
		{"abc", "abcde", []PageRange{{3, 4}}},
		{"abcde", "aXc", []PageRange{{1, 1}, {3, 4}}},
	} {
		if got := Diff(l(tc.a), l(tc.b)); !slices.Equal(got, tc.want) {
			t.Errorf("Diff(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if s := (PageRange{1024, 1031}).String(); s != "pages 1024–1031" {
		t.Errorf("String = %q", s)
	}
}

// dirtyMemory is a DirtySource over a buffer whose writer reports the
// pages it writes.
type dirtyMemory struct {
	memory
	dirty []PageRange
	err   error
}

func (d *dirtyMemory) TakeDirty(context.Context) ([]PageRange, error) {
	out := d.dirty
	d.dirty = nil
	return out, d.err
}

func (d *dirtyMemory) write(off int) {
	d.memory[off] ^= 0x11
	p := int64(off / PageSize)
	d.dirty = append(d.dirty, PageRange{p, p})
}

func TestTracker(t *testing.T) {
	src := &dirtyMemory{memory: content(100 * PageSize)}
	tr := NewTracker(src, nil)
	step := func(want Mode, rehashed int64) *Result {
		t.Helper()
		res, err := tr.Measure(context.Background())
		if err != nil || res.Root != reference(src.memory) || res.Mode != want || res.Rehashed != rehashed {
			t.Fatalf("Measure = %+v, %v; want root %s, mode %q, %d rehashed", res, err, reference(src.memory), want, rehashed)
		}
		return res
	}
	step(ModeFull, 100)
	src.write(5)
	src.write(99*PageSize + 1)
	if res := step(ModeIncremental, 2); !slices.Equal(res.Changed, []PageRange{{0, 0}, {99, 99}}) {
		t.Errorf("changed %v", res.Changed)
	}
	step(ModeIncremental, 0)
	src.err = errors.New("no tracking now")
	src.write(3 * PageSize)
	res := step("full-fallback: no tracking now", 100)
	if r, ok := res.Mode.Fallback(); !ok || r != "no tracking now" || !slices.Equal(res.Changed, []PageRange{{3, 3}}) {
		t.Errorf("fallback reason %q, changed %v", r, res.Changed)
	}
	// The interval after a failed TakeDirty is not anchored.
	src.err = nil
	step("full-fallback: write tracking was not running since the previous measurement", 100)
	src.err = ErrTrackingRestarted
	step("full-fallback: write tracking restarted", 100)
	src.err = nil
	step(ModeIncremental, 0)
	src.memory = append(src.memory, 1)
	step("full-fallback: the size changed from 409600 to 409601 bytes", 101)

	plain := NewTracker(Memory(content(10)), nil)
	if res := must(plain.Measure(context.Background())); res.Mode != ModeFull {
		t.Errorf("first measure of a plain source: %q", res.Mode)
	}
	if res := must(plain.Measure(context.Background())); res.Mode != "full-fallback: the source does not track writes" {
		t.Errorf("second measure of a plain source: %q", res.Mode)
	}
}

// TestLargeSubtrees: a tree whose subtree cache is bounded to a few roots
// uses larger subtrees, with the same roots and updates.
func TestLargeSubtrees(t *testing.T) {
	old := maxBlockCache
	maxBlockCache = 4 * HashSize
	defer func() { maxBlockCache = old }()
	b := content(1000*PageSize + 5)
	tr := must(Measure(context.Background(), Memory(b), nil))
	if tr.gran != 256 || len(tr.blocks) != 4 || tr.Root() != reference(b) {
		t.Fatalf("Measure: subtrees of %d pages, %d roots, root %s; want 256, 4, %s", tr.gran, len(tr.blocks), tr.Root(), reference(b))
	}
	c := slices.Clone(b)
	c[300*PageSize] ^= 1
	c[999*PageSize] ^= 1
	changed, err := tr.Update(context.Background(), Memory(c), []PageRange{{300, 300}, {999, 1000}}, nil)
	if err != nil || tr.Root() != reference(c) || !slices.Equal(changed, []PageRange{{300, 300}, {999, 999}}) {
		t.Errorf("Update = %v, %v, root %s; want root %s", changed, err, tr.Root(), reference(c))
	}
}

// TestParallelFold: folding many subtree roots in parallel chunks gives
// the tree over all of them.
func TestParallelFold(t *testing.T) {
	for _, n := range []int{1, 2, foldChunk, foldChunk + 1, 2 * foldChunk, 5*foldChunk + 3} {
		roots := make([]Digest, n)
		for i := range roots {
			roots[i] = LeafHash([]byte{byte(i), byte(i >> 8)})
		}
		want := RootFromLeaves(roots)
		kept := slices.Clone(roots)
		if got := rootOf(roots, 3); got != want || !slices.Equal(roots, kept) {
			t.Errorf("rootOf(%d roots, 3 workers) = %s, want %s, roots unchanged", n, got, want)
		}
	}
}
