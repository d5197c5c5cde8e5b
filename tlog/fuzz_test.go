package tlog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// addSeeds adds every file matching glob to the corpus and fails when the
// glob finds nothing: a fuzz target without seeds would silently fuzz
// from scratch.
func addSeeds(f *testing.F, glob string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorDir, glob))
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatalf("no fuzz seeds match %s", glob)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// classified fails unless err is nil or matches exactly one of hvmon's
// classes: what the parsers return about their input is malformed or a
// trust failure, never an unclassified error.
func classified(t *testing.T, what string, err error) {
	if err == nil {
		return
	}
	if errors.Is(err, attest.ErrMalformed) == errors.Is(err, attest.ErrTrust) {
		t.Fatalf("%s: error %v is not exactly one of malformed or trust", what, err)
	}
}

func FuzzParseProof(f *testing.F) {
	addSeeds(f, "*.proof")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		classified(t, "ParseProof", err)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatalf("ParseProof accepted a non-canonical file:\n%q\nre-encodes as\n%q", b, p.Marshal())
		}
		_, _, err = VerifyProof(testPolicy(t, 0), testEntry(257), b)
		classified(t, "VerifyProof", err)
	})
}

func FuzzParseConsistency(f *testing.F) {
	addSeeds(f, "*.consistency")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConsistency(b)
		classified(t, "ParseConsistency", err)
		if err == nil && !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("ParseConsistency accepted a non-canonical file: %q", b)
		}
	})
}

func FuzzPolicyOpen(f *testing.F) {
	addSeeds(f, "*.checkpoint")
	p := testPolicy(f, 1, testWitnessKey(f).Verifier(), testEdVerifier(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := p.Open(b)
		classified(t, "Open", err)
		if err != nil {
			return
		}
		if cp.Origin != testOrigin || len(cp.Witnesses) < 1 || !bytes.HasPrefix(b, cp.Body) {
			t.Fatalf("Open accepted %q as %+v", b, cp)
		}
	})
}

func FuzzParseVerifierKey(f *testing.F) {
	addSeeds(f, "*.vkey")
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVerifierKey(string(b))
		classified(t, "ParseVerifierKey", err)
		if err != nil {
			return
		}
		if v2, err := ParseVerifierKey(v.String()); err != nil || !v2.Equal(v) || v2.KeyHash() != v.KeyHash() {
			t.Fatalf("verifier key %q does not round-trip: %v", v, err)
		}
	})
}

func FuzzParseEntryBundle(f *testing.F) {
	for _, n := range []int{1, 2, 256} {
		var es [][]byte
		for i := range n {
			es = append(es, testEntry(i))
		}
		b, err := MarshalEntryBundle(es)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseEntryBundle(b)
		classified(t, "ParseEntryBundle", err)
		if err != nil {
			return
		}
		b2, err := MarshalEntryBundle(es)
		if err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("bundle does not round-trip: %v", err)
		}
	})
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/x234/067.p/3", "tile/entries/x001/000.p/255"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, i, w, e, err := ParseTilePath(s)
		classified(t, "ParseTilePath", err)
		if err != nil {
			return
		}
		got := TilePath(l, i, w)
		if e {
			got = EntriesPath(i, w)
		}
		if got != s {
			t.Fatalf("ParseTilePath(%q) re-encodes as %q", s, got)
		}
	})
}
