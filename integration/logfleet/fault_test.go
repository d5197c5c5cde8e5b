package logfleet

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/tlog"
)

// label is the outbox's name for the log under test.
const label = "main"

// fleetHost is one host: its key, its store, and the reports it stores
// one by one while its outbox submits them.
type fleetHost struct {
	name    string
	key     *attest.PrivateKey
	dir     string
	store   *host.FileStore
	reports []signedReport
	stored  atomic.Int64
}

// newHosts makes n hosts named prefix-I with perHost pre-signed reports
// each.
func newHosts(t *testing.T, prefix string, n, perHost int) []*fleetHost {
	t.Helper()
	guest := guestEvidence(t, time.Now())
	var hs []*fleetHost
	for i := range n {
		name := prefix + "-" + string(rune('a'+i))
		h := &fleetHost{name: name, key: hostKey(t, name), dir: filepath.Join(t.TempDir(), name)}
		var err error
		if h.store, err = host.NewFileStore(h.dir); err != nil {
			t.Fatal(err)
		}
		h.reports = signReports(t, h.key, name, perHost, guest)
		hs = append(hs, h)
	}
	return hs
}

func hostKeys(hs []*fleetHost) []*attest.PrivateKey {
	var ks []*attest.PrivateKey
	for _, h := range hs {
		ks = append(ks, h.key)
	}
	return ks
}

// scenario is a fault test: hosts storing reports and submitting them to
// log servers while a fault is injected.
type scenario struct {
	t       *testing.T
	policy  tlog.Policy
	servers []*logServer
	hosts   []*fleetHost
	pace    time.Duration // between two reports of one host
	start   *tlog.Checkpoint

	mu     sync.Mutex
	seen   []*tlog.Checkpoint // checkpoints read during the run
	before int                // how many of seen came before the fault
}

// run starts the hosts (host i submits to server i mod n), calls fault,
// waits until every host stored all its reports and has a proof for each,
// and checks the log.
func (sc *scenario) run(fault func()) {
	t := sc.t
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A new log publishes its first (empty) checkpoint within an
	// interval.
	var err error
	waitFor(t, time.Minute, "the log's first checkpoint", func() bool {
		sc.start, err = sc.servers[0].checkpoint(ctx, sc.policy)
		return err == nil
	})
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Go(func() { sc.watch(ctx) })
	var producers sync.WaitGroup
	for i, h := range sc.hosts {
		ob := sc.outbox(h, sc.servers[i%len(sc.servers)].url)
		bg.Go(func() { ob.Run(ctx) })
		producers.Add(1)
		bg.Go(func() {
			defer producers.Done()
			for _, r := range h.reports {
				e, err := h.store.Put(ctx, r.vm, r.bytes, r.report)
				if err != nil {
					t.Errorf("%s: storing: %v", h.name, err)
					return
				}
				h.stored.Add(1)
				ob.Kick(e)
				select {
				case <-ctx.Done():
					return
				case <-time.After(sc.pace):
				}
			}
		})
	}
	fault()
	sc.mu.Lock()
	sc.before = len(sc.seen)
	sc.mu.Unlock()
	producers.Wait()
	total := sc.total()
	t.Logf("all %d reports stored; waiting for their proofs", total)
	waitFor(t, 5*time.Minute, "every stored report logged", func() bool { return sc.logged() == total })
	cancel()
	bg.Wait()
	sc.check()
}

// outbox returns the outbox of h for the log at url, logging to a file
// in h's directory.
func (sc *scenario) outbox(h *fleetHost, url string) *host.Outbox {
	t := sc.t
	f, err := os.Create(filepath.Join(h.dir, "outbox.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ob, err := host.NewOutbox(host.OutboxOptions{
		Store:  h.store,
		Dir:    filepath.Join(h.dir, "outbox"),
		Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		Logs: []host.LogConfig{{Label: label, URL: url, Policy: sc.policy, Concurrency: 32,
			Timeout: 45 * time.Second, MinBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second}},
		Logger: hclog.New(&hclog.LoggerOptions{Name: h.name, Output: f, Level: hclog.Warn}),
		Rescan: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// watch records the first server's checkpoints every 250 ms.
func (sc *scenario) watch(ctx context.Context) {
	for ctx.Err() == nil {
		if cp, err := sc.servers[0].checkpoint(ctx, sc.policy); err == nil {
			sc.mu.Lock()
			if n := len(sc.seen); n == 0 || sc.seen[n-1].Size != cp.Size {
				sc.seen = append(sc.seen, cp)
			}
			sc.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (sc *scenario) total() int {
	n := 0
	for _, h := range sc.hosts {
		n += len(h.reports)
	}
	return n
}

// logged counts the proof files of all hosts.
func (sc *scenario) logged() int {
	n := 0
	for _, h := range sc.hosts {
		filepath.WalkDir(filepath.Join(h.dir, "reports"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, "."+label+".proof") {
				n++
			}
			return nil
		})
	}
	return n
}

// stored counts the reports the hosts stored so far.
func (sc *scenario) stored() int {
	n := 0
	for _, h := range sc.hosts {
		n += int(h.stored.Load())
	}
	return n
}

// waitGrown waits until the tree grew by n entries since the run started
// (as the watcher saw it) and reports are still waiting for their proofs:
// the moment to break something in the middle of a batch.
func (sc *scenario) waitGrown(n uint64) {
	sc.t.Helper()
	waitFor(sc.t, 2*time.Minute, "tree growth before the fault", func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return len(sc.seen) > 0 && sc.seen[len(sc.seen)-1].Size >= sc.start.Size+n
	})
	stored, logged := sc.stored(), sc.logged()
	sc.t.Logf("fault: %d of %d reports stored, %d logged", stored, sc.total(), logged)
	if stored == sc.total() || logged >= stored {
		sc.t.Fatalf("the fault must come while reports are stored and submitted: %d of %d stored, %d logged", stored, sc.total(), logged)
	}
}

// check is the verdict after recovery:
//   - every stored report has a proof that verifies under the log's key;
//   - read back from the tiles, the tree grew by exactly the number of
//     reports, and each report is at one index, its proof's;
//   - every checkpoint seen during the run (before and after the fault),
//     every proof's and every host's latest verified one are consistent
//     with the final tree.
func (sc *scenario) check() {
	t := sc.t
	ctx := context.Background()
	srv := sc.servers[0]
	final, err := srv.checkpoint(ctx, sc.policy)
	if err != nil {
		t.Fatal(err)
	}
	r := srv.reader()
	proofIndex := map[[32]byte]uint64{}
	checkpoints := map[uint64]*tlog.Checkpoint{}
	for _, h := range sc.hosts {
		es, err := h.store.List(ctx, host.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != len(h.reports) {
			t.Errorf("%s: %d reports in the store, want %d", h.name, len(es), len(h.reports))
		}
		for _, e := range es {
			b, err := os.ReadFile(e.Path)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := h.store.Proof(e, label)
			if err != nil {
				t.Errorf("%s: %s: %v", h.name, filepath.Base(e.Path), err)
				continue
			}
			cp, idx, err := tlog.VerifyProof(sc.policy, b, proof)
			if err != nil {
				t.Errorf("%s: proof of %s: %v", h.name, filepath.Base(e.Path), err)
				continue
			}
			proofIndex[tlog.LeafHash(b)] = idx
			checkpoints[cp.Size] = cp
		}
		ob, err := os.ReadFile(filepath.Join(h.dir, "outbox", label+".checkpoint"))
		if err != nil {
			t.Errorf("%s: the outbox kept no checkpoint: %v", h.name, err)
		} else if cp, err := sc.policy.Open(ob); err != nil {
			t.Errorf("%s: the outbox's checkpoint: %v", h.name, err)
		} else {
			checkpoints[cp.Size] = cp
		}
	}
	if len(proofIndex) != sc.total() {
		t.Fatalf("%d reports have a verified proof, want %d", len(proofIndex), sc.total())
	}
	if grew := final.Size - sc.start.Size; grew != uint64(sc.total()) {
		t.Errorf("the tree grew by %d entries (%d → %d) for %d reports", grew, sc.start.Size, final.Size, sc.total())
	}
	// Every entry since the start, authenticated against the final root.
	at := map[[32]byte][]uint64{}
	for first := sc.start.Size; first < final.Size; {
		n := min(final.Size-first, 1024)
		entries, err := tlog.ReadEntries(ctx, r, final, first, n)
		if err != nil {
			t.Fatalf("reading entries [%d, %d): %v", first, first+n, err)
		}
		for i, e := range entries {
			h := tlog.LeafHash(e)
			at[h] = append(at[h], first+uint64(i))
		}
		first += n
	}
	bad := 0
	for h, idx := range proofIndex {
		if got := at[h]; len(got) != 1 || got[0] != idx {
			if bad++; bad <= 10 {
				t.Errorf("a report whose proof says index %d is at indexes %v of the tree", idx, got)
			}
		}
	}
	for h, idx := range at {
		if len(idx) > 1 && bad < 10 {
			bad++
			t.Errorf("entry %x… is at %d indexes: %v", h[:4], len(idx), idx)
		}
	}
	sc.mu.Lock()
	for _, cp := range sc.seen {
		checkpoints[cp.Size] = cp
	}
	before := sc.before
	sc.mu.Unlock()
	checkpoints[sc.start.Size] = sc.start
	for _, cp := range checkpoints {
		if cp.Size > final.Size {
			t.Errorf("checkpoint of size %d is larger than the final %d", cp.Size, final.Size)
			continue
		}
		path, err := tlog.ProveConsistency(ctx, r, cp, final)
		if err == nil {
			err = tlog.CheckConsistency(cp, final, path)
		}
		if err != nil {
			t.Errorf("checkpoint %d → final %d: %v", cp.Size, final.Size, err)
		}
	}
	t.Logf("tree %d → %d: %d reports, each at one index with a verified proof; %d checkpoints (%d seen before the fault) consistent with the final one; the hosts retried %d times",
		sc.start.Size, final.Size, len(proofIndex), len(checkpoints), before, sc.retries())
	if t.Failed() {
		for _, s := range sc.servers {
			t.Logf("%s log tail:\n%s", s.name, s.logTail())
		}
	}
}

// retries counts the failed submissions the hosts' outboxes logged.
func (sc *scenario) retries() int {
	n := 0
	for _, h := range sc.hosts {
		b, _ := os.ReadFile(filepath.Join(h.dir, "outbox.log"))
		n += strings.Count(string(b), "submission failed")
	}
	return n
}

// posixBlock is the storage block of a POSIX log in dir.
func posixBlock(dir string) string {
	return "posix {\n  dir = " + `"` + dir + `"` + "\n}"
}

// kill -9 of the only log server (POSIX storage) while reports are in
// flight; it is started again on the same directory two seconds later.
func TestPOSIXKill(t *testing.T) {
	needStack(t)
	hosts := newHosts(t, "posix-kill", 3, 300)
	srv := newLogServer(t, "logd", posixBlock(filepath.Join(t.TempDir(), "log")), nil, hostKeys(hosts), "")
	sc := &scenario{t: t, policy: logPolicy(t), servers: []*logServer{srv}, hosts: hosts, pace: 15 * time.Millisecond}
	sc.run(func() {
		sc.waitGrown(200)
		srv.kill()
		time.Sleep(2 * time.Second)
		srv.start()
	})
}

// fleet starts two log servers on the stack, each taking the reports of
// half the hosts.
func fleet(t *testing.T, prefix string, hosts, perHost int) (*stack, *scenario) {
	st := needStack(t)
	hs := newHosts(t, prefix, hosts, perHost)
	var servers []*logServer
	for _, name := range []string{"logd-0", "logd-1"} {
		servers = append(servers, newLogServer(t, name, st.awsBlock(), st.procEnv(), hostKeys(hs), ""))
	}
	return st, &scenario{t: t, policy: logPolicy(t), servers: servers, hosts: hs}
}

// kill -9 of one of two log servers on one MariaDB and one bucket while
// reports are in flight; it is started again three seconds later.
func TestFleetKill(t *testing.T) {
	_, sc := fleet(t, "fleet-kill", 4, 300)
	sc.pace = 20 * time.Millisecond
	sc.run(func() {
		sc.waitGrown(300)
		sc.servers[1].kill()
		time.Sleep(3 * time.Second)
		sc.servers[1].start()
	})
}

// MariaDB stopped under load and started again five seconds later (same
// command line, port and data).
func TestFleetDBRestart(t *testing.T) {
	st, sc := fleet(t, "fleet-db", 4, 300)
	sc.pace = 20 * time.Millisecond
	sc.run(func() {
		sc.waitGrown(300)
		st.do(t, "stop-db")
		time.Sleep(5 * time.Second)
		st.do(t, "start-db")
		for _, s := range sc.servers {
			if s.exited() {
				t.Errorf("%s exited while the database was down:\n%s", s.name, s.logTail())
			}
		}
	})
}

// The S3 gateway down for a minute under load: the hosts keep storing
// reports all along.
func TestFleetS3Down(t *testing.T) {
	st, sc := fleet(t, "fleet-s3", 4, 300)
	sc.pace = 250 * time.Millisecond // 300 reports a host over 75 s
	sc.run(func() {
		sc.waitGrown(40)
		st.do(t, "stop-s3")
		stored := sc.stored()
		time.Sleep(time.Minute)
		if sc.stored() <= stored {
			t.Errorf("the hosts stored nothing while the S3 gateway was down")
		}
		st.do(t, "start-s3")
		for _, s := range sc.servers {
			if s.exited() {
				t.Errorf("%s exited while the S3 gateway was down:\n%s", s.name, s.logTail())
			}
		}
	})
}
