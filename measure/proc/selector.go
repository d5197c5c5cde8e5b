package proc

import (
	"fmt"
	"strconv"
	"strings"
)

// Named bounds of the selector parser.
const (
	// MaxPID is the kernel's PID_MAX_LIMIT on 64-bit systems.
	MaxPID = 1 << 22
	// MaxPattern bounds a pattern: a pathname of PATH_MAX bytes.
	MaxPattern = 4096
)

// Selector names a region of a process: the run of mappings whose
// pathname contains Pattern (see the package documentation).
type Selector struct {
	PID     int
	Pattern string
}

// String returns the selector as ParseSelector reads it.
func (s Selector) String() string { return fmt.Sprintf("pid:%d:%s", s.PID, s.Pattern) }

// SelectorError reports a malformed selector.
type SelectorError struct {
	Input  string // cut to 80 bytes
	Reason string
}

func (e *SelectorError) Error() string {
	return fmt.Sprintf("process region %q: %s", e.Input, e.Reason)
}

// IsSelector reports whether s is meant as a selector (starts with
// "pid:"), well-formed or not.
func IsSelector(s string) bool { return strings.HasPrefix(s, "pid:") }

// ParseSelector parses pid:PID:PATTERN. PID is a decimal number from 1 to
// MaxPID without sign or leading zeros; PATTERN is everything after the
// second colon (it may contain colons), 1 to MaxPattern bytes without NUL
// or newline.
func ParseSelector(s string) (Selector, error) {
	bad := func(reason string) (Selector, error) {
		in := s
		if len(in) > 80 {
			in = in[:80]
		}
		return Selector{}, &SelectorError{Input: in, Reason: reason}
	}
	rest, ok := strings.CutPrefix(s, "pid:")
	if !ok {
		return bad("want pid:PID:PATTERN")
	}
	pid, pattern, ok := strings.Cut(rest, ":")
	if !ok {
		return bad("want pid:PID:PATTERN")
	}
	if pid == "" || strings.TrimLeft(pid, "0123456789") != "" || pid[0] == '0' {
		return bad("PID is not a positive decimal number")
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n > MaxPID {
		return bad(fmt.Sprintf("PID above %d", MaxPID))
	}
	switch {
	case pattern == "":
		return bad("empty PATTERN")
	case len(pattern) > MaxPattern:
		return bad(fmt.Sprintf("PATTERN longer than %d bytes", MaxPattern))
	case strings.ContainsAny(pattern, "\n\x00"):
		return bad("PATTERN contains a newline or NUL")
	}
	return Selector{PID: n, Pattern: pattern}, nil
}

// NoMatchError reports that a pattern selects no mapping.
type NoMatchError struct{ Selector Selector }

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("%s: no mapping of process %d has a pathname containing %q", e.Selector, e.Selector.PID, e.Selector.Pattern)
}

// AmbiguousError reports that a pattern selects more than one run of
// mappings.
type AmbiguousError struct {
	Selector Selector
	Runs     [][]Mapping
}

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	for i, r := range e.Runs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%#x-%#x %s", r[0].Start, r[len(r)-1].End, r[0].Path)
	}
	return fmt.Sprintf("%s: the pattern selects %d separate regions (%s); use a pattern that selects one", e.Selector, len(e.Runs), b.String())
}

// Resolve returns the run of mappings sel selects in maps: exactly one
// run of address-contiguous mappings of the same object whose pathnames
// contain the pattern. maps must be in address order, as ParseMaps
// returns them.
func Resolve(maps []Mapping, sel Selector) ([]Mapping, error) {
	var runs [][]Mapping
	for i, m := range maps {
		if !strings.Contains(m.Path, sel.Pattern) {
			continue
		}
		if k := len(runs) - 1; k >= 0 && i > 0 {
			last := runs[k][len(runs[k])-1]
			if last == maps[i-1] && last.End == m.Start && last.sameObject(m) {
				runs[k] = append(runs[k], m)
				continue
			}
		}
		runs = append(runs, []Mapping{m})
	}
	switch len(runs) {
	case 0:
		return nil, &NoMatchError{Selector: sel}
	case 1:
		return runs[0], nil
	}
	return nil, &AmbiguousError{Selector: sel, Runs: runs}
}
