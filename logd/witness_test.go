package logd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"hvmon.dev/hvmon/tlog"
)

// fakeWitness cosigns every checkpoint posted to /add-checkpoint with an
// Ed25519 cosignature (it checks no consistency: it stands in for a
// witness, the log's side is under test), or answers 503 while down.
type fakeWitness struct {
	ts   *httptest.Server
	vkey string
	v    *tlog.Verifier
	down atomic.Bool
	hits atomic.Int64
}

func newFakeWitness(t *testing.T, name string) *fakeWitness {
	t.Helper()
	seed := sha256.Sum256([]byte("witness " + name))
	key := ed25519.NewKeyFromSeed(seed[:])
	v, err := tlog.NewEd25519Verifier(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tlog.NewEd25519Cosigner(name, key, tlog.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWitness{v: v, vkey: v.String()}
	w.ts = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		if w.down.Load() || r.URL.Path != "/add-checkpoint" {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		_, cp, ok := bytes.Cut(body, []byte("\n\n"))
		if !ok {
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		cosigned, err := tlog.Cosign(cp, signer)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		// Answer only the new line.
		for _, l := range strings.SplitAfter(string(cosigned), "\n") {
			if strings.HasPrefix(l, "— "+name+" ") {
				io.WriteString(rw, l)
			}
		}
	}))
	t.Cleanup(w.ts.Close)
	return w
}

// A checkpoint is published only with the witness's cosignature; proofs
// carry it; while the witness is down (not failing open) submissions get
// 503 and succeed, at the same index, once it is back.
func TestWitnessed(t *testing.T) {
	host := hostKey(t, 1)
	w := newFakeWitness(t, "witness-1.example")
	e := newEnv(t, `
await_timeout = "300ms"
witness "w1" {
  vkey = "`+w.vkey+`"
  url  = "`+w.ts.URL+`"
}
`, host)
	policy := tlog.Policy{Log: e.policy.Log, Witnesses: []*tlog.Verifier{w.v}, Quorum: 1}

	a := e.do(t, "POST", PathAdd, report(t, host, 1))
	if a.status != http.StatusOK {
		t.Fatalf("witnessed submission: %d %s", a.status, a.body)
	}
	cp, _, err := tlog.VerifyProof(policy, report(t, host, 1), a.body)
	if err != nil {
		t.Fatalf("proof under the witness policy: %v", err)
	}
	if len(cp.Witnesses) != 1 {
		t.Errorf("checkpoint witnesses %v", cp.Witnesses)
	}

	w.down.Store(true)
	before := w.hits.Load()
	a = e.do(t, "POST", PathAdd, report(t, host, 2))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "5" {
		t.Fatalf("witness down: %d Retry-After %q %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	if w.hits.Load() == before {
		t.Error("the log did not ask the witness")
	}
	// The unwitnessed tree never became the published checkpoint.
	if got, err := policy.Open(e.do(t, "GET", PathCheckpoint, nil).body); err != nil || got.Size != 1 {
		t.Fatalf("published checkpoint while the witness is down: %v, %v", got, err)
	}
	w.down.Store(false)
	for {
		a = e.do(t, "POST", PathAdd, report(t, host, 2))
		if a.status == http.StatusOK {
			break
		}
		if a.status != http.StatusServiceUnavailable || t.Context().Err() != nil {
			t.Fatalf("after the witness came back: %d %s", a.status, a.body)
		}
	}
	if a.header.Get("Hvmon-Log-Index") != "1" || a.header.Get("Hvmon-Log-Duplicate") != "true" {
		t.Errorf("resubmission after the outage: index %s duplicate %s", a.header.Get("Hvmon-Log-Index"), a.header.Get("Hvmon-Log-Duplicate"))
	}
	if _, _, err := tlog.VerifyProof(policy, report(t, host, 2), a.body); err != nil {
		t.Fatal(err)
	}
}
