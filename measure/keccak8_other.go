//go:build !amd64 || purego

package measure

// simd8 is false: the eight-way permutation exists for amd64 only.
var simd8 = false

func permute8(*[200]uint64) { panic("measure: no eight-way permutation on this platform") }
