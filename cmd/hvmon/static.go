package main

import "debug/elf"

// isStatic reports whether the ELF file at path has no program
// interpreter, i.e. runs without a dynamic loader (a CGO_ENABLED=0 build).
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
