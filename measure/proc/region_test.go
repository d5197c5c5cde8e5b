package proc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"hvmon.dev/hvmon/measure"
)

// childEnv makes the test binary a child process that maps a file (see
// TestMain).
const childEnv = "HVMON_PROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(child(path))
	}
	os.Exit(m.Run())
}

// child maps path privately, says "ready", then applies "write OFFSET"
// commands from stdin (xoring the byte with 0xff) until stdin closes.
func child(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	st, _ := f.Stat()
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		off, _ := strconv.Atoi(strings.TrimPrefix(in.Text(), "write "))
		mem[off] ^= 0xff
		fmt.Println("ok")
	}
	return 0
}

// mapAnon maps n pages of private anonymous memory filled with a pattern,
// without transparent huge pages so that soft-dirty bits are per page.
func mapAnon(t *testing.T, n int, flags int) []byte {
	t.Helper()
	mem, err := syscall.Mmap(-1, 0, n*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, flags|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	syscall.Madvise(mem, 15) // MADV_NOHUGEPAGE; advisory
	for i := range mem {
		mem[i] = byte(i*7 + i>>12)
	}
	return mem
}

func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func openSelf(t *testing.T, mem []byte) *Region {
	t.Helper()
	r, err := OpenRange(os.Getpid(), addrOf(mem), addrOf(mem)+uint64(len(mem)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// kernel is where soft-dirty bits come from in a test: the real kernel,
// or a fake one for machines whose kernel is built without
// CONFIG_MEM_SOFT_DIRTY.
type kernel interface {
	// attach makes r's process use this kernel.
	attach(t testing.TB, r *Region)
	// write xors a byte of mem (at addr) with v, as the process would.
	write(addr uint64, mem []byte, off int, v byte)
	// drop discards a page of mem (at addr) as MADV_DONTNEED does.
	drop(t *testing.T, addr uint64, mem []byte, page int)
}

type realKernel struct{}

func (realKernel) attach(testing.TB, *Region) {}
func (realKernel) write(_ uint64, mem []byte, off int, v byte) {
	if mem != nil { // nil: another process wrote
		mem[off] ^= v
	}
}
func (realKernel) drop(t *testing.T, _ uint64, mem []byte, page int) {
	if err := syscall.Madvise(mem[page*pageSize:(page+1)*pageSize], syscall.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// fakeKernel speaks the pagemap and clear_refs protocol of a kernel with
// soft-dirty bits, for the pages the test writes through it: every page
// is present, written pages have bit 55 until the next clear, dropped
// pages are not present until the next clear (by then the measurement
// has read them, which maps them again).
type fakeKernel struct {
	mu sync.Mutex
	// Bits by virtual page number, 64 pages a word, keyed by vpn/64.
	dirty   map[uint64]uint64 // soft-dirty
	dropped map[uint64]uint64 // not present
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{dirty: map[uint64]uint64{}, dropped: map[uint64]uint64{}}
}

func (k *fakeKernel) ReadAt(p []byte, off int64) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if off%8 != 0 || len(p)%8 != 0 {
		return 0, syscall.EINVAL // as the kernel answers
	}
	var dirty, dropped uint64
	for i := 0; i < len(p); i += 8 {
		vpn := uint64(off/8) + uint64(i/8)
		if i == 0 || vpn%64 == 0 {
			dirty, dropped = k.dirty[vpn/64], k.dropped[vpn/64]
		}
		var e uint64 = pmPresent
		if dropped>>(vpn%64)&1 != 0 {
			e = 0
		} else if dirty>>(vpn%64)&1 != 0 {
			e |= pmSoftDirty
		}
		binary.LittleEndian.PutUint64(p[i:], e)
	}
	return len(p), nil
}

func (k *fakeKernel) Write(b []byte) (int, error) {
	if string(b) != "4" {
		return 0, syscall.EINVAL
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.dirty)
	clear(k.dropped)
	return 1, nil
}

func (k *fakeKernel) attach(t testing.TB, r *Region) {
	p := r.proc
	p.mu.Lock()
	oldPM, oldCR, oldErr := p.pagemap, p.clearRefs, p.trackErr
	p.pagemap, p.clearRefs, p.trackErr = k, k, nil
	p.mu.Unlock()
	oldProbe := probeSoftDirty
	probeSoftDirty = func() error { return nil }
	t.Cleanup(func() {
		probeSoftDirty = oldProbe
		p.mu.Lock()
		p.pagemap, p.clearRefs, p.trackErr = oldPM, oldCR, oldErr
		p.mu.Unlock()
	})
}

func (k *fakeKernel) write(addr uint64, mem []byte, off int, v byte) {
	if mem != nil {
		mem[off] ^= v
	}
	k.mu.Lock()
	vpn := (addr + uint64(off)) / pageSize
	k.dirty[vpn/64] |= 1 << (vpn % 64)
	k.mu.Unlock()
}

func (k *fakeKernel) drop(t *testing.T, addr uint64, mem []byte, page int) {
	realKernel{}.drop(t, addr, mem, page)
	k.mu.Lock()
	vpn := addr/pageSize + uint64(page)
	k.dropped[vpn/64] |= 1 << (vpn % 64)
	k.mu.Unlock()
}

// kernels runs f against the fake kernel, and against the real one when
// it keeps soft-dirty bits (it says so when it does not).
func kernels(t *testing.T, f func(t *testing.T, k kernel)) {
	t.Run("fake", func(t *testing.T) {
		f(t, newFakeKernel())
	})
	t.Run("real", func(t *testing.T) {
		if err := probeSoftDirty(); errors.Is(err, ErrSoftDirty) {
			t.Skipf("%v: this kernel is built without CONFIG_MEM_SOFT_DIRTY", err)
		} else if err != nil {
			t.Fatal(err)
		}
		f(t, realKernel{})
	})
}

// TestNoSoftDirtyFallsBack: where the kernel keeps no soft-dirty bits,
// re-measurements are full passes that say why, with the right roots.
func TestNoSoftDirtyFallsBack(t *testing.T) {
	if probeSoftDirty() == nil {
		old := probeSoftDirty
		probeSoftDirty = func() error { return ErrSoftDirty }
		defer func() { probeSoftDirty = old }()
	}
	mem := mapAnon(t, 16, syscall.MAP_PRIVATE)
	tr := measure.NewTracker(openSelf(t, mem), nil)
	measureOnce(t, tr, mem, measure.ModeFull)
	mem[pageSize] ^= 1
	res := measureOnce(t, tr, mem, "")
	if reason, ok := res.Mode.Fallback(); !ok || !strings.Contains(reason, "soft-dirty") || res.Rehashed != 16 {
		t.Errorf("mode %q, rehashed %d; want a full fallback naming soft-dirty", res.Mode, res.Rehashed)
	}
	if !slices.Equal(res.Changed, []measure.PageRange{{First: 1, Last: 1}}) {
		t.Errorf("changed %v, want page 1", res.Changed)
	}
}

// measureOnce checks one tracker pass against a full measurement of the
// same bytes and returns it.
func measureOnce(t *testing.T, tr *measure.Tracker, mem []byte, wantMode measure.Mode) *measure.Result {
	t.Helper()
	res, err := tr.Measure(context.Background())
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if want := measure.Bytes(mem); res.Root != want {
		t.Fatalf("Measure (%s) = %s, want %s (full measure of the same bytes)", res.Mode, res.Root, want)
	}
	if wantMode != "" && res.Mode != wantMode {
		t.Errorf("Measure mode = %q, want %q", res.Mode, wantMode)
	}
	return res
}

func TestIncrementalOwnMapping(t *testing.T) { kernels(t, testIncrementalOwnMapping) }

func testIncrementalOwnMapping(t *testing.T, k kernel) {
	const pages = 2048
	mem := mapAnon(t, pages, syscall.MAP_PRIVATE)
	r := openSelf(t, mem)
	k.attach(t, r)
	tr := measure.NewTracker(r, nil)
	if res := measureOnce(t, tr, mem, measure.ModeFull); res.Rehashed != pages || res.Changed != nil {
		t.Errorf("first pass: rehashed %d, changed %v; want %d, nil", res.Rehashed, res.Changed, pages)
	}

	for _, p := range []int{5, 100, 101, 102, 103, pages - 1} {
		k.write(addrOf(mem), mem, p*pageSize+17, 0x5a)
	}
	res := measureOnce(t, tr, mem, measure.ModeIncremental)
	want := []measure.PageRange{{First: 5, Last: 5}, {First: 100, Last: 103}, {First: pages - 1, Last: pages - 1}}
	if !slices.Equal(res.Changed, want) {
		t.Errorf("changed = %v, want %v", res.Changed, want)
	}
	if res.Rehashed < 6 || res.Rehashed > pages/4 {
		t.Errorf("rehashed %d pages after writing 6 of %d", res.Rehashed, pages)
	}
	t.Logf("after 6 written pages: %d rehashed", res.Rehashed)

	// Nothing written: nothing to read.
	if res := measureOnce(t, tr, mem, measure.ModeIncremental); res.Rehashed != 0 || res.Changed != nil {
		t.Errorf("idle pass: rehashed %d, changed %v", res.Rehashed, res.Changed)
	}

	// A page dropped by the process changes (to zeros) without a write.
	k.drop(t, addrOf(mem), mem, 7)
	res = measureOnce(t, tr, mem, measure.ModeIncremental)
	if !slices.Equal(res.Changed, []measure.PageRange{{First: 7, Last: 7}}) {
		t.Errorf("after MADV_DONTNEED: changed %v, want page 7", res.Changed)
	}

	// The tracker's tree equals a full measurement, leaf for leaf.
	full, err := measure.Measure(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := measure.Diff(full.Leaves(), tr.Tree().Leaves()); d != nil || full.Root() != tr.Tree().Root() {
		t.Errorf("incremental tree differs from a full measure at %v", d)
	}
}

// Two regions of one process share the clear of its soft-dirty bits: a
// pass over one must not lose the writes of the other.
func TestIncrementalTwoRegions(t *testing.T) { kernels(t, testIncrementalTwoRegions) }

func testIncrementalTwoRegions(t *testing.T, k kernel) {
	a, b := mapAnon(t, 64, syscall.MAP_PRIVATE), mapAnon(t, 64, syscall.MAP_PRIVATE)
	ra, rb := openSelf(t, a), openSelf(t, b)
	k.attach(t, ra)
	ta, tb := measure.NewTracker(ra, nil), measure.NewTracker(rb, nil)
	measureOnce(t, ta, a, measure.ModeFull)
	measureOnce(t, tb, b, measure.ModeFull)
	k.write(addrOf(a), a, 3*pageSize, 1)
	measureOnce(t, tb, b, measure.ModeIncremental) // clears the process's bits
	res := measureOnce(t, ta, a, measure.ModeIncremental)
	if !slices.Equal(res.Changed, []measure.PageRange{{First: 3, Last: 3}}) {
		t.Errorf("changed %v, want page 3", res.Changed)
	}
}

func TestSharedMappingFallsBack(t *testing.T) { kernels(t, testSharedMappingFallsBack) }

func testSharedMappingFallsBack(t *testing.T, k kernel) {
	mem := mapAnon(t, 16, syscall.MAP_SHARED)
	r := openSelf(t, mem)
	k.attach(t, r)
	tr := measure.NewTracker(r, nil)
	measureOnce(t, tr, mem, measure.ModeFull)
	mem[0] ^= 1
	res := measureOnce(t, tr, mem, "")
	if reason, ok := res.Mode.Fallback(); !ok || !strings.Contains(reason, "shared mapping") {
		t.Errorf("mode %q, want a full fallback for a shared mapping", res.Mode)
	}
}

// TestChildProcess selects a file mapping of another process by pattern,
// measures it, lets the child write, and re-measures.
func TestChildProcess(t *testing.T) { kernels(t, testChildProcess) }

func testChildProcess(t *testing.T, k kernel) {
	path := filepath.Join(t.TempDir(), "hvmon-proc-test.bin")
	data := make([]byte, 300*pageSize+123)
	for i := range data {
		data[i] = byte(i * 13)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("child: %q", out.Text())
	}
	r, err := Open(Selector{PID: cmd.Process.Pid, Pattern: "hvmon-proc-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	k.attach(t, r)
	// The mapping is page-granular: the file's tail page is zero-filled.
	mapped := make([]byte, 301*pageSize)
	copy(mapped, data)
	if r.Size() != int64(len(mapped)) {
		t.Fatalf("region size %d, want %d", r.Size(), len(mapped))
	}
	tr := measure.NewTracker(r, nil)
	measureOnce(t, tr, mapped, measure.ModeFull)
	fmt.Fprintf(stdin, "write %d\n", 42*pageSize+1)
	k.write(r.Start(), nil, 42*pageSize+1, 0) // the child writes, the kernel sees it
	if !out.Scan() || out.Text() != "ok" {
		t.Fatalf("child: %q", out.Text())
	}
	mapped[42*pageSize+1] ^= 0xff
	res := measureOnce(t, tr, mapped, measure.ModeIncremental)
	if !slices.Equal(res.Changed, []measure.PageRange{{First: 42, Last: 42}}) {
		t.Errorf("changed %v, want page 42", res.Changed)
	}
}
