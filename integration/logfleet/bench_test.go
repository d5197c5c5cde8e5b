package logfleet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

var (
	benchReports = flag.Int("logbench.reports", 6000, "reports submitted in one run of BenchmarkSubmit*")
	benchClients = flag.String("logbench.clients", "64,512", "comma-separated numbers of concurrent HTTP clients")
	benchConfig  = flag.String("logbench.config", "", "extra settings for the log servers' configuration (HCL), such as batch_max_age")
)

// benchHosts is how many host keys sign the benchmark's reports.
const benchHosts = 8

// BenchmarkSubmitPOSIX submits demo-sized reports, signed before the
// clock starts, with many concurrent HTTP clients to one `hvmon logd`
// process on POSIX storage with a 1 s checkpoint interval. Each client
// posts one report at a time and counts it done when the 200 answer (the
// proof, sent once the entry is in a published checkpoint) arrives;
// a 503 is retried after its Retry-After. It reports sustained
// submissions/s, submit → proof latency (p50, p99), bytes stored per
// report (tiles, entry bundles and checkpoint on disk), the mean proof
// size and the mean tlog.VerifyProof time over the run's proofs.
//
//	go test -run '^$' -bench SubmitPOSIX -benchtime 1x ./integration/logfleet
func BenchmarkSubmitPOSIX(b *testing.B) {
	for _, c := range clientCounts(b) {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			keys := benchKeys(b)
			dir := filepath.Join(b.TempDir(), "log")
			srv := newLogServer(b, "logd", posixBlock(dir), nil, keys, *benchConfig)
			benchSubmit(b, []*logServer{srv}, keys, c, func() storedBytes {
				t, cp := treeBytes(b, filepath.Join(dir, "tile")), treeBytes(b, filepath.Join(dir, "checkpoint"))
				return storedBytes{t.all + cp.all, t.full + cp.full}
			})
		})
	}
}

// BenchmarkSubmitFleet is BenchmarkSubmitPOSIX against two `hvmon logd`
// processes sharing the logstack's MariaDB and bucket (clients spread
// over both); bytes per report is the growth of the bucket's directory
// in the S3 gateway. It needs HVMON_LOGSTACK_ENV.
func BenchmarkSubmitFleet(b *testing.B) {
	st := needStack(b)
	bucket := filepath.Join(st.dir, "s3", st.env["HVMON_S3_BUCKET"])
	for _, c := range clientCounts(b) {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			keys := benchKeys(b)
			var servers []*logServer
			for _, name := range []string{"logd-0", "logd-1"} {
				servers = append(servers, newLogServer(b, name, st.awsBlock(), st.procEnv(), keys, *benchConfig))
			}
			benchSubmit(b, servers, keys, c, func() storedBytes { return treeBytes(b, bucket) })
		})
	}
}

func clientCounts(b *testing.B) []int {
	var cs []int
	for _, f := range strings.Split(*benchClients, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			b.Fatalf("-logbench.clients: %q", *benchClients)
		}
		cs = append(cs, c)
	}
	return cs
}

func benchKeys(b *testing.B) []*attest.PrivateKey {
	var ks []*attest.PrivateKey
	for i := range benchHosts {
		ks = append(ks, hostKey(b, fmt.Sprintf("bench-%d", i)))
	}
	return ks
}

// benchSubmit runs the benchmark loop: each iteration signs a fresh set
// of reports with the clock stopped, then submits them all.
func benchSubmit(b *testing.B, servers []*logServer, keys []*attest.PrivateKey, clients int, stored func() storedBytes) {
	guest := guestEvidence(b, time.Now())
	var lat []time.Duration
	var proofs, entries [][]byte
	var retries int64
	var elapsed time.Duration
	bytesBefore := stored()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var reports [][]byte
		for j, k := range keys {
			for _, r := range signReports(b, k, fmt.Sprintf("bench-%d", j), *benchReports/len(keys), guest) {
				reports = append(reports, r.bytes)
			}
		}
		b.StartTimer()
		start := time.Now()
		l, p, n := submitAll(b, servers, reports, clients)
		elapsed += time.Since(start)
		lat, proofs, entries, retries = append(lat, l...), append(proofs, p...), append(entries, reports...), retries+n
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "submits/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(retries), "retries")
	// Partial tiles and bundles count until the log's garbage collection
	// removes them, as they do on disk; full-B leaves them out.
	after := stored()
	b.ReportMetric(float64(after.all-bytesBefore.all)/float64(len(entries)), "stored-B/report")
	b.ReportMetric(float64(after.full-bytesBefore.full)/float64(len(entries)), "full-B/report")
	var entrySize, proofSize int
	for i := range entries {
		entrySize += len(entries[i])
		proofSize += len(proofs[i])
	}
	b.ReportMetric(float64(entrySize)/float64(len(entries)), "entry-B")
	b.ReportMetric(float64(proofSize)/float64(len(proofs)), "proof-B")
	b.ReportMetric(verifyTime(b, entries, proofs), "verify-µs/proof")
}

// submitAll posts every report with the given number of concurrent
// clients (client i to server i mod n) and returns each report's submit →
// proof latency, its proof and the number of 503 answers retried.
func submitAll(b *testing.B, servers []*logServer, reports [][]byte, clients int) ([]time.Duration, [][]byte, int64) {
	ctx := context.Background()
	lat := make([]time.Duration, len(reports))
	proofs := make([][]byte, len(reports))
	var next, retries atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	var clientsOf []*http.Client
	for range servers {
		clientsOf = append(clientsOf, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}})
	}
	for w := range clients {
		srv, hc := servers[w%len(servers)], clientsOf[w%len(servers)]
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(reports) {
					return
				}
				start := time.Now()
				for {
					res, err := tlogclient.Submit(ctx, hc, srv.url, reports[i])
					if err == nil && res.Status == http.StatusServiceUnavailable {
						retries.Add(1)
						time.Sleep(time.Duration(max(res.RetryAfter, 1)) * time.Second)
						continue
					}
					if err == nil && res.Status != http.StatusOK {
						err = fmt.Errorf("%d %s", res.Status, res.Message)
					}
					if err != nil {
						failed.Store(true)
						b.Errorf("report %d to %s: %v", i, srv.name, err)
						return
					}
					lat[i], proofs[i] = time.Since(start), res.Proof
					break
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return lat, proofs, retries.Load()
}

// verifyTime is the mean time of tlog.VerifyProof over up to 1,000 of
// the run's proofs, in microseconds; every one must verify.
func verifyTime(b *testing.B, entries, proofs [][]byte) float64 {
	p := logPolicy(b)
	n := min(len(proofs), 1000)
	start := time.Now()
	for i := range n {
		if _, _, err := tlog.VerifyProof(p, entries[i], proofs[i]); err != nil {
			b.Fatalf("proof %d: %v", i, err)
		}
	}
	return float64(time.Since(start).Microseconds()) / float64(n)
}

// storedBytes is what the log stores under path (a file or a directory;
// 0 when absent): all regular files, and those that are not partial tiles
// or bundles (not under an "N.p" directory), which is what remains once the
// log's garbage collection removed the partial ones that full ones
// replaced.
type storedBytes struct{ all, full int64 }

func treeBytes(b *testing.B, path string) storedBytes {
	var n storedBytes
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var fi fs.FileInfo
			if fi, err = d.Info(); err == nil {
				n.all += fi.Size()
				if !strings.Contains(p, ".p/") {
					n.full += fi.Size()
				}
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // collected as the walk went
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
