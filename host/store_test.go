package host

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testSigned(t testing.TB, k *attest.PrivateKey, vm string, seq uint64, ev attest.Event, at time.Time) ([]byte, *attest.Report) {
	t.Helper()
	r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(time.Minute), Nonce: bytes.Repeat([]byte{1}, 32), Event: ev,
		Workload: vm, Platform: "host", Seq: seq, Host: &attest.Observations{Host: "h", EventAt: at, Agent: "ok"}}
	b, err := attest.Sign(k, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, r
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	ctx := context.Background()
	var hashes []attest.Digest
	for i, vm := range []string{"vm-1", "vm/2", "vm-1", "..", "vm-1"} {
		ev := attest.Events()[i%len(attest.Events())]
		b, r := testSigned(t, k, vm, uint64(i), ev, testNow.Add(time.Duration(i)*time.Second))
		e, err := s.Put(ctx, vm, b, r)
		if err != nil {
			t.Fatalf("Put(%s) = %v", vm, err)
		}
		if e.Hash != attest.ReportHash(b) || !filepathWithin(dir, e.Path) {
			t.Fatalf("Put(%s) = %+v", vm, e)
		}
		// Storing the same report again is a no-op, not an error.
		if _, err := s.Put(ctx, vm, b, r); err != nil {
			t.Fatalf("second Put = %v", err)
		}
		hashes = append(hashes, e.Hash)
	}
	all, _ := s.List(ctx, Query{})
	if len(all) != 5 {
		t.Fatalf("List = %d entries, want 5", len(all))
	}
	vm1, _ := s.List(ctx, Query{VM: "vm-1"})
	if len(vm1) != 3 || vm1[0].Seq != 0 || vm1[2].Seq != 4 || vm1[1].Event != attest.Events()[2] {
		t.Fatalf("List(vm-1) = %+v", vm1)
	}
	last, _ := s.List(ctx, Query{VM: "vm-1", Limit: 1})
	if len(last) != 1 || last[0].Seq != 4 {
		t.Fatalf("List(vm-1, limit 1) = %+v", last)
	}
	odd, _ := s.List(ctx, Query{VM: ".."})
	if len(odd) != 1 {
		t.Fatalf("a VM named .. was not stored inside the store: %+v", odd)
	}
	b, e, err := s.Get(ctx, hashes[1])
	if err != nil || e.VM != "vm/2" || attest.ReportHash(b) != hashes[1] {
		t.Fatalf("Get = %+v, %v", e, err)
	}
	if _, _, err := s.Get(ctx, attest.Digest{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
	// A temporary file left by a crash mid-write is never listed.
	os.WriteFile(filepath.Join(filepath.Dir(e.Path), ".tmp-crashed"), []byte("half"), 0o600)
	if again, _ := s.List(ctx, Query{}); len(again) != 5 {
		t.Errorf("List after a crashed write = %d entries", len(again))
	}
	// A file whose content no longer matches its name is refused.
	os.WriteFile(e.Path, []byte("rewritten"), 0o640)
	if _, _, err := s.Get(ctx, hashes[1]); err == nil {
		t.Error("Get returned a rewritten report")
	}
}

func filepathWithin(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && rel[:2] != ".."
}

// TestStoreLookup: a hash prefix names the one stored report whose hash
// starts with it; a prefix two reports share is refused naming both.
func TestStoreLookup(t *testing.T) {
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "reports", "vm-1")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var hashes []attest.Digest
	for i, h := range []string{"abcdef01", "abcdef02", "12345678"} {
		var d attest.Digest
		copy(d[:], mustHex(t, h+strings.Repeat("00", len(d)-4)))
		hashes = append(hashes, d)
		e := Entry{VM: "vm-1", Time: testNow.Add(time.Duration(i) * time.Second), Seq: uint64(i), Event: attest.EventPeriodic, Hash: d}
		if err := os.WriteFile(filepath.Join(dir, reportFileName(e)), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if e, err := s.Lookup(ctx, "ABCDEF02"); err != nil || e.Hash != hashes[1] {
		t.Errorf("Lookup(ABCDEF02) = %v, %v", e.Hash, err)
	}
	if e, err := s.Lookup(ctx, hashes[2].String()); err != nil || e.Hash != hashes[2] {
		t.Errorf("Lookup(whole hash) = %v, %v", e.Hash, err)
	}
	_, err = s.Lookup(ctx, "abcdef")
	if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), hashes[0].String()) || !strings.Contains(err.Error(), hashes[1].String()) {
		t.Errorf("Lookup(shared prefix) = %v", err)
	}
	if _, err := s.Lookup(ctx, "999999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(absent) = %v", err)
	}
	for _, bad := range []string{"abc", "abcdeg", strings.Repeat("a", 65)} {
		if _, err := s.Lookup(ctx, bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want a usage error", bad, err)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzLookup: any prefix given on the command line (log show) is refused
// or looked up, never a panic; what Lookup finds has that prefix.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"abcdef", "ABCDEF01", "abc", "zzzzzz", "", strings.Repeat("a", 65), "abcdef\x00"} {
		f.Add(s)
	}
	s, err := NewFileStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "reports", "vm-1")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		f.Fatal(err)
	}
	for i, h := range []string{"abcdef01", "abcdef02", "12345678"} {
		var d attest.Digest
		b, _ := hex.DecodeString(h)
		copy(d[:], b)
		e := Entry{VM: "vm-1", Time: testNow, Seq: uint64(i), Event: attest.EventPeriodic, Hash: d}
		if err := os.WriteFile(filepath.Join(dir, reportFileName(e)), []byte("x"), 0o640); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		e, err := s.Lookup(context.Background(), prefix)
		if err == nil && !strings.HasPrefix(e.Hash.String(), strings.ToLower(prefix)) {
			t.Fatalf("Lookup(%q) found %s", prefix, e.Hash)
		}
	})
}
