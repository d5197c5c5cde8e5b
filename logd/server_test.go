package logd

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/transparency-dev/tessera"

	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

func TestAdd(t *testing.T) {
	host, stranger := hostKey(t, 1), hostKey(t, 2)
	e := newEnv(t, "max_inflight = 2", host)
	good := report(t, host, 1)

	first := e.do(t, "POST", PathAdd, good)
	if first.status != http.StatusOK || first.header.Get("Content-Type") != ProofContentType || first.header.Get("Hvmon-Log-Duplicate") != "false" {
		t.Fatalf("first submission: %d %v %s", first.status, first.header, first.body)
	}
	cp, idx, err := tlog.VerifyProof(e.policy, good, first.body)
	if err != nil {
		t.Fatalf("proof does not verify: %v", err)
	}
	if h := first.header.Get("Hvmon-Log-Index"); h != strconv.FormatUint(idx, 10) || cp.Origin != testOrigin {
		t.Errorf("index header %q, proof index %d, origin %q", h, idx, cp.Origin)
	}
	// The same bytes again: the same index, marked as a duplicate.
	again := e.do(t, "POST", PathAdd, good)
	if again.status != http.StatusOK || again.header.Get("Hvmon-Log-Index") != first.header.Get("Hvmon-Log-Index") || again.header.Get("Hvmon-Log-Duplicate") != "true" {
		t.Fatalf("resubmission: %d %v %s", again.status, again.header, again.body)
	}
	if _, idx2, err := tlog.VerifyProof(e.policy, good, again.body); err != nil || idx2 != idx {
		t.Fatalf("resubmission's proof: index %d, %v", idx2, err)
	}

	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-5] ^= 1
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		want   int
	}{
		{"garbage", "POST", []byte("not a report"), http.StatusBadRequest},
		{"empty", "POST", nil, http.StatusBadRequest},
		{"trailing byte", "POST", append(append([]byte(nil), good...), 0), http.StatusBadRequest},
		{"signer not allowlisted", "POST", report(t, stranger, 1), http.StatusForbidden},
		{"signature byte flipped", "POST", flipped, http.StatusForbidden},
		{"over the entry bound", "POST", make([]byte, tlog.MaxEntrySize+1), http.StatusRequestEntityTooLarge},
		{"far over the entry bound", "POST", make([]byte, 1<<20), http.StatusRequestEntityTooLarge},
		{"GET", "GET", nil, http.StatusMethodNotAllowed},
		{"PUT", "PUT", good, http.StatusMethodNotAllowed},
	} {
		a := e.do(t, tc.method, PathAdd, tc.body)
		if a.status != tc.want || !strings.Contains(string(a.body), `"error"`) {
			t.Errorf("%s: %d %s, want %d", tc.name, a.status, a.body, tc.want)
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.submissions.WithLabelValues(outcomeForbidden)); got != 2 {
		t.Errorf("forbidden submissions counted %v, want 2", got)
	}
	// No refused submission reached the log.
	if size := treeSize(t, e); size != 1 {
		t.Errorf("tree size %d after one accepted report", size)
	}
}

func treeSize(t *testing.T, e *env) uint64 {
	t.Helper()
	cp, err := e.policy.Open(e.do(t, "GET", PathCheckpoint, nil).body)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// Every 503 carries a Retry-After and no submission is logged.
func TestAddUnavailable(t *testing.T) {
	host := hostKey(t, 1)
	e := newEnv(t, "max_inflight = 2", host)
	s := e.srv
	check := func(name, retry string) {
		t.Helper()
		a := e.do(t, "POST", PathAdd, report(t, host, 7))
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != retry {
			t.Errorf("%s: %d Retry-After %q %s, want 503 Retry-After %s", name, a.status, a.header.Get("Retry-After"), a.body, retry)
		}
	}

	s.ready.Store(false)
	check("not ready", "2")
	if a := e.do(t, "GET", PathHealth, nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("healthz while starting: %d", a.status)
	}
	s.ready.Store(true)
	if a := e.do(t, "GET", PathHealth, nil); a.status != http.StatusOK || string(a.body) != "ready\n" {
		t.Errorf("healthz when ready: %d %q", a.status, a.body)
	}

	s.inflight <- struct{}{}
	s.inflight <- struct{}{}
	check("in flight full", "1")
	<-s.inflight
	<-s.inflight

	add, await := s.add, s.await
	s.add = func(context.Context, []byte) tessera.IndexFuture {
		return func() (tessera.Index, error) {
			return tessera.Index{}, errors.Join(errors.New("integration behind"), tessera.ErrPushback)
		}
	}
	check("pushback", "1")
	s.add = add

	s.cfg.Durations.AwaitTimeout = 1
	s.await = func(ctx context.Context, f tessera.IndexFuture) (tessera.Index, []byte, error) {
		<-ctx.Done()
		return tessera.Index{}, nil, ctx.Err()
	}
	check("await timeout", "5")
	s.await = await
	if got := testutil.ToFloat64(s.metrics.submissions.WithLabelValues(outcomeTimeout)); got != 1 {
		t.Errorf("timeouts counted %v, want 1", got)
	}
}

func TestAllowlistReload(t *testing.T) {
	a, b := hostKey(t, 1), hostKey(t, 2)
	e := newEnv(t, "", a)
	if got := e.do(t, "POST", PathAdd, report(t, b, 1)).status; got != http.StatusForbidden {
		t.Fatalf("b before reload: %d", got)
	}
	writeFile(t, e.allowlist, pubPEM(t, a, b), 0o644)
	if !e.srv.allow.Changed() {
		t.Error("a rewritten allowlist is not seen as changed")
	}
	if err := e.srv.ReloadAllowlist(); err != nil {
		t.Fatal(err)
	}
	if got := e.do(t, "POST", PathAdd, report(t, b, 1)).status; got != http.StatusOK {
		t.Fatalf("b after reload: %d", got)
	}

	// A bad file keeps the list in force, and counts the failure.
	for _, bad := range [][]byte{[]byte("garbage\n"), nil, append(pubPEM(t, a), "trailing"...)} {
		writeFile(t, e.allowlist, bad, 0o644)
		if err := e.srv.ReloadAllowlist(); err == nil {
			t.Errorf("allowlist %q loaded", bad)
		}
	}
	os.Remove(e.allowlist)
	if err := e.srv.ReloadAllowlist(); err == nil {
		t.Error("a missing allowlist loaded")
	}
	if got := testutil.ToFloat64(e.srv.metrics.reloadFailures); got != 4 {
		t.Errorf("reload failures %v, want 4", got)
	}
	if n := len(e.srv.allow.Keys()); n != 2 {
		t.Errorf("%d keys in force after failed reloads, want 2", n)
	}
	if got := e.do(t, "POST", PathAdd, report(t, b, 2)).status; got != http.StatusOK {
		t.Fatalf("b after failed reloads: %d", got)
	}

	// Run reloads on a signal (and on a change of the file).
	writeFile(t, e.allowlist, pubPEM(t, a), 0o644)
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go e.srv.Run(ctx, hup)
	hup <- nil
	for e.do(t, "POST", PathAdd, report(t, b, 3)).status != http.StatusForbidden {
		if ctx.Err() != nil {
			t.Fatal("b is still allowed after SIGHUP")
		}
	}
}

// Many concurrent reports: every proof verifies against the log key, and
// the checkpoints they carry are consistent with each other and with the
// tiles served over HTTP and on disk.
func TestManyReports(t *testing.T) {
	host := hostKey(t, 1)
	e := newEnv(t, "", host)
	const n = 60
	proofs := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := e.do(t, "POST", PathAdd, report(t, host, i))
			if a.status != http.StatusOK {
				t.Errorf("report %d: %d %s", i, a.status, a.body)
			}
			proofs[i] = a.body
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	indexes := map[uint64]int{}
	var cps []*tlog.Checkpoint
	for i, p := range proofs {
		cp, idx, err := tlog.VerifyProof(e.policy, report(t, host, i), p)
		if err != nil {
			t.Fatalf("proof of report %d: %v", i, err)
		}
		if j, ok := indexes[idx]; ok {
			t.Fatalf("reports %d and %d both at index %d", j, i, idx)
		}
		indexes[idx] = i
		cps = append(cps, cp)
		// Another report's proof must not verify for this one.
		if _, _, err := tlog.VerifyProof(e.policy, report(t, host, i+n), p); !errors.Is(err, tlog.ErrNotIncluded) {
			t.Fatalf("proof of report %d accepted another report: %v", i, err)
		}
	}
	latest, err := e.policy.Open(e.do(t, "GET", PathCheckpoint, nil).body)
	if err != nil || latest.Size != n {
		t.Fatalf("latest checkpoint size %v, %v; want %d", latest, err, n)
	}
	for _, r := range []tlog.TileReader{tlogclient.DirReader{Root: filepath.Join(e.dir, "log")}, httpReader{t, e}} {
		for _, cp := range cps {
			path, err := tlog.ProveConsistency(t.Context(), r, cp, latest)
			if err != nil {
				t.Fatalf("%T: proving %d → %d: %v", r, cp.Size, latest.Size, err)
			}
			if err := tlog.CheckConsistency(cp, latest, path); err != nil {
				t.Fatalf("%T: %d → %d: %v", r, cp.Size, latest.Size, err)
			}
		}
		entries, err := tlog.ReadEntries(t.Context(), r, latest, 0, n)
		if err != nil {
			t.Fatal(err)
		}
		for idx, ent := range entries {
			if string(ent) != string(report(t, host, indexes[uint64(idx)])) {
				t.Fatalf("%T: entry %d is not the report proven at that index", r, idx)
			}
		}
	}
}

// httpReader reads the test log through its HTTP handler.
type httpReader struct {
	t *testing.T
	e *env
}

func (h httpReader) get(path string) ([]byte, error) {
	a := h.e.do(h.t, "GET", path, nil)
	switch a.status {
	case http.StatusOK:
		return a.body, nil
	case http.StatusNotFound:
		return nil, os.ErrNotExist
	}
	return nil, errors.New(string(a.body))
}

func (h httpReader) ReadCheckpoint(context.Context) ([]byte, error) { return h.get(PathCheckpoint) }
func (h httpReader) ReadTile(_ context.Context, level, index uint64, width uint8) ([]byte, error) {
	return h.get("/" + tlog.TilePath(level, index, width))
}
func (h httpReader) ReadEntryBundle(_ context.Context, index uint64, width uint8) ([]byte, error) {
	return h.get("/" + tlog.EntriesPath(index, width))
}
