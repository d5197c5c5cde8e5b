package measure

import "encoding/binary"

// x8 is an eight-way SHA3-256 leaf hasher on AVX-512, where the CPU has
// it: the same sponge as x4 (see keccak.go), with word i of instance k at
// a[8*i+k].
type x8 struct {
	a [200]uint64
}

// leaves sets out[k] = LeafHash(p[k][:]) for k = 0..7.
func (h *x8) leaves(p *[8]*[PageSize]byte, out *[8]Digest) {
	a := &h.a
	clear(a[:])
	for k, pg := range p {
		a[k] = le(pg, 0) << 8
	}
	for j := 1; j < rateWords; j++ {
		w := a[8*j : 8*j+8]
		for k, pg := range p {
			w[k] ^= le(pg, 8*j-1)
		}
	}
	permute8(a)
	for b := 1; b < leafBlocks; b++ {
		base := b*rate - 1
		for j := range rateWords {
			w := a[8*j : 8*j+8]
			for k, pg := range p {
				w[k] ^= le(pg, base+8*j)
			}
		}
		permute8(a)
	}
	const base = leafBlocks*rate - 1
	for k, pg := range p {
		a[k] ^= le(pg, base)
		a[8+k] ^= le(pg, base+8)
		a[16+k] ^= uint64(pg[PageSize-1]) | dsByte<<8
		a[8*(rateWords-1)+k] ^= 0x80 << 56
	}
	permute8(a)
	for k := range 8 {
		for i := range 4 {
			binary.LittleEndian.PutUint64(out[k][8*i:], a[8*i+k])
		}
	}
}

// nodes sets out[k] = NodeHash(in[2k], in[2k+1]) for k < n (1 <= n <= 8):
// one block each, as in x4.nodes.
func (h *x8) nodes(in []Digest, n int, out *[8]Digest) {
	a := &h.a
	clear(a[:])
	for k := range n {
		w := nodeWords(&in[2*k], &in[2*k+1])
		for j, v := range w {
			a[8*j+k] = v
		}
		a[8*(rateWords-1)+k] = 0x80 << 56
	}
	permute8(a)
	for k := range n {
		for i := range 4 {
			binary.LittleEndian.PutUint64(out[k][8*i:], a[8*i+k])
		}
	}
}
