package tlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"testing"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// Fixed names, seeds and time of the test keys and vectors.
const (
	testOrigin  = "example.hvmon.dev/log"
	testWitness = "witness-1.hvmon.dev" // ML-DSA-44 (0x06)
	testEdName  = "witness-2.hvmon.dev" // Ed25519 (0x04)
)

var testTime = time.Unix(1_780_000_000, 0).UTC()

func fill(b byte) (s [SeedSize]byte) {
	for i := range s {
		s[i] = b
	}
	return s
}

func testLogKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := NewKeyFromSeed(testOrigin, fill(0x07))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testWitnessKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := NewKeyFromSeed(testWitness, fill(0x08))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testEdKey() ed25519.PrivateKey {
	s := fill(0x09)
	return ed25519.NewKeyFromSeed(s[:])
}

func testEdVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := NewEd25519Verifier(testEdName, testEdKey().Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fixed signs deterministically at testTime.
var fixed = SignerOptions{Now: func() time.Time { return testTime }, Deterministic: true}

func testPolicy(t testing.TB, quorum int, witnesses ...*Verifier) Policy {
	return Policy{Log: testLogKey(t).Verifier(), Witnesses: witnesses, Quorum: quorum, Now: func() time.Time { return testTime }}
}

func testEntry(i int) []byte { return fmt.Appendf(nil, "hvmon test entry %d", i) }

// memLog is an in-memory log in the tlog-tiles layout, built with x/mod's
// stored hashes: the test double of a log's tiles and bundles.
type memLog struct {
	key     *PrivateKey
	entries [][]byte
	hashes  []xtlog.Hash
	// gc makes a partial tile or bundle missing once the full one
	// exists, as after a log collected it.
	gc bool
	// tamper, when set, may change the bytes of a tile read.
	tamper func(path string, b []byte) []byte
	reads  []string
}

func newMemLog(t testing.TB, n int) *memLog {
	t.Helper()
	m := &memLog{key: testLogKey(t)}
	m.add(t, n)
	return m
}

func (m *memLog) add(t testing.TB, n int) {
	t.Helper()
	for range n {
		e := testEntry(len(m.entries))
		hs, err := xtlog.StoredHashes(int64(len(m.entries)), e, m.hashReader())
		if err != nil {
			t.Fatal(err)
		}
		m.entries = append(m.entries, e)
		m.hashes = append(m.hashes, hs...)
	}
}

func (m *memLog) hashReader() xtlog.HashReader {
	return xtlog.HashReaderFunc(func(idx []int64) ([]xtlog.Hash, error) {
		out := make([]xtlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(m.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = m.hashes[x]
		}
		return out, nil
	})
}

func (m *memLog) root(t testing.TB, size int) [32]byte {
	t.Helper()
	h, err := xtlog.TreeHash(int64(size), m.hashReader())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkpoint signs the tree of the given size.
func (m *memLog) checkpoint(t testing.TB, size int) *Checkpoint {
	t.Helper()
	signed, err := m.key.SignCheckpoint(uint64(size), m.root(t, size), fixed)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := testPolicy(t, 0).Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (m *memLog) ReadCheckpoint(context.Context) ([]byte, error) {
	return nil, fs.ErrNotExist
}

func (m *memLog) ReadTile(_ context.Context, level, index uint64, width uint8) ([]byte, error) {
	path := TilePath(level, index, width)
	m.reads = append(m.reads, path)
	avail := int64(len(m.entries)) >> (TileHeight * level)
	w := int(width)
	if w == 0 || m.gc && int64(index+1)*tileWidth <= avail {
		if w != 0 {
			return nil, fs.ErrNotExist
		}
		w = tileWidth
	}
	if int64(index)*tileWidth+int64(w) > avail {
		return nil, fs.ErrNotExist
	}
	b, err := xtlog.ReadTileData(xtlog.Tile{H: TileHeight, L: int(level), N: int64(index), W: w}, m.hashReader())
	if err == nil && m.tamper != nil {
		b = m.tamper(path, b)
	}
	return b, err
}

func (m *memLog) ReadEntryBundle(_ context.Context, index uint64, width uint8) ([]byte, error) {
	path := EntriesPath(index, width)
	m.reads = append(m.reads, path)
	first := int(index) * tileWidth
	w := int(width)
	if w == 0 || m.gc && first+tileWidth <= len(m.entries) {
		if w != 0 {
			return nil, fs.ErrNotExist
		}
		w = tileWidth
	}
	if first+w > len(m.entries) {
		return nil, fs.ErrNotExist
	}
	b, err := MarshalEntryBundle(m.entries[first : first+w])
	if err == nil && m.tamper != nil {
		b = m.tamper(path, b)
	}
	return b, err
}

// flipB64 returns line with one bit flipped in byte i of its base64
// decoding, re-encoded.
func flipB64(t testing.TB, s string, i int) string {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	b[i] ^= 1
	return b64.EncodeToString(b)
}

// replaceOnce replaces the one occurrence of old in b.
func replaceOnce(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	if bytes.Count(b, []byte(old)) != 1 {
		t.Fatalf("%q occurs %d times", old, bytes.Count(b, []byte(old)))
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

func xtlogStored(n int64) int64 { return xtlog.StoredHashCount(n) }

func xtlogStoredHashes(t testing.TB, m *memLog, e []byte) ([]xtlog.Hash, error) {
	t.Helper()
	return xtlog.StoredHashes(int64(len(m.entries)), e, m.hashReader())
}
