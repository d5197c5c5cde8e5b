package tlog

//go:generate go test -run TestVectors -update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite testdata from the generator")

const vectorDir = "testdata"

// vector is one scenario: a file, what to check it as, the policy, and
// the outcome ("ok" or the name of a sentinel).
type vector struct {
	Name      string    `json:"name"`
	File      string    `json:"file"`
	Kind      string    `json:"kind"`            // checkpoint, proof or consistency
	Entry     string    `json:"entry,omitempty"` // proof: the entry's bytes (text)
	Old       string    `json:"old,omitempty"`   // consistency: the old checkpoint's file
	Witnesses []string  `json:"witnesses"`       // verifier key files
	Quorum    int       `json:"quorum"`          // 0: all witnesses
	At        time.Time `json:"at"`
	Want      string    `json:"want"`
}

type vectorFile struct {
	Comment string   `json:"comment"`
	LogKey  string   `json:"log_key"`
	Vectors []vector `json:"vectors"`
}

var sentinels = map[string]error{
	"ErrMalformed": ErrMalformed, "ErrLogSignature": ErrLogSignature, "ErrOrigin": ErrOrigin,
	"ErrWitness": ErrWitness, "ErrQuorum": ErrQuorum, "ErrTimestamp": ErrTimestamp,
	"ErrNotIncluded": ErrNotIncluded, "ErrInconsistent": ErrInconsistent,
}

// sentinelOf names the one sentinel err matches ("ok" for nil).
func sentinelOf(t *testing.T, err error) string {
	if err == nil {
		return "ok"
	}
	var found []string
	for name, s := range sentinels {
		if errors.Is(err, s) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("error %v matches sentinels %v, want exactly one", err, found)
	}
	return found[0]
}

// sigB64 returns the base64 of the signature line of name in signed.
func sigB64(t testing.TB, signed []byte, name string) string {
	t.Helper()
	for l := range strings.SplitSeq(string(signed), "\n") {
		if s, ok := strings.CutPrefix(l, "— "+name+" "); ok {
			return s
		}
	}
	t.Fatalf("no line of %s", name)
	return ""
}

// dropLine removes the signature line of name.
func dropLine(t testing.TB, signed []byte, name string) []byte {
	return replaceOnce(t, signed, "— "+name+" "+sigB64(t, signed, name)+"\n", "")
}

// generateVectors builds every test vector from the fixed seeds.
func generateVectors(t testing.TB) (map[string][]byte, []vector) {
	m := newMemLog(t, 300)
	wk := testWitnessKey(t)
	ed, err := NewEd25519Cosigner(testEdName, testEdKey(), fixed)
	if err != nil {
		t.Fatal(err)
	}
	witnessed := func(size int) []byte {
		signed, err := m.key.SignCheckpoint(uint64(size), m.root(t, size), fixed)
		if err != nil {
			t.Fatal(err)
		}
		if signed, err = Cosign(signed, wk.NoteSigner(fixed), ed); err != nil {
			t.Fatal(err)
		}
		return signed
	}
	cp, old := witnessed(300), witnessed(100)
	pem, err := m.key.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"log.key":        pem,
		"log.vkey":       []byte(m.key.VerifierKey() + "\n"),
		"witness-1.vkey": []byte(wk.VerifierKey() + "\n"),
		"witness-2.vkey": []byte(testEdVerifier(t).String() + "\n"),
	}
	var vs []vector
	both := []string{"witness-1.vkey", "witness-2.vkey"}
	add := func(name, kind string, data []byte, want string, tweak ...func(*vector)) {
		file := name + "." + kind
		files[file] = data
		v := vector{Name: name, File: file, Kind: kind, Witnesses: both, At: testTime, Want: want}
		switch kind {
		case "proof":
			v.Entry = string(testEntry(257))
		case "consistency":
			v.Old = "size-100.checkpoint"
		}
		for _, f := range tweak {
			f(&v)
		}
		vs = append(vs, v)
	}

	// Checkpoints.
	r300 := m.root(t, 300)
	root300 := b64.EncodeToString(r300[:])
	logLine := sigB64(t, cp, testOrigin)
	add("size-100", "checkpoint", old, "ok")
	add("size-300", "checkpoint", cp, "ok")
	add("root-changed", "checkpoint", replaceOnce(t, cp, "\n"+root300+"\n", "\n"+flipB64(t, root300, 0)+"\n"), "ErrLogSignature")
	add("size-changed", "checkpoint", replaceOnce(t, cp, "\n300\n", "\n301\n"), "ErrLogSignature")
	add("log-signature-byte", "checkpoint", replaceOnce(t, cp, logLine, flipB64(t, logLine, 100)), "ErrLogSignature")
	add("log-key-id", "checkpoint", replaceOnce(t, cp, logLine, flipB64(t, logLine, 0)), "ErrLogSignature")
	add("log-timestamp", "checkpoint", replaceOnce(t, cp, logLine, flipB64(t, logLine, 11)), "ErrLogSignature")
	add("no-log-line", "checkpoint", dropLine(t, cp, testOrigin), "ErrLogSignature")
	other, err := note.Sign(&note.Note{Text: string(FormatCheckpoint("other.hvmon.dev/log", 300, m.root(t, 300)))}, m.key.NoteSigner(fixed))
	if err != nil {
		t.Fatal(err)
	}
	add("origin-not-key-name", "checkpoint", other, "ErrOrigin", func(v *vector) { v.Witnesses = nil })
	add("extension-line", "checkpoint", replaceOnce(t, cp, "\n\n", "\nhvmon extension\n\n"), "ErrMalformed")
	add("witness-missing", "checkpoint", dropLine(t, cp, testWitness), "ErrQuorum")
	add("witness-missing-quorum-1", "checkpoint", dropLine(t, cp, testWitness), "ok", func(v *vector) { v.Quorum = 1 })
	wLine := sigB64(t, cp, testWitness)
	add("witness-signature-byte", "checkpoint", replaceOnce(t, cp, wLine, flipB64(t, wLine, 200)), "ErrWitness", func(v *vector) { v.Quorum = 1 })
	edLine := sigB64(t, cp, testEdName)
	add("ed25519-witness-signature-byte", "checkpoint", replaceOnce(t, cp, edLine, flipB64(t, edLine, 30)), "ErrWitness", func(v *vector) { v.Quorum = 1 })
	s0 := fill(0x0a)
	stranger, err := NewEd25519Cosigner("stranger.hvmon.dev", ed25519.NewKeyFromSeed(s0[:]), fixed)
	if err != nil {
		t.Fatal(err)
	}
	withStranger, err := Cosign(cp, stranger)
	if err != nil {
		t.Fatal(err)
	}
	add("unknown-line-ignored", "checkpoint", withStranger, "ok")
	add("future-cosignature", "checkpoint", cp, "ErrTimestamp", func(v *vector) { v.At = testTime.Add(-time.Hour) })
	add("truncated-line", "checkpoint", cp[:len(cp)-40], "ErrMalformed")

	// Proofs.
	path, err := ProveInclusion(t.Context(), m, m.checkpoint(t, 300), 257)
	if err != nil {
		t.Fatal(err)
	}
	proof := &Proof{Index: 257, Path: path, Checkpoint: cp}
	good := proof.Marshal()
	add("entry-257", "proof", good, "ok")
	add("wrong-entry", "proof", good, "ErrNotIncluded", func(v *vector) { v.Entry = string(testEntry(256)) })
	add("index-changed", "proof", replaceOnce(t, good, "\nindex 257\n", "\nindex 258\n"), "ErrNotIncluded")
	add("index-beyond-size", "proof", replaceOnce(t, good, "\nindex 257\n", "\nindex 300\n"), "ErrNotIncluded")
	h := b64.EncodeToString(path[3][:])
	add("path-hash", "proof", replaceOnce(t, good, "\n"+h+"\n", "\n"+flipB64(t, h, 31)+"\n"), "ErrNotIncluded")
	add("path-short", "proof", replaceOnce(t, good, "\n"+h+"\n", "\n"), "ErrNotIncluded")
	add("proof-root-changed", "proof", replaceOnce(t, good, "\n"+root300+"\n", "\n"+flipB64(t, root300, 5)+"\n"), "ErrLogSignature")
	add("proof-truncated", "proof", good[:len(good)/2], "ErrMalformed")
	add("proof-witness-missing", "proof", replaceOnce(t, good, "— "+testEdName+" "+edLine+"\n", ""), "ErrQuorum")
	add("proof-leading-zero", "proof", replaceOnce(t, good, "\nindex 257\n", "\nindex 0257\n"), "ErrMalformed")

	// Consistency.
	cpath, err := ProveConsistency(t.Context(), m, m.checkpoint(t, 100), m.checkpoint(t, 300))
	if err != nil {
		t.Fatal(err)
	}
	cons := (&ConsistencyProof{Old: 100, Path: cpath, Checkpoint: cp}).Marshal()
	add("from-100", "consistency", cons, "ok")
	ch := b64.EncodeToString(cpath[0][:])
	add("consistency-hash", "consistency", replaceOnce(t, cons, "\n"+ch+"\n", "\n"+flipB64(t, ch, 0)+"\n"), "ErrInconsistent")
	add("consistency-old-size", "consistency", replaceOnce(t, cons, "\nold 100\n", "\nold 99\n"), "ErrInconsistent")
	add("consistency-truncated", "consistency", cons[:60], "ErrMalformed")
	return files, vs
}

// TestVectors regenerates every vector in memory, checks that testdata
// holds exactly those bytes (run `go generate ./tlog` after a deliberate
// change), and that each gives its outcome.
func TestVectors(t *testing.T) {
	files, vs := generateVectors(t)
	man, err := json.MarshalIndent(vectorFile{
		Comment: "hvmon transparency log vectors (docs/FORMAT.md §15): each names a file, how to check it (checkpoint: Policy.Open; proof: VerifyProof of entry; consistency: VerifyConsistency from old), the policy (log.vkey, witness keys, quorum, clock) and the outcome. Generated by tlog/vectors_test.go (go generate ./tlog) from fixed seeds.",
		LogKey:  "log.vkey",
		Vectors: vs,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files["vectors.json"] = append(man, '\n')
	if *update {
		for name, data := range files {
			mode := os.FileMode(0o644)
			if filepath.Ext(name) == ".key" {
				mode = 0o600
			}
			if err := os.WriteFile(filepath.Join(vectorDir, name), data, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatalf("%v (run go generate ./tlog)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/%s is stale: the generator now writes other bytes (run go generate ./tlog)", vectorDir, name)
		}
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) { checkVector(t, v, files) })
	}
}

func checkVector(t *testing.T, v vector, files map[string][]byte) {
	logKey, err := LogVerifier(string(files["log.vkey"]))
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Log: logKey, Quorum: v.Quorum, Now: func() time.Time { return v.At }}
	for _, w := range v.Witnesses {
		wv, err := ParseVerifierKey(string(files[w]))
		if err != nil {
			t.Fatal(err)
		}
		p.Witnesses = append(p.Witnesses, wv)
	}
	data := files[v.File]
	switch v.Kind {
	case "checkpoint":
		cp, err := p.Open(data)
		if got := sentinelOf(t, err); got != v.Want {
			t.Fatalf("Open(%s) = %v (%s), want %s", v.File, err, got, v.Want)
		}
		if err == nil && (cp.Origin != testOrigin || !cp.LogTime.Equal(testTime)) {
			t.Errorf("Open(%s) = origin %q, log time %v", v.File, cp.Origin, cp.LogTime)
		}
	case "proof":
		_, idx, err := VerifyProof(p, []byte(v.Entry), data)
		if got := sentinelOf(t, err); got != v.Want {
			t.Fatalf("VerifyProof(%s) = %v (%s), want %s", v.File, err, got, v.Want)
		}
		if err == nil && idx != 257 {
			t.Errorf("VerifyProof(%s) index %d, want 257", v.File, idx)
		}
	case "consistency":
		old, err := p.Open(files[v.Old])
		if err != nil {
			t.Fatal(err)
		}
		_, err = VerifyConsistency(p, old, data)
		if got := sentinelOf(t, err); got != v.Want {
			t.Fatalf("VerifyConsistency(%s) = %v (%s), want %s", v.File, err, got, v.Want)
		}
	default:
		t.Fatalf("unknown kind %q", v.Kind)
	}
}
