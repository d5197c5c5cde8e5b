// Package measure computes hvmon region fingerprints.
//
// A region is split into PageSize-byte pages (the last page may be short).
// Each page is a leaf of a binary Merkle tree built exactly as the RFC 9162
// (Certificate Transparency v2) Merkle Tree Hash, with SHA3-256 in place of
// SHA-256:
//
//	leaf(page)   = SHA3-256(0x00 || page)
//	node(l, r)   = SHA3-256(0x01 || l || r)
//	MTH({})      = SHA3-256("")
//	MTH({d0})    = leaf(d0)
//	MTH(D[0:n])  = node(MTH(D[0:k]), MTH(D[k:n]))  with k the largest power of two < n
//
// The root of that tree is a region's fingerprint. docs/FORMAT.md is the
// normative definition.
//
// LeafHash, NodeHash and RootFromLeaves are the single-stream reference,
// on the standard library's SHA3-256. Measure, Root and Bytes use the
// engine, spread over GOMAXPROCS goroutines, with the same output bit for
// bit. Which permutation it hashes leaves with is decided at run
// time: eight leaves at once with AVX-512 (this package's assembly), else
// four at once with AVX2 (circl's keccakf1600.StateX4, which also hashes
// the tree's nodes four at a time), else the reference leaf hash.
//
// A Tree keeps the leaf hashes of a measurement (32 bytes per page, plus
// a bounded cache of subtree roots), so that Tree.Update re-hashes only
// the pages that changed, Diff locates drift between two measurements,
// and Tracker re-measures a source that can tell which pages were written
// (DirtySource) incrementally.
//
// The package does no I/O of its own: it reads through Source. Functions
// that take a context start their goroutines and wait for them before they
// return.
package measure

import (
	"context"
	"crypto/sha3"
	"encoding/hex"
	"fmt"
)

// PageSize is the leaf size of the region tree, in bytes. It is recorded in
// every snapshot; format version 1 admits no other value.
const PageSize = 4096

// HashSize is the size of a SHA3-256 digest and of every tree node.
const HashSize = 32

// Digest is a SHA3-256 output.
type Digest [HashSize]byte

const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// EmptyRoot is the fingerprint of a zero-length region: SHA3-256 of the
// empty string.
var EmptyRoot = Digest(sha3.Sum256(nil))

// LeafHash returns the leaf hash of one page.
func LeafHash(page []byte) Digest {
	h := sha3.New256()
	h.Write([]byte{leafPrefix})
	h.Write(page)
	var d Digest
	h.Sum(d[:0])
	return d
}

// NodeHash returns the interior node hash of two children.
func NodeHash(left, right Digest) Digest {
	var buf [1 + 2*HashSize]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return Digest(sha3.Sum256(buf[:]))
}

// RootFromLeaves returns the Merkle tree hash over the given leaf hashes.
func RootFromLeaves(leaves []Digest) Digest {
	switch len(leaves) {
	case 0:
		return EmptyRoot
	case 1:
		return leaves[0]
	}
	k := splitPoint(len(leaves))
	return NodeHash(RootFromLeaves(leaves[:k]), RootFromLeaves(leaves[k:]))
}

// splitPoint returns the largest power of two strictly less than n (n >= 2).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// Pages returns the number of leaves of a region of size bytes.
func Pages(size int64) int64 {
	return (size + PageSize - 1) / PageSize
}

// Bytes returns the fingerprint of an in-memory region.
func Bytes(b []byte) Digest {
	d, err := Root(context.Background(), Memory(b), nil)
	if err != nil {
		panic("measure: hashing memory failed: " + err.Error()) // an in-memory source cannot fail
	}
	return d
}

// String returns the digest in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as lower-case hex (for JSON views).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses exactly 64 hex digits.
func (d *Digest) UnmarshalText(text []byte) error {
	p, err := ParseDigest(string(text))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest parses a digest written as exactly 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*HashSize {
		return d, fmt.Errorf("digest %q: want %d hex digits, got %d", s, 2*HashSize, len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: not hex: %w", s, err)
	}
	return d, nil
}
