package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mldsa"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a tlog-tiles log written by the test itself (x/mod's tlog and
// torchwood's signers), shaped like hvmon's: an ML-DSA-44 log key whose
// name is the origin, an Ed25519 witness.
type testLog struct {
	dir              string
	logKey, witKey   string
	logSig, witSig   note.Signer
	records          [][]byte
	hashes           []tlog.Hash
	checkpoints      map[int64][]byte // signed, by size
	witnessed        bool             // whether checkpoints carry the witness line
	origin           string
	reportsDir       string
	reportPaths      []string
	proofCheckpoints []int64 // for record i, the size of its proof's checkpoint
}

func newTestLog(t testing.TB) *testLog {
	t.Helper()
	const origin = "test.hvmon.dev/log"
	lk, err := mldsa.GenerateKey(mldsa.MLDSA44())
	if err != nil {
		t.Fatal(err)
	}
	ls, err := torchwood.NewCosignatureSigner(origin, lk)
	if err != nil {
		t.Fatal(err)
	}
	_, wk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := torchwood.NewCosignatureSigner("test.hvmon.dev/witness", wk)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := &testLog{
		dir: filepath.Join(dir, "log"), reportsDir: filepath.Join(dir, "reports"),
		logKey: ls.Verifier().String(), witKey: ws.Verifier().String(),
		logSig: ls, witSig: ws, origin: origin,
		checkpoints: make(map[int64][]byte), witnessed: true,
	}
	for _, d := range []string{l.dir, l.reportsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l *testLog) hashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// add appends records, writes the tiles and a signed checkpoint of the new
// size, and writes reports/rNNN.cose and .proof for each new record.
func (l *testLog) add(t testing.TB, records ...[]byte) {
	t.Helper()
	hr := l.hashReader()
	for _, r := range records {
		h, err := tlog.StoredHashes(int64(len(l.records)), r, hr)
		if err != nil {
			t.Fatal(err)
		}
		l.hashes = append(l.hashes, h...)
		l.records = append(l.records, r)
	}
	n := int64(len(l.records))
	root, err := tlog.TreeHash(n, hr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tile := range tlog.NewTiles(torchwood.TileHeight, 0, n) {
		data, err := tlog.ReadTileData(tile, hr)
		if err != nil {
			t.Fatal(err)
		}
		l.write(t, torchwood.TilePath(tile), data)
		if tile.L != 0 {
			continue
		}
		var bundle []byte
		for i := tile.N * torchwood.TileWidth; i < tile.N*torchwood.TileWidth+int64(tile.W); i++ {
			if bundle, err = torchwood.AppendTileEntry(bundle, l.records[i]); err != nil {
				t.Fatal(err)
			}
		}
		l.write(t, torchwood.TilePath(tlog.Tile{H: tile.H, L: -1, N: tile.N, W: tile.W}), bundle)
	}
	signers := []note.Signer{l.logSig}
	if l.witnessed {
		signers = append(signers, l.witSig)
	}
	text := torchwood.Checkpoint{Origin: l.origin, Tree: tlog.Tree{N: n, Hash: root}}.String()
	signed, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	l.checkpoints[n] = signed
	l.write(t, "checkpoint", signed)
	for i := n - int64(len(records)); i < n; i++ {
		p, err := tlog.ProveRecord(n, i, hr)
		if err != nil {
			t.Fatal(err)
		}
		l.writeReport(t, fmt.Sprintf("r%03d", i), l.records[i], torchwood.FormatProof(i, p, signed))
	}
}

func (l *testLog) write(t testing.TB, name string, data []byte) {
	t.Helper()
	p := filepath.Join(l.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *testLog) writeReport(t testing.TB, name string, entry, proof []byte) string {
	t.Helper()
	p := filepath.Join(l.reportsDir, name+".cose")
	if err := os.WriteFile(p, entry, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.reportsDir, name+".proof"), proof, 0o644); err != nil {
		t.Fatal(err)
	}
	l.reportPaths = append(l.reportPaths, p)
	return p
}

func (l *testLog) saveCheckpoint(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(l.dir), fmt.Sprintf("checkpoint.%d", size))
	if err := os.WriteFile(p, l.checkpoints[size], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func records(from, to int) [][]byte {
	var rs [][]byte
	for i := from; i < to; i++ {
		rs = append(rs, fmt.Appendf(nil, "report %d: %s", i, strings.Repeat("x", i%97)))
	}
	return rs
}

// runCheck runs tlogcheck and returns its exit code and output.
func (l *testLog) runCheck(t testing.TB, extra ...string) (int, string) {
	t.Helper()
	args := []string{"-log", l.dir, "-log-key", l.logKey, "-witness-key", l.witKey, "-quorum", "1"}
	args = append(args, extra...)
	var out, errOut bytes.Buffer
	code := run(append(args, l.reportPaths...), &out, &errOut)
	return code, out.String() + errOut.String()
}

// A log of 300 entries (a full tile, a partial one, a second level) passes
// every check, consistency from size 3 included.
func TestValidLog(t *testing.T) {
	l := newTestLog(t)
	l.add(t, records(0, 3)...)
	old := l.saveCheckpoint(t, 3)
	l.add(t, records(3, 300)...)
	code, out := l.runCheck(t, "-old", old)
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	for _, want := range []string{
		"ok    checkpoint: origin test.hvmon.dev/log, size 300,",
		"ok    proof r000: index 0,",
		"ok    proof r299: index 299,",
		"ok    entries: 300 entries",
		"ok    consistency: old checkpoint (size 3, witnessed)",
		"ok    negative path:",
		"ok    negative signature:",
		"ok    negative other-report:",
		"ok    negative witnesses:",
		"ok    negative consistency:",
		"tlogcheck: all 308 checks passed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, l *testLog) []string // returns extra flags
		want  string
	}{{
		name: "report not in the log",
		setup: func(t *testing.T, l *testLog) []string {
			proof, _ := os.ReadFile(filepath.Join(l.reportsDir, "r001.proof"))
			l.writeReport(t, "unlogged", []byte("a report the log never saw"), proof)
			return nil
		},
		want: "FAIL  entries: report unlogged is not in the log",
	}, {
		name: "log entry not among the reports",
		setup: func(t *testing.T, l *testLog) []string {
			l.reportPaths = l.reportPaths[1:]
			return nil
		},
		want: "FAIL  entries: entry 0 (",
	}, {
		name: "tampered entry bundle",
		setup: func(t *testing.T, l *testLog) []string {
			p := filepath.Join(l.dir, "tile", "entries", "000.p", "20")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[10] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		want: "FAIL  entries: hash mismatch for entry 0",
	}, {
		name: "proof of another report",
		setup: func(t *testing.T, l *testLog) []string {
			proof, _ := os.ReadFile(filepath.Join(l.reportsDir, "r002.proof"))
			os.WriteFile(filepath.Join(l.reportsDir, "r001.proof"), proof, 0o644)
			return nil
		},
		want: "FAIL  proof r001: tlog record inclusion proof verification failed for index 2",
	}, {
		name: "old checkpoint of a fork",
		setup: func(t *testing.T, l *testLog) []string {
			fork := newTestLog(t)
			fork.logSig, fork.witSig = l.logSig, l.witSig
			fork.add(t, []byte("another first entry"), l.records[1], l.records[2])
			return []string{"-old", fork.saveCheckpoint(t, 3)}
		},
		want: "FAIL  consistency: invalid transparency proof",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLog(t)
			l.add(t, records(0, 3)...)
			l.add(t, records(3, 20)...)
			code, out := l.runCheck(t, tc.setup(t, l)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "tlogcheck: FAILED:") {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

// A checkpoint without the witness's cosignature fails a quorum of 1 and
// passes a quorum of 0.
func TestWitnessQuorum(t *testing.T) {
	l := newTestLog(t)
	l.witnessed = false
	l.add(t, records(0, 5)...)
	code, out := l.runCheck(t)
	if code != 1 || !strings.Contains(out, "FAIL  checkpoint: note verification failed: only 1/2 policy components satisfied") {
		t.Errorf("quorum 1 on an unwitnessed log: exit %d:\n%s", code, out)
	}
	var o, e bytes.Buffer
	args := append([]string{"-log", l.dir, "-log-key", l.logKey}, l.reportPaths...)
	if code := run(args, &o, &e); code != 0 {
		t.Errorf("log key only: exit %d, want 0:\n%s%s", code, o.String(), e.String())
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-log", "x", "-log-key", "k"},
		{"-log", "x", "-log-key", "k", "-witness-key", "w", "-quorum", "2", "r.cose"},
		{"-log", "x", "-log-key", "k", "not-a-report"},
	} {
		var o, e bytes.Buffer
		if code := run(args, &o, &e); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

// FuzzSplitProof: splitProof never panics, and what it accepts marshals to
// a proof it parses back to the same value.
func FuzzSplitProof(f *testing.F) {
	l := newTestLog(f)
	l.add(f, records(0, 5)...)
	for _, p := range l.reportPaths {
		b, err := os.ReadFile(strings.TrimSuffix(p, ".cose") + ".proof")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := splitProof(b)
		if err != nil {
			return
		}
		q, err := splitProof(p.marshal())
		if err != nil {
			t.Fatalf("marshal of an accepted proof does not parse: %v", err)
		}
		if q.index != p.index || len(q.path) != len(p.path) || !bytes.Equal(q.checkpoint, p.checkpoint) {
			t.Fatalf("round trip changed the proof: %+v != %+v", q, p)
		}
	})
}
