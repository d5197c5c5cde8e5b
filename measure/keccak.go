package measure

import (
	"encoding/binary"

	"github.com/cloudflare/circl/simd/keccakf1600"
)

// SHA3-256 over the four-way Keccak-f[1600] permutation.
//
// The sponge is written out here because the permutation package offers
// only the permutation: a SHA3-256 block ("rate") is 136 bytes, absorbed by
// XOR into the first 17 little-endian 64-bit lanes of the state; the
// message is padded with the domain byte 0x06 right after its last byte and
// 0x80 in the last byte of the block (both in the same byte when they
// coincide); the digest is the first 32 bytes of the state after the last
// permutation. The four permutations of a StateX4 are interleaved lane by
// lane: word 4*i+k of the state is lane i of instance k.
//
// A leaf is 0x00 ‖ page: 4097 bytes for a full page, that is 30 blocks and
// a final block with 17 bytes of message. Only full pages go through the
// four-way path, so the four instances always absorb the same number of
// blocks; a short last page is hashed on the scalar path (LeafHash).

const (
	rate       = 136      // SHA3-256 rate in bytes
	rateWords  = rate / 8 // 17
	leafBlocks = (1 + PageSize) / rate
	leafTail   = (1 + PageSize) % rate // message bytes in the final block
	dsByte     = 0x06                  // SHA-3 domain separation and first padding bit
)

// The final-block layout below relies on these numbers.
var (
	_ = [1]int{}[leafBlocks-30]
	_ = [1]int{}[leafTail-17]
)

// simd reports whether the four-way permutation runs on SIMD instructions
// here. Where it does not, the engine hashes page by page with the
// standard library, which is faster than a four-way permutation emulated in
// Go. Tests switch it off to check the portable path.
var simd = keccakf1600.IsEnabledX4()

// x4 is a four-way SHA3-256 hasher for leaves and nodes. It must not be
// copied after newX4: the state slice points into the struct.
type x4 struct {
	st keccakf1600.StateX4
	a  []uint64 // the 100 interleaved words of st
}

func newX4() *x4 {
	h := new(x4)
	h.a = h.st.Initialize(false)
	return h
}

// le loads 8 little-endian bytes from p at off.
func le(p *[PageSize]byte, off int) uint64 {
	return binary.LittleEndian.Uint64(p[off : off+8])
}

// leaves sets out[k] = LeafHash(pages[k][:]) for k = 0..3.
func (h *x4) leaves(p0, p1, p2, p3 *[PageSize]byte, out *[4]Digest) {
	a := h.a[:100]
	clear(a)
	// Block 0: word 0 is the prefix byte 0x00 and page bytes 0..6; word j
	// holds message bytes 8j..8j+7, which are page bytes 8j-1..8j+6.
	a[0] = le(p0, 0) << 8
	a[1] = le(p1, 0) << 8
	a[2] = le(p2, 0) << 8
	a[3] = le(p3, 0) << 8
	for j := 1; j < rateWords; j++ {
		off := 8*j - 1
		w := a[4*j : 4*j+4]
		w[0] ^= le(p0, off)
		w[1] ^= le(p1, off)
		w[2] ^= le(p2, off)
		w[3] ^= le(p3, off)
	}
	h.st.Permute()
	for b := 1; b < leafBlocks; b++ {
		base := b*rate - 1
		for j := range rateWords {
			off := base + 8*j
			w := a[4*j : 4*j+4]
			w[0] ^= le(p0, off)
			w[1] ^= le(p1, off)
			w[2] ^= le(p2, off)
			w[3] ^= le(p3, off)
		}
		h.st.Permute()
	}
	// Final block: message bytes 4080..4096 (page bytes 4079..4095), then
	// the padding.
	const base = leafBlocks*rate - 1
	a[0] ^= le(p0, base)
	a[1] ^= le(p1, base)
	a[2] ^= le(p2, base)
	a[3] ^= le(p3, base)
	a[4] ^= le(p0, base+8)
	a[5] ^= le(p1, base+8)
	a[6] ^= le(p2, base+8)
	a[7] ^= le(p3, base+8)
	a[8] ^= uint64(p0[PageSize-1]) | dsByte<<8
	a[9] ^= uint64(p1[PageSize-1]) | dsByte<<8
	a[10] ^= uint64(p2[PageSize-1]) | dsByte<<8
	a[11] ^= uint64(p3[PageSize-1]) | dsByte<<8
	for k := range 4 {
		a[4*(rateWords-1)+k] ^= 0x80 << 56
	}
	h.st.Permute()
	h.digests(out)
}

// digests copies the four 32-byte outputs out of the state.
func (h *x4) digests(out *[4]Digest) {
	a := h.a[:16]
	for k := range 4 {
		for i := range 4 {
			binary.LittleEndian.PutUint64(out[k][8*i:], a[4*i+k])
		}
	}
}

// nodeWords returns the nine message words of node(l, r): the block
// 0x01 ‖ l ‖ r ‖ 0x06, as little-endian words, shifted by the prefix byte.
func nodeWords(l, r *Digest) [9]uint64 {
	var w [9]uint64
	prev := uint64(nodePrefix)
	for i := range 8 {
		d := l
		if i >= 4 {
			d = r
		}
		x := binary.LittleEndian.Uint64(d[8*(i%4):])
		w[i] = prev | x<<8
		prev = x >> 56
	}
	w[8] = prev | dsByte<<8
	return w
}

// nodes sets out[k] = NodeHash(in[2k], in[2k+1]) for k < n (1 <= n <= 4).
// A node's message, 0x01 ‖ left ‖ right, is 65 bytes: one block.
func (h *x4) nodes(in []Digest, n int, out *[4]Digest) {
	a := h.a[:100]
	clear(a)
	for k := range n {
		w := nodeWords(&in[2*k], &in[2*k+1])
		for j, v := range w {
			a[4*j+k] = v
		}
		a[4*(rateWords-1)+k] = 0x80 << 56
	}
	h.st.Permute()
	h.digests(out)
}

// nodeHasher hashes tree nodes several at a time: eight with h8, four
// with h4, one by one (NodeHash) when both are nil.
type nodeHasher struct {
	h4 *x4
	h8 *x8
}

// newNodeHasher returns the fastest node hasher this CPU has.
func newNodeHasher() nodeHasher {
	var h nodeHasher
	if simd8 {
		h.h8 = new(x8)
	} else if simd {
		h.h4 = newX4()
	}
	return h
}

// reduce replaces nodes[0] with the Merkle tree hash of nodes, building the
// tree level by level: adjacent pairs are hashed into the next level and an
// odd last node moves up unchanged. That is the same tree as the recursive
// split of RFC 9162 (TestReduceShape checks it). It overwrites nodes.
func reduce(h nodeHasher, nodes []Digest) Digest {
	if len(nodes) == 0 {
		return EmptyRoot
	}
	for n := len(nodes); n > 1; {
		n = pairLevel(h, nodes, n)
	}
	return nodes[0]
}

// pairLevel replaces nodes[:n] with the next level of the tree: the hashes
// of adjacent pairs, then an odd last node unchanged. It returns the
// number of nodes of the new level.
func pairLevel(h nodeHasher, nodes []Digest, n int) int {
	pairs := n / 2
	i := 0
	// Reading pairs i..i+7 before writing nodes i..i+7 makes the update
	// in place safe. A single pair is cheaper on its own.
	if h.h8 != nil {
		var out [8]Digest
		for ; pairs-i >= 2; i += 8 {
			m := min(8, pairs-i)
			h.h8.nodes(nodes[2*i:], m, &out)
			copy(nodes[i:i+m], out[:m])
		}
	}
	if h.h4 != nil {
		var out [4]Digest
		for ; pairs-i >= 2; i += 4 {
			m := min(4, pairs-i)
			h.h4.nodes(nodes[2*i:], m, &out)
			copy(nodes[i:i+m], out[:m])
		}
	}
	for ; i < pairs; i++ {
		nodes[i] = NodeHash(nodes[2*i], nodes[2*i+1])
	}
	if n%2 == 1 {
		nodes[pairs] = nodes[n-1]
		return pairs + 1
	}
	return pairs
}
