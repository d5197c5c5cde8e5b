package logd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
)

const testOrigin = "test.hvmon.dev/log"

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// hostKey derives a host (attester) key from a one-byte seed pattern.
func hostKey(t testing.TB, b byte) *attest.PrivateKey {
	t.Helper()
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{b}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// logKey is the test log's key, from a fixed public seed.
func logKey(t testing.TB) *tlog.PrivateKey {
	t.Helper()
	k, err := tlog.NewKeyFromSeed(testOrigin, sha256.Sum256([]byte("hvmon logd test key")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// report returns report number i signed by k, deterministically: the same
// (k, i) gives the same bytes.
func report(t testing.TB, k *attest.PrivateKey, i int) []byte {
	t.Helper()
	nonce := sha256.Sum256(fmt.Appendf(nil, "nonce %d", i))
	r := &attest.Report{IssuedAt: testNow, ExpiresAt: testNow.Add(5 * time.Minute), Nonce: nonce[:], Event: attest.EventOnDemand,
		Workload: "vm-1", Platform: "file", Attester: attest.Identity{Name: "hv-1"}}
	b, err := attest.Sign(k, r, &attest.SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubPEM(t testing.TB, ks ...*attest.PrivateKey) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# test allowlist\n")
	for _, k := range ks {
		p, err := attest.MarshalPublicKeyPEM(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		b.Write(p)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// env is a running POSIX log in a temporary directory behind an httptest
// server.
type env struct {
	dir       string
	allowlist string
	srv       *Server
	ts        *httptest.Server
	policy    tlog.Policy
}

// testConfig is the configuration text of a test log in dir; extra is
// appended.
func testConfig(dir, extra string) string {
	return fmt.Sprintf(`
origin = %q
key = %q
allowlist = %q
checkpoint_interval = "100ms"
batch_max_age = "10ms"
posix {
  dir = %q
}
%s`, testOrigin, filepath.Join(dir, "log.key"), filepath.Join(dir, "allowlist.pem"), filepath.Join(dir, "log"), extra)
}

// newEnv starts a log that accepts reports of the given host keys.
func newEnv(t *testing.T, extra string, hosts ...*attest.PrivateKey) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), extra, hosts...)
}

// newEnvIn is newEnv in a given directory.
func newEnvIn(t *testing.T, dir, extra string, hosts ...*attest.PrivateKey) *env {
	t.Helper()
	lk := logKey(t)
	pemBytes, err := lk.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "log.key"), pemBytes, 0o600)
	writeFile(t, filepath.Join(dir, "allowlist.pem"), pubPEM(t, hosts...), 0o644)
	cfg, err := ParseConfig([]byte(testConfig(dir, extra)), "logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, srv)
	e := &env{dir: dir, allowlist: filepath.Join(dir, "allowlist.pem"), srv: srv, ts: ts, policy: tlog.Policy{Log: lk.Verifier()}}
	e.waitReady(t)
	return e
}

// newTestServer serves srv's handler until the test ends, then closes
// srv.
func newTestServer(t *testing.T, srv *Server) *httptest.Server {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ts
}

// srvFollower returns how many entries the persistent dedup index has
// followed.
func (e *env) srvFollower(t *testing.T) (uint64, error) {
	return e.srv.follower.EntriesProcessed(t.Context())
}

// waitReady waits until the log accepts submissions.
func (e *env) waitReady(t *testing.T) {
	t.Helper()
	for !e.srv.Ready() {
		select {
		case <-t.Context().Done():
			t.Fatal("log never became ready")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(t testing.TB, method, path string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}
