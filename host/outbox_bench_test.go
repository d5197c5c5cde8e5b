package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hvmon.dev/hvmon/attest"
)

// Sizes of BenchmarkOutboxBacklog: 10,000 stored reports of 8 KiB.
const (
	benchBacklog    = 10000
	benchReportSize = 8 << 10
)

// BenchmarkOutboxBacklog measures what a backlog costs the outbox: a
// store of benchBacklog reports none of which is logged, and a log that
// cannot be reached. Each iteration starts an outbox and waits until it
// listed the whole backlog and filled its submission slots. It reports
// the process's peak RSS from the outbox's start (VmHWM, reset through
// clear_refs) and the Go heap it holds per backlog entry.
//
// The report files hold random bytes named by their hash: the outbox
// reads a report only when it dispatches it and checks only that hash, so
// the store is written without signing 10,000 reports.
func BenchmarkOutboxBacklog(b *testing.B) {
	dir := b.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, benchReportSize)
	for i := range benchBacklog {
		vm := "vm-" + strconv.Itoa(i%16)
		vmDir := filepath.Join(dir, "reports", escapeVM(vm))
		if i < 16 {
			os.MkdirAll(vmDir, 0o750)
		}
		rand.Read(body)
		e := Entry{VM: vm, Time: testNow.Add(time.Duration(i) * time.Second), Seq: uint64(i / 16), Event: attest.EventPeriodic,
			Hash: attest.ReportHash(body), Chain: "0123456789abcdef"}
		if err := os.WriteFile(filepath.Join(vmDir, reportFileName(e)), body, 0o640); err != nil {
			b.Fatal(err)
		}
	}
	// A log that cannot be reached: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	policy := newFakeLog(b).policy(b)

	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		resetPeakRSS(b)
		m := NewMetrics(prometheus.NewRegistry())
		var parked atomic.Int64
		ob, err := NewOutbox(OutboxOptions{Store: s, Dir: filepath.Join(dir, "outbox"), Metrics: m,
			Logs: []LogConfig{{Label: "main", URL: url, Policy: policy}},
			Sleep: func(ctx context.Context, d time.Duration) error {
				parked.Add(1)
				<-ctx.Done()
				return ctx.Err()
			}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ob.Run(ctx); close(done) }()
		for parked.Load() < DefaultLogConcurrency || testutil.ToFloat64(m.logBacklog.WithLabelValues("main")) != benchBacklog {
			time.Sleep(time.Millisecond)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		hwm := peakRSS(b)
		cancel()
		<-done
		b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/benchBacklog, "heap-B/entry")
	}
}

// resetPeakRSS sets the process's VmHWM to its current RSS.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): it includes the setup", err)
	}
}

// peakRSS returns VmHWM from /proc/self/status in KiB.
func peakRSS(b *testing.B) int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb
		}
	}
	b.Skip("no VmHWM")
	return 0
}
