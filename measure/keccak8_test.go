package measure

import (
	"testing"
)

// TestLeaves8 checks the eight-way leaf hash against the reference on
// eight different pages.
func TestLeaves8(t *testing.T) {
	if !simd8 {
		t.Skip("no AVX-512 here")
	}
	buf := content(8*PageSize + 5)
	var p [8]*[PageSize]byte
	for k := range p {
		p[k] = (*[PageSize]byte)(buf[k*PageSize+k%5:])
	}
	var h x8
	var out [8]Digest
	h.leaves(&p, &out)
	for k := range p {
		if want := LeafHash(p[k][:]); out[k] != want {
			t.Errorf("lane %d: %s, want %s", k, out[k], want)
		}
	}
}

func BenchmarkLeavesX8(b *testing.B) {
	if !simd8 {
		b.Skip("no AVX-512 here")
	}
	buf := content(8 * PageSize)
	var p [8]*[PageSize]byte
	for k := range p {
		p[k] = (*[PageSize]byte)(buf[k*PageSize:])
	}
	var h x8
	var out [8]Digest
	b.SetBytes(8 * PageSize)
	for b.Loop() {
		h.leaves(&p, &out)
	}
}
