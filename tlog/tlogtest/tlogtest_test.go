package tlogtest_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

var at = time.Unix(1_780_000_000, 0)

func entry(i int) []byte { return fmt.Appendf(nil, "report %d", i) }

// TestLog: what the fake log writes, package tlog verifies, and the
// proofs it builds from the fake's tiles are the fake's own proofs.
func TestLog(t *testing.T) {
	key, err := tlog.NewKeyFromSeed("fake.hvmon.dev/log", [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	opts := tlog.SignerOptions{Now: func() time.Time { return at }, Deterministic: true}
	seed := bytes.Repeat([]byte{2}, 32)
	w, err := tlog.NewEd25519Cosigner("w.hvmon.dev", ed25519.NewKeyFromSeed(seed), opts)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := tlog.NewEd25519Verifier("w.hvmon.dev", ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	l := tlogtest.New(key, opts)
	l.GC = true
	for i := range 600 {
		if _, err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	old, err := l.Checkpoint(100)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := l.Publish(w)
	if err != nil {
		t.Fatal(err)
	}
	p := tlog.Policy{Log: key.Verifier(), Witnesses: []*tlog.Verifier{wv}, Now: opts.Now}
	proof, err := l.Proof(300, signed)
	if err != nil {
		t.Fatal(err)
	}
	cp, idx, err := tlog.VerifyProof(p, entry(300), proof)
	if err != nil || idx != 300 || cp.Size != 600 {
		t.Fatalf("VerifyProof = %v, %d, %v", cp, idx, err)
	}
	path, err := tlog.ProveInclusion(t.Context(), l, cp, 300)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := tlog.ParseProof(proof)
	if fmt.Sprint(path) != fmt.Sprint(parsed.Path) {
		t.Error("the proof built from tiles differs from the fake's")
	}
	oldCp, err := tlog.Policy{Log: key.Verifier(), Now: opts.Now}.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := l.Consistency(100, signed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlog.VerifyConsistency(p, oldCp, cons); err != nil {
		t.Errorf("VerifyConsistency = %v", err)
	}
	es, err := tlog.ReadEntries(t.Context(), l, cp, 0, 600)
	if err != nil || !bytes.Equal(es[599], entry(599)) {
		t.Fatalf("ReadEntries = %d entries, %v", len(es), err)
	}
	got, err := l.ReadCheckpoint(t.Context())
	if err != nil || !bytes.Equal(got, signed) {
		t.Errorf("ReadCheckpoint = %v", err)
	}
	l.Tamper = func(path string, b []byte) []byte {
		if path == "tile/0/001" {
			b[0] ^= 1
		}
		return b
	}
	if _, err := tlog.ProveInclusion(t.Context(), l, cp, 300); !errors.Is(err, tlog.ErrBadTile) {
		t.Errorf("ProveInclusion over a tampered tile = %v, want ErrBadTile", err)
	}
}
