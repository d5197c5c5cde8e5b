//go:build amd64 && !purego

package measure

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/x8gen keccak8_amd64.s

// simd8 reports whether the eight-way permutation can run here: it needs
// AVX-512F (VPROLQ, VPTERNLOGQ) and an OS that saves ZMM state, which
// cpu.X86.HasAVX512F checks. Tests switch it off to check the other paths.
var simd8 = cpu.X86.HasAVX512F

// permute8 applies Keccak-f[1600] to eight interleaved states.
//
//go:noescape
func permute8(a *[200]uint64)
