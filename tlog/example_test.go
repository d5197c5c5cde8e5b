package tlog_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"time"

	"hvmon.dev/hvmon/tlog"
)

// A log key from a fixed seed: its verifier key is what verifiers pin.
func ExampleNewKeyFromSeed() {
	var seed [tlog.SeedSize]byte
	copy(seed[:], bytes.Repeat([]byte{7}, tlog.SeedSize))
	k, err := tlog.NewKeyFromSeed("example.hvmon.dev/log", seed)
	if err != nil {
		panic(err)
	}
	v, err := tlog.LogVerifier(k.VerifierKey())
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %08x %d\n", v.Name(), v.KeyHash(), len(k.VerifierKey()))
	// Output: example.hvmon.dev/log 57ef839d 1783
}

// A log signs a checkpoint of a one-entry tree, writes a proof for the
// entry, and a verifier checks it offline with the log's verifier key.
func ExampleVerifyProof() {
	var seed [tlog.SeedSize]byte
	k, err := tlog.NewKeyFromSeed("example.hvmon.dev/log", seed)
	if err != nil {
		panic(err)
	}
	entry := []byte("a report's COSE_Sign1 bytes")
	at := time.Unix(1_780_000_000, 0)
	signed, err := k.SignCheckpoint(1, tlog.LeafHash(entry), tlog.SignerOptions{Now: func() time.Time { return at }})
	if err != nil {
		panic(err)
	}
	proof := (&tlog.Proof{Index: 0, Checkpoint: signed}).Marshal()

	logKey, err := tlog.LogVerifier(k.VerifierKey())
	if err != nil {
		panic(err)
	}
	p := tlog.Policy{Log: logKey, Now: func() time.Time { return at }}
	cp, index, err := tlog.VerifyProof(p, entry, proof)
	fmt.Println(cp.Origin, cp.Size, index, cp.LogTime.Unix(), err)
	_, _, err = tlog.VerifyProof(p, []byte("another report"), proof)
	fmt.Println(err)
	// Output:
	// example.hvmon.dev/log 1 0 1780000000 <nil>
	// entry is not included in the checkpoint: index 0 in the tree of size 1: invalid transparency proof
}

// The leaf hash of an entry is RFC 6962's.
func ExampleLeafHash() {
	h := tlog.LeafHash([]byte("entry"))
	want := sha256.Sum256(append([]byte{0}, "entry"...))
	fmt.Println(h == want)
	// Output: true
}

// Tile and entry bundle paths of the tlog-tiles layout.
func ExampleTilePath() {
	fmt.Println(tlog.TilePath(0, 1234067, 0))
	fmt.Println(tlog.TilePath(1, 3, 17))
	fmt.Println(tlog.EntriesPath(1000, 5))
	// Output:
	// tile/0/x001/x234/067
	// tile/1/003.p/17
	// tile/entries/x001/000.p/5
}
