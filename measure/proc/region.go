package proc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"hvmon.dev/hvmon/measure"
)

const pageSize = measure.PageSize

// Pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent   = 1 << 63
	pmSwapped   = 1 << 62
	pmFileShare = 1 << 61 // file page or shared anonymous
	pmSoftDirty = 1 << 55
)

// ErrSoftDirty reports that this kernel does not keep soft-dirty bits.
var ErrSoftDirty = errors.New("proc: the kernel does not track soft-dirty pages")

// ReadMaps reads and parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readMaps(f)
}

func readMaps(f *os.File) ([]Mapping, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxMapsSize+1))
	if err != nil {
		return nil, err
	}
	return ParseMaps(data)
}

// process is what the regions of one process share: the open files, bound
// to that process even if its PID is reused, and the soft-dirty clear.
type process struct {
	pid        int
	refs       int // guarded by registryMu
	mem, maps  *os.File
	pagemap    io.ReaderAt // nil when it could not be opened (trackErr says why)
	clearRefs  io.Writer
	closers    []io.Closer
	trackErr   error
	mu         sync.Mutex // guards regions and every region's pending bits
	regions    map[*Region]bool
	pagemapBuf []byte
}

var (
	registryMu sync.Mutex
	registry   = map[int]*process{}
)

func openProcess(pid int) (*process, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if p := registry[pid]; p != nil {
		p.refs++
		return p, nil
	}
	dir := fmt.Sprintf("/proc/%d/", pid)
	maps, err := os.Open(dir + "maps")
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(dir + "mem")
	if err != nil {
		maps.Close()
		return nil, err
	}
	p := &process{pid: pid, refs: 1, mem: mem, maps: maps, regions: map[*Region]bool{}}
	// Without these two, the regions can still be measured in full.
	pagemap, err := os.Open(dir + "pagemap")
	if err != nil {
		p.trackErr = err
	} else if clearRefs, err := os.OpenFile(dir+"clear_refs", os.O_WRONLY, 0); err != nil {
		pagemap.Close()
		p.trackErr = err
	} else {
		p.pagemap, p.clearRefs = pagemap, clearRefs
		p.closers = []io.Closer{pagemap, clearRefs}
	}
	registry[pid] = p
	return p, nil
}

func (p *process) release() error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if p.refs--; p.refs > 0 {
		return nil
	}
	delete(registry, p.pid)
	errs := []error{p.mem.Close(), p.maps.Close()}
	for _, c := range p.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Region is a range of a process's memory, a measure.DirtySource. It is
// safe for the concurrent ReadPages calls of the engine; TakeDirty, Size
// and Close must not run concurrently with a measurement.
type Region struct {
	proc    *process
	sel     Selector // zero for a region opened by address
	start   uint64
	end     uint64
	maps    []Mapping
	pending []uint64 // a bit per page written since the last TakeDirty
	started bool     // the region's first TakeDirty ran
	closed  bool
}

// Open opens the region sel selects.
func Open(sel Selector) (*Region, error) {
	p, err := openProcess(sel.PID)
	if err != nil {
		return nil, err
	}
	maps, err := readMaps(p.maps)
	if err == nil {
		maps, err = Resolve(maps, sel)
	}
	if err != nil {
		p.release()
		return nil, err
	}
	return p.add(&Region{sel: sel, start: maps[0].Start, end: maps[len(maps)-1].End, maps: maps})
}

// OpenRange opens the address range [start, end) of process pid, which
// must be page-aligned and covered by mappings without a gap.
func OpenRange(pid int, start, end uint64) (*Region, error) {
	if start >= end || start%pageSize != 0 || end%pageSize != 0 {
		return nil, fmt.Errorf("proc: %#x-%#x is not a non-empty page-aligned range", start, end)
	}
	p, err := openProcess(pid)
	if err != nil {
		return nil, err
	}
	maps, err := readMaps(p.maps)
	if err == nil {
		maps, err = covering(maps, start, end)
	}
	if err != nil {
		p.release()
		return nil, err
	}
	return p.add(&Region{start: start, end: end, maps: maps})
}

func (p *process) add(r *Region) (*Region, error) {
	if r.end > math.MaxInt64 {
		p.release()
		return nil, fmt.Errorf("proc: region %#x-%#x is beyond what /proc/PID/mem can read", r.start, r.end)
	}
	r.proc = p
	p.mu.Lock()
	p.regions[r] = true
	p.mu.Unlock()
	return r, nil
}

// covering returns the mappings that cover [start, end) without a gap,
// cut to that range: the kernel merges and splits areas next to the range
// (anonymous memory of the same kind, say) without touching its pages,
// and a merge that grows an area marks all of its pages soft-dirty.
func covering(maps []Mapping, start, end uint64) ([]Mapping, error) {
	var out []Mapping
	at := start
	for _, m := range maps {
		if m.End <= at || m.Start >= end {
			continue
		}
		if m.Start > at {
			break
		}
		if m.Start < start {
			if m.Inode != 0 {
				m.Offset += start - m.Start
			}
			m.Start = start
		}
		m.End = min(m.End, end)
		out = append(out, m)
		at = m.End
		if at >= end {
			return out, nil
		}
	}
	return nil, fmt.Errorf("proc: %#x-%#x is not mapped without a gap (unmapped from %#x)", start, end, at)
}

// Start returns the region's first virtual address.
func (r *Region) Start() uint64 { return r.start }

// Size implements measure.Source.
func (r *Region) Size() int64 { return int64(r.end - r.start) }

// String names the region for people.
func (r *Region) String() string {
	if r.sel.PID != 0 {
		return fmt.Sprintf("%s (%#x-%#x)", r.sel, r.start, r.end)
	}
	return fmt.Sprintf("pid %d %#x-%#x", r.proc.pid, r.start, r.end)
}

// ReadPages implements measure.Source.
func (r *Region) ReadPages(_ context.Context, p []byte, off int64) error {
	if off < 0 || off > r.Size()-int64(len(p)) {
		return fmt.Errorf("proc: read of %d bytes at %d outside %s", len(p), off, r)
	}
	addr := int64(r.start) + off
	if n, err := r.proc.mem.ReadAt(p, addr); n < len(p) {
		if err == nil || err == io.EOF {
			err = measure.ErrShortRead
		}
		return fmt.Errorf("proc: reading %s at %#x: %w", r, addr+int64(n), err)
	}
	return nil
}

// Close releases the region. The process's files close with its last
// region.
func (r *Region) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.proc.mu.Lock()
	delete(r.proc.regions, r)
	r.proc.mu.Unlock()
	return r.proc.release()
}

// TakeDirty implements measure.DirtySource (see the package
// documentation for what counts as written).
func (r *Region) TakeDirty(ctx context.Context) ([]measure.PageRange, error) {
	if err := probeSoftDirty(); err != nil {
		return nil, err
	}
	p := r.proc
	if p.trackErr != nil {
		return nil, fmt.Errorf("proc: no write tracking for process %d: %w", p.pid, p.trackErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	moved, err := r.refresh()
	if err != nil {
		return nil, err
	}
	// Every region of the process keeps the bits the clear is about to
	// erase.
	for q := range p.regions {
		if err := q.harvest(); err != nil {
			return nil, err
		}
	}
	if _, err := p.clearRefs.Write([]byte("4")); err != nil {
		return nil, fmt.Errorf("proc: clearing soft-dirty bits of process %d: %w", p.pid, err)
	}
	first := !r.started
	r.started = true
	dirty := ranges(r.pending, r.Size()/pageSize)
	clear(r.pending)
	switch {
	case moved != "":
		return nil, fmt.Errorf("proc: %s: %s: %w", r, moved, measure.ErrTrackingRestarted)
	case first:
		return nil, nil
	}
	return dirty, nil
}

// refresh re-reads the process's maps and re-resolves the region. It
// returns why the region is not the same as before, or "".
func (r *Region) refresh() (string, error) {
	all, err := readMaps(r.proc.maps)
	if err != nil {
		return "", err
	}
	var maps []Mapping
	if r.sel.PID != 0 {
		maps, err = Resolve(all, r.sel)
	} else {
		maps, err = covering(all, r.start, r.end)
	}
	if err != nil {
		return "", err
	}
	for _, m := range maps {
		if m.Shared() {
			return "", fmt.Errorf("proc: %s: shared mapping at %#x: writes by other processes are not tracked", r, m.Start)
		}
	}
	if slices.Equal(maps, r.maps) && r.pending != nil {
		return "", nil
	}
	why := "the mappings changed"
	if r.pending == nil {
		why = "tracking started"
	}
	r.maps = maps
	if r.sel.PID != 0 {
		r.start, r.end = maps[0].Start, maps[len(maps)-1].End
	}
	r.pending = make([]uint64, (r.Size()/pageSize+63)/64)
	if why == "tracking started" {
		return "", nil
	}
	return why, nil
}

// harvest ORs the written pages of the region into its pending bits.
// Callers hold p.mu.
func (r *Region) harvest() error {
	if r.pending == nil {
		return nil // not tracked yet
	}
	p := r.proc
	if p.pagemapBuf == nil {
		p.pagemapBuf = make([]byte, 8*8192)
	}
	pages := r.Size() / pageSize
	for i := int64(0); i < pages; {
		n := min(pages-i, int64(len(p.pagemapBuf)/8))
		buf := p.pagemapBuf[:8*n]
		off := int64(r.start/pageSize+uint64(i)) * 8
		if got, err := p.pagemap.ReadAt(buf, off); got < len(buf) {
			if err == nil || err == io.EOF {
				err = measure.ErrShortRead
			}
			return fmt.Errorf("proc: reading the pagemap of process %d: %w", p.pid, err)
		}
		for k := range n {
			if written(binary.LittleEndian.Uint64(buf[8*k:])) {
				j := i + k
				r.pending[j/64] |= 1 << (j % 64)
			}
		}
		i += n
	}
	return nil
}

// written reports whether a page must be re-read, from its pagemap entry.
func written(e uint64) bool {
	return e&pmSoftDirty != 0 || e&pmFileShare != 0 || e&(pmPresent|pmSwapped) == 0
}

// ranges turns a bitset over n pages into page ranges.
func ranges(bits []uint64, n int64) []measure.PageRange {
	var out []measure.PageRange
	for i := int64(0); i < n; i++ {
		w := bits[i/64]
		if w == 0 {
			i += 63 - i%64
			continue
		}
		if w>>(i%64)&1 == 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].Last == i-1 {
			out[k].Last = i
		} else {
			out = append(out, measure.PageRange{First: i, Last: i})
		}
	}
	return out
}

// probeSoftDirty checks once that the kernel keeps soft-dirty bits: it
// clears them for this process, writes a page of its own and expects the
// page's bit to be set. Without CONFIG_MEM_SOFT_DIRTY the clear succeeds
// and the bit stays 0, which would make every page look clean. Tests
// replace it to run against a fake kernel.
var probeSoftDirty = sync.OnceValue(probe)

func probe() error {
	page, err := syscall.Mmap(-1, 0, pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return fmt.Errorf("proc: soft-dirty probe: %w", err)
	}
	defer syscall.Munmap(page)
	page[0] = 1
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return fmt.Errorf("proc: soft-dirty probe: %w", err)
	}
	defer pm.Close()
	entry := func() (uint64, error) {
		var b [8]byte
		addr := uint64(uintptr(unsafe.Pointer(&page[0])))
		_, err := pm.ReadAt(b[:], int64(addr/pageSize*8))
		return binary.LittleEndian.Uint64(b[:]), err
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("4"), 0); err != nil {
		return fmt.Errorf("proc: soft-dirty probe: %w", err)
	}
	before, err := entry()
	if err != nil {
		return fmt.Errorf("proc: soft-dirty probe: %w", err)
	}
	page[0] = 2
	after, err := entry()
	if err != nil {
		return fmt.Errorf("proc: soft-dirty probe: %w", err)
	}
	if before&pmSoftDirty != 0 || after&pmSoftDirty == 0 {
		return ErrSoftDirty
	}
	return nil
}
