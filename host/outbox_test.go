package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sumnote "golang.org/x/mod/sumdb/note"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

const testLogOrigin = "test.hvmon.dev/log"

func testLogKey(t testing.TB, seed byte) *tlog.PrivateKey {
	t.Helper()
	k, err := tlog.NewKeyFromSeed(testLogOrigin, [32]byte{seed})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testWitness(t testing.TB) (sumnote.Signer, *tlog.Verifier) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	s, err := tlog.NewEd25519Cosigner("witness.test", priv, tlog.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.NewEd25519Verifier("witness.test", priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// fakeLog speaks hvmon's log server protocol (POST /v1/add answers with a
// proof once the entry is in a witnessed checkpoint; GET /checkpoint and
// tiles) over a tlogtest.Log, with faults on request.
type fakeLog struct {
	t       testing.TB
	key     *tlog.PrivateKey
	witness sumnote.Signer
	srv     *httptest.Server

	mu          sync.Mutex
	log         *tlogtest.Log
	index       map[[32]byte]uint64 // deduplication, as the server's
	posts       [][]byte            // bodies, in order of arrival
	inflight    int
	maxInflight int
	// respond, when set, may answer POST number n (from 0) itself: it
	// returns false to let the log answer.
	respond func(n int, w http.ResponseWriter, r *http.Request) bool
	// bad, when set, makes the log answer the next badLeft POSTs with a
	// proof that must not verify.
	bad     string // "wrong-entry", "wrong-key", "no-witness"
	badLeft int
	// gate, when set, holds every POST until it can receive.
	gate chan struct{}
}

func newFakeLog(t testing.TB) *fakeLog {
	w, _ := testWitness(t)
	f := &fakeLog{t: t, key: testLogKey(t, 7), witness: w, index: map[[32]byte]uint64{}}
	f.log = tlogtest.New(f.key, tlog.SignerOptions{})
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLog) policy(t testing.TB) tlog.Policy {
	_, wv := testWitness(t)
	return tlog.Policy{Log: f.key.Verifier(), Witnesses: []*tlog.Verifier{wv}, Quorum: 1}
}

func (f *fakeLog) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/add" {
		f.add(w, r)
		return
	}
	f.mu.Lock()
	l := f.log
	f.mu.Unlock()
	var b []byte
	var err error
	if p := strings.TrimPrefix(r.URL.Path, "/"); p == "checkpoint" {
		b, err = l.ReadCheckpoint(r.Context())
	} else {
		level, index, width, entries, perr := tlog.ParseTilePath(p)
		switch {
		case perr != nil:
			err = fs.ErrNotExist
		case entries:
			b, err = l.ReadEntryBundle(r.Context(), index, width)
		default:
			b, err = l.ReadTile(r.Context(), level, index, width)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(b)
}

func (f *fakeLog) add(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	f.mu.Lock()
	n := len(f.posts)
	f.posts = append(f.posts, body)
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	gate, respond := f.gate, f.respond
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	if respond != nil && respond(n, w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	entry, l, witnesses := body, f.log, []sumnote.Signer{f.witness}
	if f.badLeft > 0 {
		f.badLeft--
		switch f.bad {
		case "wrong-entry":
			entry = append(slices.Clip(body), 'x')
		case "wrong-key":
			l = tlogtest.New(testLogKey(f.t, 8), tlog.SignerOptions{})
		case "no-witness":
			witnesses = nil
		}
	}
	i, ok := f.index[sha256.Sum256(entry)]
	if !ok || l != f.log {
		if i, err = l.Append(entry); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if l == f.log {
			f.index[sha256.Sum256(entry)] = i
		}
	}
	cp, err := l.Publish(witnesses...)
	if err == nil && l != f.log {
		_, err = f.log.Publish(f.witness) // keep the real log's published checkpoint
	}
	var proof []byte
	if err == nil {
		proof, err = l.Proof(i, cp)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/x.tlog-proof")
	w.Write(proof)
}

func (f *fakeLog) postCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.posts)
}

// sleeps records the outbox's waits and returns at once, so that tests
// check the waits asked for without waiting them.
type sleeps struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
	time.Sleep(time.Millisecond) // let the fake's state move on
	return ctx.Err()
}

func (s *sleeps) list() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ds)
}

type outboxRig struct {
	t       *testing.T
	dir     string
	store   *FileStore
	fake    *fakeLog
	sleeps  *sleeps
	metrics *Metrics
	key     *attest.PrivateKey
	entries []Entry
	cfg     LogConfig
	ob      *Outbox
	cancel  context.CancelFunc
	done    chan struct{}
}

func newOutboxRig(t *testing.T, n int) *outboxRig {
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	r := &outboxRig{t: t, dir: dir, store: s, fake: newFakeLog(t), sleeps: &sleeps{}, key: k,
		metrics: NewMetrics(prometheus.NewRegistry())}
	r.cfg = LogConfig{Label: "main", URL: r.fake.srv.URL, Policy: r.fake.policy(t), Concurrency: 1,
		MinBackoff: time.Second, MaxBackoff: time.Minute}
	r.put(n)
	return r
}

// put stores n more reports, in store order.
func (r *outboxRig) put(n int) {
	for range n {
		i := len(r.entries)
		b, rep := testSigned(r.t, r.key, "vm-"+strconv.Itoa(i%3), uint64(i), attest.EventPeriodic, testNow.Add(time.Duration(i)*time.Second))
		e, err := r.store.Put(context.Background(), rep.Workload, b, rep)
		if err != nil {
			r.t.Fatal(err)
		}
		r.entries = append(r.entries, e)
	}
}

func (r *outboxRig) start() {
	r.t.Helper()
	ob, err := NewOutbox(OutboxOptions{Store: r.store, Dir: filepath.Join(r.dir, "outbox"), Logs: []LogConfig{r.cfg},
		Metrics: r.metrics, Sleep: r.sleeps.sleep})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.ob, r.cancel, r.done = ob, cancel, make(chan struct{})
	go func() { ob.Run(ctx); close(r.done) }()
	r.t.Cleanup(r.stop)
}

func (r *outboxRig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *outboxRig) state(i int) LogEntryState {
	r.t.Helper()
	st, err := r.store.LogState(r.entries[i], "main")
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *outboxRig) waitLogged(from, to int) {
	r.t.Helper()
	waitFor(r.t, func() bool {
		for i := from; i < to; i++ {
			if r.state(i).State != LogLogged {
				return false
			}
		}
		return true
	})
}

func (r *outboxRig) failures(reason string) float64 {
	return testutil.ToFloat64(r.metrics.logFailures.WithLabelValues("main", reason))
}

// TestOutboxOrder: reports are submitted in store order, each proof
// verifies against the report's bytes, and the largest checkpoint is kept.
func TestOutboxOrder(t *testing.T) {
	r := newOutboxRig(t, 6)
	r.start()
	r.waitLogged(0, 6)
	for i, e := range r.entries {
		b, _ := r.store.read(e)
		if got := r.fake.posts[i]; !bytes.Equal(got, b) {
			t.Fatalf("submission %d is not report %d (%s)", i, i, e.Path)
		}
		if st := r.state(i); st.Index != uint64(i) {
			t.Fatalf("report %d logged at index %d, want %d", i, st.Index, i)
		}
		proof, err := r.store.Proof(e, "main")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tlog.VerifyProof(r.cfg.Policy, b, proof); err != nil {
			t.Fatalf("stored proof %d: %v", i, err)
		}
	}
	cp, err := os.ReadFile(filepath.Join(r.dir, "outbox", "main.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.cfg.Policy.Open(cp)
	if err != nil || c.Size != 6 {
		t.Fatalf("stored checkpoint: size %v, %v; want 6", c, err)
	}
	if got := testutil.ToFloat64(r.metrics.logTreeSize.WithLabelValues("main")); got != 6 {
		t.Fatalf("hvmon_log_tree_size = %v, want 6", got)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(r.metrics.logBacklog.WithLabelValues("main")) == 0 })
	// The store still lists reports only; a kick submits nothing again.
	if all, _ := r.store.List(context.Background(), Query{}); len(all) != 6 {
		t.Fatalf("List = %d entries beside proof files, want 6", len(all))
	}
	r.put(1)
	r.ob.Kick(r.entries[6])
	r.waitLogged(6, 7)
	if n := r.fake.postCount(); n != 7 {
		t.Fatalf("%d submissions for 7 reports", n)
	}
}

// TestOutboxConcurrency: no more than Concurrency submissions are in
// flight, and that many are.
func TestOutboxConcurrency(t *testing.T) {
	r := newOutboxRig(t, 10)
	r.cfg.Concurrency = 3
	gate := make(chan struct{})
	r.fake.gate = gate
	r.start()
	waitFor(t, func() bool { r.fake.mu.Lock(); defer r.fake.mu.Unlock(); return r.fake.inflight == 3 })
	close(gate)
	r.waitLogged(0, 10)
	if r.fake.maxInflight != 3 {
		t.Fatalf("at most %d submissions in flight, want 3", r.fake.maxInflight)
	}
}

// TestOutboxRetries: Retry-After is honoured (capped by max_backoff); an
// ambiguous failure waits at least the ambiguous delay and resends the
// same bytes, which the log deduplicates; 403 waits max_backoff.
func TestOutboxRetries(t *testing.T) {
	r := newOutboxRig(t, 1)
	r.fake.respond = func(n int, w http.ResponseWriter, _ *http.Request) bool {
		switch n {
		case 0:
			w.Header().Set("Retry-After", "7")
			http.Error(w, `{"error":"pushback"}`, http.StatusServiceUnavailable)
		case 1:
			w.Header().Set("Retry-After", "100000")
			http.Error(w, `{"error":"pushback"}`, http.StatusServiceUnavailable)
		case 2:
			http.Error(w, `{"error":"unknown signer"}`, http.StatusForbidden)
		case 3:
			// Sequenced, then the answer is lost.
			r.fake.mu.Lock()
			body := r.fake.posts[n]
			i, _ := r.fake.log.Append(body)
			r.fake.index[sha256.Sum256(body)] = i
			r.fake.mu.Unlock()
			http.Error(w, "", http.StatusInternalServerError)
		case 4:
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("no hijacker")
				return false
			}
			c, _, _ := hj.Hijack()
			c.Close() // no answer at all
		default:
			return false
		}
		return true
	}
	r.start()
	r.waitLogged(0, 1)
	got := r.sleeps.list()
	if len(got) != 5 || got[0] != 7*time.Second || got[1] != time.Minute || got[2] != time.Minute ||
		got[3] < DefaultLogAmbiguousWait || got[4] < DefaultLogAmbiguousWait {
		t.Fatalf("waits %v, want [7s 1m 1m ≥5s ≥5s]", got)
	}
	for _, b := range r.fake.posts[1:] {
		if !bytes.Equal(b, r.fake.posts[0]) {
			t.Fatal("a retry sent other bytes")
		}
	}
	if st := r.state(0); st.Index != 0 || r.fake.log.Size() != 1 {
		t.Fatalf("logged at %d in a log of %d entries, want 0 of 1", st.Index, r.fake.log.Size())
	}
	for reason, want := range map[string]float64{"pushback": 2, "forbidden": 1, "unreachable": 2} {
		if got := r.failures(reason); got != want {
			t.Errorf("failures{%s} = %v, want %v", reason, got, want)
		}
	}
}

// TestOutboxRefused: 400 and 413 leave refusal markers; the reports are
// not submitted again, after a kick or a restart.
func TestOutboxRefused(t *testing.T) {
	r := newOutboxRig(t, 3)
	r.fake.respond = func(n int, w http.ResponseWriter, _ *http.Request) bool {
		switch n {
		case 0:
			http.Error(w, `{"error":"not a report"}`, http.StatusBadRequest)
		case 1:
			http.Error(w, `{"error":"too large"}`, http.StatusRequestEntityTooLarge)
		default:
			return false
		}
		return true
	}
	r.start()
	r.waitLogged(2, 3)
	waitFor(t, func() bool { return r.state(0).State == LogRefused && r.state(1).State == LogRefused })
	if r.state(0).Status != 400 || r.state(1).Status != 413 {
		t.Fatalf("refusals %+v %+v", r.state(0), r.state(1))
	}
	r.stop()
	r.start()
	r.ob.Kick(Entry{})
	r.put(1)
	r.ob.Kick(r.entries[3])
	r.waitLogged(3, 4)
	if n := r.fake.postCount(); n != 4 {
		t.Fatalf("%d submissions, want 4 (refused ones not sent again)", n)
	}
	if r.failures("malformed") != 1 || r.failures("too_large") != 1 {
		t.Fatal("refusals not counted")
	}
}

// TestOutboxBadProof: a proof of another entry, by another key or under
// the witness quorum is never written; the report is sent again.
func TestOutboxBadProof(t *testing.T) {
	for _, bad := range []string{"wrong-entry", "wrong-key", "no-witness"} {
		t.Run(bad, func(t *testing.T) {
			r := newOutboxRig(t, 1)
			r.fake.bad, r.fake.badLeft = bad, 2
			r.start()
			r.waitLogged(0, 1)
			if n := r.fake.postCount(); n != 3 {
				t.Fatalf("%d submissions, want 3", n)
			}
			if got := r.failures("bad_proof"); got != 2 {
				t.Fatalf("bad_proof failures = %v, want 2", got)
			}
			b, _ := r.store.read(r.entries[0])
			proof, _ := r.store.Proof(r.entries[0], "main")
			if _, _, err := tlog.VerifyProof(r.cfg.Policy, b, proof); err != nil {
				t.Fatalf("the stored proof does not verify: %v", err)
			}
		})
	}
}

// TestOutboxInconsistent: a log that answers from a fork (a checkpoint
// that does not extend the one it showed before) is stopped, the alarm
// is raised, and the forked proof is not written.
func TestOutboxInconsistent(t *testing.T) {
	r := newOutboxRig(t, 1)
	r.start()
	r.waitLogged(0, 1)
	// The log now serves another tree: same key, another history.
	r.fake.mu.Lock()
	fork := tlogtest.New(r.fake.key, tlog.SignerOptions{})
	fork.Append([]byte("rewritten history"))
	r.fake.log, r.fake.index = fork, map[[32]byte]uint64{}
	r.fake.mu.Unlock()
	r.put(2)
	r.ob.Kick(r.entries[1])
	waitFor(t, func() bool { return testutil.ToFloat64(r.metrics.logInconsistent.WithLabelValues("main")) == 1 })
	<-r.done // the only log stopped: Run returns
	r.stop()
	if st := r.state(1); st.State != LogPending {
		t.Fatalf("a proof from the fork was kept: %+v", st)
	}
	if r.failures("inconsistent") != 1 {
		t.Fatal("inconsistency not counted")
	}
	// After a restart the stored checkpoint still catches the fork.
	r.metrics = NewMetrics(prometheus.NewRegistry())
	r.start()
	waitFor(t, func() bool { return testutil.ToFloat64(r.metrics.logInconsistent.WithLabelValues("main")) == 1 })
	if st := r.state(1); st.State != LogPending {
		t.Fatalf("a proof from the fork was kept after a restart: %+v", st)
	}
}

// TestOutboxResume: after a restart only reports without a proof are
// submitted.
func TestOutboxResume(t *testing.T) {
	r := newOutboxRig(t, 3)
	r.start()
	r.waitLogged(0, 3)
	r.stop()
	r.put(2)
	// A damaged proof file is set aside and its report submitted again.
	bad := r.store.ProofPath(r.entries[1], "main")
	proof, _ := os.ReadFile(bad)
	os.Remove(bad)
	os.WriteFile(bad, bytes.Replace(proof, []byte("\n— "), []byte("\n— x"), 1), 0o640)
	r.start()
	r.waitLogged(0, 5)
	if n := r.fake.postCount(); n != 6 {
		t.Fatalf("%d submissions for 5 reports across a restart with one damaged proof, want 6", n)
	}
	if _, err := os.Stat(bad + ".invalid"); err != nil {
		t.Fatalf("the damaged proof was not kept aside: %v", err)
	}
	got, _ := os.ReadFile(bad)
	if _, _, err := tlog.VerifyProof(r.cfg.Policy, mustRead(t, r.store, r.entries[1]), got); err != nil {
		t.Fatalf("the new proof does not verify: %v", err)
	}
	for i := range 5 {
		if st := r.state(i); st.Index != uint64(i) {
			t.Fatalf("report %d at index %d", i, st.Index)
		}
	}
}

// TestLogFilesNotListed: proof files and refusal markers are not reports.
func TestLogFilesNotListed(t *testing.T) {
	r := newOutboxRig(t, 1)
	e := r.entries[0]
	ctx := context.Background()
	if err := r.store.PutProof(ctx, e, "main", []byte("c2sp.org/tlog-proof@v1\nindex 0\n\nx")); err != nil {
		t.Fatal(err)
	}
	if err := r.store.MarkRefused(ctx, e, "other", 413, "too large"); err != nil {
		t.Fatal(err)
	}
	if all, _ := r.store.List(ctx, Query{}); len(all) != 1 {
		t.Fatalf("List = %d entries, want 1", len(all))
	}
	if _, err := r.store.LogState(e, "../x"); err == nil {
		t.Fatal("LogState accepted a label with a path in it")
	}
	if st, _ := r.store.LogState(e, "other"); st.State != LogRefused || st.Status != 413 {
		t.Fatalf("LogState(other) = %+v", st)
	}
	if st, _ := r.store.LogState(e, "third"); st.State != LogPending {
		t.Fatalf("LogState(third) = %+v", st)
	}
}

// TestOutboxForkWhileDown: a log that forked while the host was down is
// caught at start from its checkpoint, with nothing to submit.
func TestOutboxForkWhileDown(t *testing.T) {
	r := newOutboxRig(t, 1)
	r.start()
	r.waitLogged(0, 1)
	r.stop()
	fork := tlogtest.New(r.fake.key, tlog.SignerOptions{})
	fork.Append([]byte("rewritten history"), []byte("more"))
	if _, err := fork.Publish(r.fake.witness); err != nil {
		t.Fatal(err)
	}
	r.fake.mu.Lock()
	r.fake.log = fork
	r.fake.mu.Unlock()
	r.start()
	<-r.done
	if got := testutil.ToFloat64(r.metrics.logInconsistent.WithLabelValues("main")); got != 1 {
		t.Fatalf("hvmon_log_inconsistent = %v after a fork while down", got)
	}
	if n := r.fake.postCount(); n != 1 {
		t.Fatalf("%d submissions, want 1", n)
	}
}

func mustRead(t *testing.T, s *FileStore, e Entry) []byte {
	t.Helper()
	b, err := s.read(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutboxSupervisorHook: a supervisor whose Stored hook is the
// outbox's Kick gets each new report logged without a rescan.
func TestOutboxSupervisorHook(t *testing.T) {
	fake := newFakeLog(t)
	var ob *Outbox
	r := newRigOpts(t, nil, func(o *Options) { o.Stored = func(e Entry) { ob.Kick(e) } })
	ob, err := NewOutbox(OutboxOptions{Store: r.store, Dir: filepath.Join(r.dir, "outbox"), Rescan: -1,
		Logs: []LogConfig{{Label: "main", URL: fake.srv.URL, Policy: fake.policy(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := range 2 {
		e, err := r.sup.Attest(ctx, "vm-1", attest.EventOnDemand, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			st, _ := r.store.LogState(e, "main")
			return st.State == LogLogged && st.Index == uint64(i)
		})
	}
}

// TestOutboxTimeout: a log that does not answer within the timeout is an
// ambiguous failure, counted as timeout.
func TestOutboxTimeout(t *testing.T) {
	r := newOutboxRig(t, 1)
	r.cfg.Timeout = 100 * time.Millisecond
	r.fake.respond = func(n int, w http.ResponseWriter, req *http.Request) bool {
		if n == 0 {
			<-req.Context().Done() // the client gave up
			return true
		}
		return false
	}
	r.start()
	r.waitLogged(0, 1)
	if got := r.sleeps.list(); len(got) != 1 || got[0] < DefaultLogAmbiguousWait {
		t.Fatalf("waits %v, want one of at least %v", got, DefaultLogAmbiguousWait)
	}
	if r.failures("timeout") != 1 {
		t.Fatal("the timeout was not counted")
	}
}

// TestOutboxBackoff: the wait doubles from min_backoff, is capped at
// max_backoff, and keeps at least half of it under jitter.
func TestOutboxBackoff(t *testing.T) {
	l := &outboxLog{cfg: LogConfig{MinBackoff: time.Second, MaxBackoff: time.Minute}}
	for attempt := range 40 {
		want := min(time.Second<<min(attempt, 10), time.Minute)
		for range 20 {
			if d := l.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}
