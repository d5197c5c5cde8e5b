package webui

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/measure"
)

// chainDir holds the chain audit vectors (policy/chain_vectors_test.go):
// histories with migrations, snapshots and restores, rollbacks, forks and
// gaps, signed by the keys under testdata/keys.
const chainDir = "../policy/testdata/chain"

// testNow is the view's clock in tests: an hour after the vectors start.
var testNow = time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)

// putVector stores every report of the chain vector name in s.
func putVector(t testing.TB, s *host.FileStore, name string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(chainDir, name, "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("vector %s: no reports under %s (%v)", name, chainDir, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		putReport(t, s, b)
	}
}

func putReport(t testing.TB, s *host.FileStore, b []byte) host.Entry {
	t.Helper()
	in, err := attest.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Put(context.Background(), in.Report.Workload, b, in.Report)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seedKey(t testing.TB, b byte) *attest.PrivateKey {
	t.Helper()
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{b}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// driftVM is the name of the VM putDriftVM stores.
const driftVM = "vm-2"

// putDriftVM stores a history of driftVM on hv-a whose agent reports
// changed pages of a 64-page region: none at boot, pages 3–5 and page 10,
// then page 0. The vectors carry no changed pages; this is the drift the
// agent reports after an incremental measurement.
func putDriftVM(t testing.TB, s *host.FileStore) {
	t.Helper()
	hostKey, guestKey := seedKey(t, 0x01), seedKey(t, 0x07)
	start := time.Date(2026, 11, 27, 12, 30, 0, 0, time.UTC)
	var hostPrev, guestPrev *attest.Digest
	changes := [][]attest.PageRange{nil, {{First: 3, Last: 5}, {First: 10, Last: 10}}, {{First: 0, Last: 0}}}
	events := []attest.Event{attest.EventBoot, attest.EventPeriodic, attest.EventPeriodic}
	content := bytes.Repeat([]byte{0x5a}, 64*measure.PageSize)
	for i, ev := range events {
		at := start.Add(time.Duration(i) * time.Minute)
		nonce := bytes.Repeat([]byte{byte(i + 1)}, 32)
		g := &attest.GuestEvidence{IssuedAt: at, Nonce: nonce, Event: ev, VM: driftVM, Platform: "none",
			Claims: []attest.Claim{{
				Region: attest.Region{ID: "weights", Size: uint64(len(content)), Protection: "RO"},
				Snapshot: attest.Snapshot{RegionID: "weights", Root: measure.Bytes(content), Size: uint64(len(content)), TakenAt: at,
					PageSize: measure.PageSize, Mode: "incremental", Changed: changes[i]},
				Workload: driftVM, Platform: "none"}},
			GuestKey: guestKey.PublicKey().Bytes(), Seq: uint64(i), Prev: guestPrev}
		gs, err := attest.SignGuestEvidence(guestKey, g, &attest.SignOptions{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		gh := attest.ReportHash(gs)
		guestPrev = &gh
		r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(5 * time.Minute), Nonce: nonce, Event: ev, Workload: driftVM,
			Platform: attest.PlatformHost, Attester: attest.Identity{Name: "hv-a"}, Seq: uint64(i), Prev: hostPrev, Guest: gs,
			Host: &attest.Observations{Host: "hv-a", EventAt: at.Add(-time.Second), Agent: "ok"}}
		b, err := attest.Sign(hostKey, r, &attest.SignOptions{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		rh := attest.ReportHash(b)
		hostPrev = &rh
		putReport(t, s, b)
	}
}

// trusted returns the vectors' host keys (hv-a, hv-b).
func trusted(t testing.TB) []*attest.PublicKey {
	t.Helper()
	var keys []*attest.PublicKey
	for _, n := range []string{"host.pub", "other.pub"} {
		k, err := keyfile.LoadPublic(filepath.Join("..", "testdata", "keys", n))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// newTestServer returns a Server over a fresh store holding the vectors
// named and, with drift, driftVM's history.
func newTestServer(t testing.TB, drift bool, vectors ...string) (*Server, *host.FileStore) {
	t.Helper()
	s, err := host.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vectors {
		putVector(t, s, v)
	}
	if drift {
		putDriftVM(t, s)
	}
	srv, err := New(Options{Store: s, Verify: attest.VerifyOptions{TrustedKeys: trusted(t)}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return srv, s
}

// demoServer is the store the browser test and the page tests share: the
// demo's lifecycle (vm-1: migration, snapshot, restore, rollback) and
// driftVM.
func demoServer(t testing.TB) (*Server, *host.FileStore) {
	return newTestServer(t, true, "lifecycle")
}

// get requests path from h and returns the response and its body.
func get(t testing.TB, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// vectorNames lists the chain vectors.
func vectorNames(t testing.TB) []string {
	t.Helper()
	es, err := os.ReadDir(chainDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 || !slices.Contains(out, "lifecycle") {
		t.Fatalf("no chain vectors under %s: %v", chainDir, out)
	}
	return out
}

func hostQuery(vm string) host.Query { return host.Query{VM: vm} }
