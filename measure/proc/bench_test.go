package proc

import (
	"context"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"hvmon.dev/hvmon/measure"
)

// The process benchmarks `make bench` runs: a 1 GiB private anonymous
// mapping of this process, read through /proc/self/mem, measured in full
// and re-measured after 1% of its pages (chosen at random) were written.
// The incremental one uses the kernel's soft-dirty bits where it keeps
// them, and the fake kernel of the tests (which answers pagemap reads
// from a map, slower than the kernel) where it does not.

const benchPages = 1 << 18 // 1 GiB

func benchRegion(b *testing.B) ([]byte, *Region) {
	mem, err := syscall.Mmap(-1, 0, benchPages*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { syscall.Munmap(mem) })
	// Soft-dirty bits of a transparent huge page cover all of its 2 MiB:
	// 1% of the pages written at random would mark nearly every huge
	// page. The benchmark measures the 4 KiB granularity.
	syscall.Madvise(mem, 15) // MADV_NOHUGEPAGE
	for i := 0; i < len(mem); i += 64 {
		mem[i] = byte(i >> 12)
	}
	r, err := OpenRange(os.Getpid(), addrOf(mem), addrOf(mem)+uint64(len(mem)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return mem, r
}

// BenchmarkProcessFull measures the 1 GiB mapping in full.
func BenchmarkProcessFull(b *testing.B) {
	_, r := benchRegion(b)
	b.SetBytes(benchPages * pageSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := measure.Root(context.Background(), r, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessIncremental1Percent re-measures the mapping after 1% of
// its pages, chosen one by one at random, were written: the worst case for
// reading, one pread per page.
func BenchmarkProcessIncremental1Percent(b *testing.B) { benchIncremental(b, 1) }

// BenchmarkProcessIncremental1PercentRuns re-measures the mapping after 1%
// of its pages, in runs of 64 pages (256 KiB) at random places, were
// written.
func BenchmarkProcessIncremental1PercentRuns(b *testing.B) { benchIncremental(b, 64) }

func benchIncremental(b *testing.B, run int) {
	mem, r := benchRegion(b)
	var k kernel = realKernel{}
	if probeSoftDirty() != nil {
		fk := newFakeKernel()
		fk.attach(b, r)
		k = fk
	}
	tr := measure.NewTracker(r, nil)
	if _, err := tr.Measure(context.Background()); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	base := addrOf(mem)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for range benchPages / 100 / run {
			first := int(rng.Int64N(benchPages - int64(run)))
			for p := first; p < first+run; p++ {
				k.write(base, mem, p*pageSize+8, 1)
			}
		}
		b.StartTimer()
		res, err := tr.Measure(context.Background())
		if err != nil || res.Mode != measure.ModeIncremental {
			b.Fatalf("Measure = %v, %v", res, err)
		}
	}
}
