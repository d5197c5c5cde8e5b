// Package proc measures regions of a running process's memory: the bytes
// of one or more contiguous mappings, read through /proc/PID/mem, and
// re-measured incrementally with the kernel's soft-dirty bits.
//
// # Which bytes a region is
//
// A Selector (written pid:PID:PATTERN) names a process and a pattern.
// PATTERN is a plain substring, not a regular expression: a mapping
// matches when its pathname in /proc/PID/maps (for example
// /models/llama.bin, [heap], /memfd:weights (deleted)) contains PATTERN,
// byte for byte and case-sensitively. Anonymous mappings without a name
// cannot be selected by pattern; OpenRange takes an address range instead.
//
// Matching mappings that follow each other without a gap in the address
// space and belong to the same object (same device, inode and pathname)
// form one run: a file mapped in several pieces with different
// permissions is one region. The pattern must select exactly one run. The
// region is the virtual address range of that run, [Start, End), and
// its fingerprint is over the bytes a read of that range through
// /proc/PID/mem returns at the time of reading: the process's view of the
// memory, including its private changes to a file mapping, not the file
// on disk. Pages the process never touched read as zeros (anonymous) or
// as the file's content.
//
// # Incremental measurement
//
// A Region is a measure.DirtySource. TakeDirty reads the pagemap entries
// of the region, then writes "4" to /proc/PID/clear_refs, which clears the
// soft-dirty bits of the whole process. A page counts as clean, and keeps
// its leaf from the previous measurement, only when it is present or
// swapped, its soft-dirty bit (55) is clear and it is an anonymous
// private page (bit 61 clear). Every other page is re-read: file pages
// and shared memory can change through the page cache or another process
// without touching this process's page tables, and a page the process
// dropped (MADV_DONTNEED) changes without a write.
//
// Limits, said plainly: writes that do not go through the process's page
// tables (device DMA into pinned pages, for instance) are not seen; a page
// written between the pagemap read and the clear in TakeDirty is missed
// until it is written again, so pause the workload (for a VM, stop its
// vCPUs) around a measurement that must be exact; anything else that
// clears the process's soft-dirty bits breaks the tracking. The bits of a
// transparent huge page cover all of its 2 MiB: one write marks its 512
// pages, so writes scattered over THP-backed memory make incremental
// passes read nearly everything. Regions of
// the same process opened in this program share one clear: each harvests
// its bits before any clear. Soft-dirty needs a kernel built with
// CONFIG_MEM_SOFT_DIRTY, which is checked once by a probe on a page of
// this process; clear_refs and pagemap need the rights of the process's
// owner (root or the same user, and ptrace access).
package proc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End   uint64 // virtual addresses, [Start, End)
	Perms        string // four characters: r or -, w or -, x or -, p (private) or s (shared)
	Offset       uint64 // offset in the mapped file
	Major, Minor uint32 // device of the mapped file
	Inode        uint64
	Path         string // pathname, [heap]-style name, or "" for an anonymous mapping
}

// Size returns the length of the mapping in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// Shared reports whether the mapping is shared (MAP_SHARED).
func (m Mapping) Shared() bool { return m.Perms[3] == 's' }

// sameObject reports whether m and n map the same object.
func (m Mapping) sameObject(n Mapping) bool {
	return m.Major == n.Major && m.Minor == n.Minor && m.Inode == n.Inode && m.Path == n.Path
}

// Named bounds of the maps parser.
const (
	// MaxMapsLine bounds one line: a pathname of PATH_MAX bytes whose
	// every byte the kernel escaped, plus the fixed fields.
	MaxMapsLine = 4*4096 + 128
	// MaxMapsSize bounds a whole maps file.
	MaxMapsSize = 64 << 20
)

// MapsError reports a malformed /proc/PID/maps line.
type MapsError struct {
	Line   string // the line, cut to 80 bytes
	Reason string
}

func (e *MapsError) Error() string {
	return fmt.Sprintf("proc: malformed maps line %q: %s", e.Line, e.Reason)
}

// ParseMapsLine parses one line of /proc/PID/maps (without its newline):
//
//	START-END PERMS OFFSET MAJOR:MINOR INODE [PATHNAME]
//
// with START, END, OFFSET, MAJOR and MINOR in lower-case hex, INODE in
// decimal, single spaces between the fields and any number of spaces
// before the pathname. START and END are page-aligned and START < END.
func ParseMapsLine(line string) (Mapping, error) {
	bad := func(reason string) (Mapping, error) {
		l := line
		if len(l) > 80 {
			l = l[:80]
		}
		return Mapping{}, &MapsError{Line: l, Reason: reason}
	}
	if len(line) > MaxMapsLine {
		return bad(fmt.Sprintf("longer than %d bytes", MaxMapsLine))
	}
	if strings.ContainsAny(line, "\n\x00") {
		return bad("contains a newline or NUL")
	}
	var m Mapping
	rest := line
	field := func() string {
		f, r, _ := strings.Cut(rest, " ")
		rest = r
		return f
	}
	addrs := field()
	start, end, ok := strings.Cut(addrs, "-")
	var err error
	if !ok {
		return bad("no START-END")
	}
	if m.Start, err = parseHex(start, 64); err != nil {
		return bad("START: " + err.Error())
	}
	if m.End, err = parseHex(end, 64); err != nil {
		return bad("END: " + err.Error())
	}
	if m.Start >= m.End || m.Start%4096 != 0 || m.End%4096 != 0 {
		return bad("START-END is not a non-empty page-aligned range")
	}
	m.Perms = field()
	if len(m.Perms) != 4 || !strings.ContainsRune("r-", rune(m.Perms[0])) || !strings.ContainsRune("w-", rune(m.Perms[1])) ||
		!strings.ContainsRune("x-", rune(m.Perms[2])) || !strings.ContainsRune("ps", rune(m.Perms[3])) {
		return bad("PERMS is not [r-][w-][x-][ps]")
	}
	if m.Offset, err = parseHex(field(), 64); err != nil {
		return bad("OFFSET: " + err.Error())
	}
	major, minor, ok := strings.Cut(field(), ":")
	if !ok {
		return bad("no MAJOR:MINOR")
	}
	maj, err1 := parseHex(major, 32)
	mnr, err2 := parseHex(minor, 32)
	if err1 != nil || err2 != nil {
		return bad("MAJOR:MINOR is not hex")
	}
	m.Major, m.Minor = uint32(maj), uint32(mnr)
	inode := field()
	if inode == "" || strings.TrimLeft(inode, "0123456789") != "" || len(inode) > 1 && inode[0] == '0' {
		return bad("INODE is not a decimal number")
	}
	if m.Inode, err = strconv.ParseUint(inode, 10, 64); err != nil {
		return bad("INODE: " + err.Error())
	}
	m.Path = strings.TrimLeft(rest, " ")
	return m, nil
}

// parseHex parses lower-case hex digits, without prefix or sign.
func parseHex(s string, bits int) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789abcdef") != "" {
		return 0, fmt.Errorf("%q is not lower-case hex", s)
	}
	return strconv.ParseUint(s, 16, bits)
}

// ParseMaps parses a whole maps file: lines in increasing, non-overlapping
// address order, each ending with a newline.
func ParseMaps(data []byte) ([]Mapping, error) {
	if len(data) > MaxMapsSize {
		return nil, &MapsError{Reason: fmt.Sprintf("maps larger than %d bytes", MaxMapsSize)}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, &MapsError{Reason: "last line has no newline"}
	}
	var out []Mapping
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		m, err := ParseMapsLine(string(data[:i]))
		if err != nil {
			return nil, err
		}
		if k := len(out) - 1; k >= 0 && m.Start < out[k].End {
			return nil, &MapsError{Line: string(data[:min(i, 80)]), Reason: "overlaps or precedes the line before"}
		}
		out = append(out, m)
		data = data[i+1:]
	}
	return out, nil
}
