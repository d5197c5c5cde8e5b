package measure

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// The engine. A pass hashes a set of pages of a source into leaves and
// folds each aligned run of gran leaves into a subtree root. Every aligned
// run of 2^k leaves that lies inside the region is a subtree of the RFC 9162
// tree, and the tree over those subtree roots (the last one possibly over
// fewer leaves) has the same root as the tree over all leaves, so the
// region's root is reduce(subtree roots).
//
// Work is handed out in units of about batchPages pages (whole subtrees)
// to at most Options.Workers goroutines, each with its own read buffer and
// hashers, kept in a pool from one pass to the next. The hashing loop
// allocates nothing. Goroutines never outlive the call that starts them.

const (
	// minBlockPages is the number of leaves under one cached subtree
	// root of a Tree, the granularity of incremental re-hashing (2 bytes
	// per page), for regions up to 32 GiB. Larger regions use larger
	// subtrees so that the cache stays within maxBlockCache (16 MiB).
	minBlockPages = 16
	// batchPages is the most pages one worker reads and hashes at a time
	// (1 MiB): big enough for sequential reads, small enough to spread
	// a region over the cores.
	batchPages = 256
	// inlinePages: passes over fewer pages run on the calling goroutine.
	inlinePages = 64
	// foldLeaves is the number of leaves of whole subtrees a worker folds
	// together.
	foldLeaves = 1024
	// foldChunk is the number of subtree roots one goroutine folds when
	// the roots of a large region are folded in parallel.
	foldChunk = 1024
)

// maxBlockCache bounds the cached subtree roots of a Tree, in bytes.
// Tests lower it to exercise larger subtrees.
var maxBlockCache int64 = 16 << 20

// blockPagesFor returns the subtree size of the cache of a tree of n
// leaves: a power of two, at least minBlockPages.
func blockPagesFor(n int64) int64 {
	g := int64(minBlockPages)
	for ceilDiv(n, g)*HashSize > maxBlockCache {
		g *= 2
	}
	return g
}

// Options tunes a measurement. The zero value suits most callers.
type Options struct {
	// Workers bounds the goroutines that hash pages. 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each batch of pages with the
	// number of bytes just hashed. It is called from several goroutines at
	// once and must be quick.
	Progress func(bytes int64)
}

// Tree is a measured region: its root and the leaf hash of every page,
// kept so that Update can re-hash only some pages and Diff can say which
// pages differ. It holds 32 bytes per page for the leaves, plus cached
// subtree roots: 2 bytes per page up to 32 GiB, at most 16 MiB beyond.
type Tree struct {
	size   int64
	leaves []Digest
	gran   int64    // leaves under one cached subtree root
	blocks []Digest // blocks[i] is the root of leaves[i*gran:][:gran]
	root   Digest
	stale  bool
}

// Root returns the region's fingerprint.
func (t *Tree) Root() Digest { return t.root }

// Size returns the region's size in bytes.
func (t *Tree) Size() int64 { return t.size }

// Leaves returns the leaf hashes, one per page. The slice is the tree's
// own: do not modify it, and copy it before an Update if you need the old
// leaves.
func (t *Tree) Leaves() []Digest { return t.leaves }

// Measure reads every page of src and returns its tree.
func Measure(ctx context.Context, src Source, opts *Options) (*Tree, error) {
	size := src.Size()
	if size < 0 {
		return nil, fmt.Errorf("measure: negative region size %d", size)
	}
	n := Pages(size)
	g := blockPagesFor(n)
	t := &Tree{size: size, leaves: make([]Digest, n), gran: g, blocks: make([]Digest, ceilDiv(n, g))}
	p := newPass(ctx, src, opts, t.leaves, t.blocks, g)
	if err := p.run(); err != nil {
		return nil, err
	}
	t.root = rootOf(t.blocks, p.workers)
	return t, nil
}

// Root returns the fingerprint of src without keeping its leaves: besides
// the read buffers it holds 32 bytes per 256 pages.
func Root(ctx context.Context, src Source, opts *Options) (Digest, error) {
	size := src.Size()
	if size < 0 {
		return Digest{}, fmt.Errorf("measure: negative region size %d", size)
	}
	roots := make([]Digest, ceilDiv(Pages(size), batchPages))
	p := newPass(ctx, src, opts, nil, roots, batchPages)
	if err := p.run(); err != nil {
		return Digest{}, err
	}
	return rootOf(roots, p.workers), nil
}

// Update re-reads the given pages of src, replaces their leaves and
// recomputes the root. It returns the pages whose leaf hash changed. src
// must be the same size as the tree. Ranges may overlap and come in any
// order; every page must be inside the region. After an error the tree is
// stale and every later Update fails: measure again.
func (t *Tree) Update(ctx context.Context, src Source, pages []PageRange, opts *Options) ([]PageRange, error) {
	if t.stale {
		return nil, fmt.Errorf("measure: update of a stale tree (an earlier update failed)")
	}
	if s := src.Size(); s != t.size {
		return nil, fmt.Errorf("measure: update of a %d-byte tree from a %d-byte source", t.size, s)
	}
	n := int64(len(t.leaves))
	pages = slices.Clone(pages)
	for _, r := range pages {
		if r.First < 0 || r.First > r.Last || r.Last >= n {
			return nil, fmt.Errorf("measure: %s outside the region's %d pages", r, n)
		}
	}
	pages = normalize(pages)
	if len(pages) == 0 {
		return nil, nil
	}
	p := newPass(ctx, src, opts, t.leaves, t.blocks, t.gran)
	p.units = unitsOf(pages, t.gran)
	p.changed = make([]atomic.Uint64, ceilDiv(n, 64))
	if err := p.run(); err != nil {
		t.stale = true
		return nil, err
	}
	t.root = rootOf(t.blocks, p.workers)
	return rangesOf(p.changed, n), nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// rootOf returns the root of the tree over subtree roots, leaving them
// as they are. The roots are folded in aligned chunks of foldChunk (each
// chunk is a subtree of the tree over the roots), copied one at a time
// into a small buffer, on up to workers goroutines when there are many.
func rootOf(roots []Digest, workers int) Digest {
	n := int64(len(roots))
	if n <= foldChunk {
		return reduce(newNodeHasher(), slices.Clone(roots))
	}
	chunks := ceilDiv(n, foldChunk)
	out := make([]Digest, chunks)
	var next atomic.Int64
	fold := func() {
		h := newNodeHasher()
		buf := make([]Digest, foldChunk)
		for {
			c := next.Add(1) - 1
			if c >= chunks {
				return
			}
			s := buf[:copy(buf, roots[c*foldChunk:min((c+1)*foldChunk, n)])]
			out[c] = reduce(h, s)
		}
	}
	var wg sync.WaitGroup
	if n >= 2*foldChunk {
		for range min(int64(workers), chunks) - 1 {
			wg.Go(fold)
		}
	}
	fold()
	wg.Wait()
	return reduce(newNodeHasher(), out)
}

// unit is a piece of work. In a full pass it is every page of [first,
// last] (whole subtrees). In an update it is dirty: sorted ranges, none
// crossing a subtree boundary, and every dirty page of each subtree it
// touches, so that no two units fold the same subtree.
type unit struct {
	first, last int64
	dirty       []PageRange
}

// unitsOf splits sorted, disjoint page ranges at subtree boundaries (gran
// pages) and groups them into units of about batchPages dirty pages; a
// unit may hold non-adjacent subtrees, so that four-way hashing stays
// full when the dirty pages are scattered.
func unitsOf(pages []PageRange, gran int64) []unit {
	var split []PageRange
	for _, r := range pages {
		for f := r.First; f <= r.Last; {
			l := min(r.Last, (f/gran+1)*gran-1)
			split = append(split, PageRange{f, l})
			f = l + 1
		}
	}
	var us []unit
	start, n := 0, int64(0)
	for i, r := range split {
		if n >= batchPages && r.First/gran != split[i-1].First/gran {
			us = append(us, unit{dirty: split[start:i:i]})
			start, n = i, 0
		}
		n += r.Pages()
	}
	if start < len(split) {
		us = append(us, unit{dirty: split[start:]})
	}
	return us
}

// pass is one run of the engine over a source.
type pass struct {
	ctx      context.Context
	src      Source
	mem      []byte // the bytes themselves, for in-memory sources
	size     int64
	pages    int64
	gran     int64
	leaves   []Digest // nil: leaves are not kept
	roots    []Digest // one per gran pages
	units    []unit   // nil: every page, in units of batchPages
	workers  int
	progress func(int64)
	changed  []atomic.Uint64 // when set, a bit per page whose leaf changed

	next   atomic.Int64
	failed atomic.Bool
	mu     sync.Mutex
	err    error
}

func newPass(ctx context.Context, src Source, opts *Options, leaves, roots []Digest, gran int64) *pass {
	p := &pass{ctx: ctx, src: src, size: src.Size(), leaves: leaves, roots: roots, gran: gran}
	p.pages = Pages(p.size)
	if m, ok := src.(memory); ok {
		p.mem = m
	}
	if opts != nil {
		p.workers, p.progress = opts.Workers, opts.Progress
	}
	if p.workers <= 0 {
		p.workers = runtime.GOMAXPROCS(0)
	}
	return p
}

func (p *pass) nunits() int64 {
	if p.units != nil {
		return int64(len(p.units))
	}
	return ceilDiv(p.pages, batchPages)
}

func (p *pass) unit(i int64) unit {
	if p.units != nil {
		return p.units[i]
	}
	return unit{first: i * batchPages, last: min((i+1)*batchPages, p.pages) - 1}
}

func (p *pass) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.failed.Store(true)
}

func (p *pass) run() error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	nu := p.nunits()
	workers := int(min(int64(p.workers), nu))
	todo := p.pages
	if p.units != nil {
		todo = 0
		for _, u := range p.units {
			for _, r := range u.dirty {
				todo += r.Last - r.First + 1
			}
		}
	}
	if todo < inlinePages {
		workers = 1
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(func() { p.work() })
	}
	p.work()
	wg.Wait()
	return p.err
}

// worker holds what one goroutine needs, allocated once per pass.
type worker struct {
	h       *x4 // for leaves without AVX-512; nil on the portable path
	h8      *x8 // for leaves with AVX-512
	nh      nodeHasher
	lanes   int      // leaves hashed at once: 8, 4, or 0 on the portable path
	buf     []byte   // read buffer; nil for in-memory sources
	own     []Digest // leaves of the current unit, when the pass keeps none
	scratch []Digest // for folding a short subtree
	fold    []Digest // leaves of whole subtrees waiting to be folded together
	ids     []int64  // their subtree numbers
	all     [1]PageRange
	full    [8]*[PageSize]byte // pages waiting for a group of lanes
	at      [8]int64
	nfull   int
	out     [4]Digest
	out8    [8]Digest
	simd    bool // the paths it was made for
	simd8   bool
}

// workers keeps workers, with their buffers, from one pass to the next:
// a re-measurement that reads a few pages should not allocate and clear a
// megabyte of buffers each time.
var workers sync.Pool

// getWorker returns a worker set up for p.
func (p *pass) getWorker() *worker {
	w, _ := workers.Get().(*worker)
	if w == nil || w.simd != simd || w.simd8 != simd8 {
		w = &worker{simd: simd, simd8: simd8}
		if simd {
			w.h, w.lanes = newX4(), 4
		}
		if simd8 {
			w.h8, w.lanes = new(x8), 8
		}
		w.nh = newNodeHasher()
	}
	w.scratch = grow(w.scratch, p.gran)
	w.fold = grow(w.fold, max(foldLeaves, p.gran))[:0]
	w.ids = grow(w.ids, max(foldLeaves, p.gran)/p.gran)[:0]
	if p.mem == nil {
		n := int64(batchPages)
		if p.units != nil {
			n += p.gran // an update's unit may end a subtree past batchPages
		}
		w.buf = grow(w.buf, min(n*PageSize, p.size))
	}
	if p.leaves == nil {
		w.own = grow(w.own, batchPages)
	}
	return w
}

// grow returns s resliced to n elements, reallocated when it is shorter.
func grow[T any](s []T, n int64) []T {
	if int64(cap(s)) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (p *pass) work() {
	w := p.getWorker()
	defer workers.Put(w)
	nu := p.nunits()
	for !p.failed.Load() {
		i := p.next.Add(1) - 1
		if i >= nu {
			return
		}
		if err := p.ctx.Err(); err != nil {
			p.fail(err)
			return
		}
		n, err := p.do(w, p.unit(i))
		if err != nil {
			p.fail(err)
			return
		}
		if p.progress != nil {
			p.progress(n)
		}
	}
}

// do hashes one unit and returns the number of bytes it hashed.
func (p *pass) do(w *worker, u unit) (int64, error) {
	leaves := w.own
	base := u.first // page index of leaves[0]
	if p.leaves != nil {
		leaves, base = p.leaves, 0
	}
	runs := u.dirty
	if runs == nil {
		w.all[0] = PageRange{u.first, u.last}
		runs = w.all[:]
	}
	var hashed int64
	for k := 0; k < len(runs); {
		// Adjacent runs (split only at subtree boundaries) are read as
		// one.
		r := runs[k]
		for k++; k < len(runs) && runs[k].First == r.Last+1; k++ {
			r.Last = runs[k].Last
		}
		from, to := r.First*PageSize, min((r.Last+1)*PageSize, p.size)
		var data []byte
		if p.mem != nil {
			data = p.mem[from:to]
		} else {
			// Runs go one after another into the buffer: pages waiting
			// for a four-way group stay valid until the unit is done.
			data = w.buf[hashed : hashed+to-from]
			if err := p.src.ReadPages(p.ctx, data, from); err != nil {
				return hashed, err
			}
		}
		hashed += to - from
		for i := r.First; i <= r.Last; i++ {
			pg := data[(i-r.First)*PageSize:]
			if len(pg) < PageSize {
				p.setLeaf(leaves, i-base, LeafHash(pg))
				continue
			}
			pa := (*[PageSize]byte)(pg)
			if w.lanes == 0 {
				p.setLeaf(leaves, i-base, LeafHash(pa[:]))
				continue
			}
			w.full[w.nfull], w.at[w.nfull] = pa, i-base
			if w.nfull++; w.nfull == w.lanes {
				p.flush(w, leaves)
			}
		}
	}
	if w.nfull > 0 {
		p.flush(w, leaves)
	}
	// Fold the subtrees the unit touched. Whole subtrees are folded many
	// at once, level by level over their concatenated leaves (pairs never
	// straddle two of them), so that the lanes stay full.
	last := int64(-1)
	for _, r := range runs {
		for b := r.First / p.gran; b <= r.Last/p.gran; b++ {
			if b == last {
				continue
			}
			last = b
			f, l := b*p.gran, min((b+1)*p.gran, p.pages)
			if l-f < p.gran { // the region's last subtree, short
				s := w.scratch[:l-f]
				copy(s, leaves[f-base:l-base])
				p.roots[b] = reduce(w.nh, s)
				continue
			}
			if len(w.fold)+int(p.gran) > cap(w.fold) {
				p.foldBatch(w)
			}
			w.fold = append(w.fold, leaves[f-base:l-base]...)
			w.ids = append(w.ids, b)
		}
	}
	p.foldBatch(w)
	return hashed, nil
}

// foldBatch folds the whole subtrees collected in w.fold into their roots.
func (p *pass) foldBatch(w *worker) {
	if len(w.ids) == 0 {
		return
	}
	for n := len(w.fold); n > len(w.ids); {
		n = pairLevel(w.nh, w.fold, n)
	}
	for k, b := range w.ids {
		p.roots[b] = w.fold[k]
	}
	w.fold, w.ids = w.fold[:0], w.ids[:0]
}

// flush hashes the pending full pages in one group of lanes, padding the
// group with copies of the first page.
func (p *pass) flush(w *worker, leaves []Digest) {
	for k := w.nfull; k < w.lanes; k++ {
		w.full[k] = w.full[0]
	}
	out := w.out8[:]
	if w.lanes == 8 {
		w.h8.leaves(&w.full, &w.out8)
	} else {
		w.h.leaves(w.full[0], w.full[1], w.full[2], w.full[3], &w.out)
		out = w.out[:]
	}
	for k := range w.nfull {
		p.setLeaf(leaves, w.at[k], out[k])
	}
	w.nfull = 0
}

func (p *pass) setLeaf(leaves []Digest, i int64, d Digest) {
	if p.changed != nil && leaves[i] != d {
		p.changed[i/64].Or(1 << (i % 64))
	}
	leaves[i] = d
}

// rangesOf turns a bitset over n pages into ranges of set bits.
func rangesOf(bits []atomic.Uint64, n int64) []PageRange {
	var out []PageRange
	for i := int64(0); i < n; i++ {
		if bits[i/64].Load()>>(i%64)&1 == 0 {
			if i%64 == 0 && bits[i/64].Load() == 0 {
				i += 63
			}
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].Last == i-1 {
			out[k].Last = i
		} else {
			out = append(out, PageRange{i, i})
		}
	}
	return out
}
