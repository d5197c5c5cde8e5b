package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mapping
	}{
		{"558d4c507000-558d4c509000 r--p 00000000 fe:00 247026                     /usr/bin/cat",
			Mapping{0x558d4c507000, 0x558d4c509000, "r--p", 0, 0xfe, 0, 247026, "/usr/bin/cat"}},
		{"7f0000000000-7f0000400000 rw-p 00000000 00:00 0 ", Mapping{0x7f0000000000, 0x7f0000400000, "rw-p", 0, 0, 0, 0, ""}},
		{"7f0000000000-7f0000400000 rw-p 00000000 00:00 0", Mapping{0x7f0000000000, 0x7f0000400000, "rw-p", 0, 0, 0, 0, ""}},
		{"1000-2000 rw-s 0badc000 103:02 9 /a b (deleted)", Mapping{0x1000, 0x2000, "rw-s", 0xbadc000, 0x103, 2, 9, "/a b (deleted)"}},
	} {
		got, err := ParseMapsLine(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMapsLine(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "1000-2000", "1000-2000 rw-p 0 00:00", "2000-1000 rw-p 0 00:00 0", "1000-1000 rw-p 0 00:00 0",
		"1001-2000 rw-p 0 00:00 0", "1000-2000 rwxq 0 00:00 0", "1000-2000 rw-p 0 00 0", "1000-2000 rw-p 0 00:00 x",
		"1000-2000 rw-p 0 00:00 01", "1000-2000  rw-p 0 00:00 0", "1000-2000 rw-p 0X1 00:00 0", "1000-2000 rw-p 0 00:00 -1",
		"1000-2000 RW-P 0 00:00 0", "1000-2000 rw-p 0 00:00 0 /a\x00b", "1000-2000 rw-p 0 00:00 18446744073709551616",
		"10000000000000000-10000000000001000 rw-p 0 00:00 0", "1000-2000 rw-p 0 100000000:00 0",
		"1000-2000 rw-p 0 00:00 0 " + strings.Repeat("a", MaxMapsLine),
	} {
		got, err := ParseMapsLine(in)
		var me *MapsError
		if !errors.As(err, &me) {
			t.Errorf("ParseMapsLine(%.40q) = %+v, %v; want a *MapsError", in, got, err)
		}
	}
}

func TestParseMaps(t *testing.T) {
	for _, name := range []string{"maps-cat.txt", "maps-edge.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		maps, err := ParseMaps(data)
		if err != nil || len(maps) != strings.Count(string(data), "\n") {
			t.Errorf("ParseMaps(%s) = %d mappings, %v; want one a line", name, len(maps), err)
		}
	}
	for _, in := range []string{"1000-2000 rw-p 0 00:00 0", "2000-3000 rw-p 0 00:00 0\n1000-2000 rw-p 0 00:00 0\n", "1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n"} {
		if _, err := ParseMaps([]byte(in)); err == nil {
			t.Errorf("ParseMaps(%q) accepted", in)
		}
	}
	own, err := ReadMaps(os.Getpid())
	if err != nil || len(own) == 0 {
		t.Errorf("ReadMaps(self) = %d mappings, %v", len(own), err)
	}
}

// seeds returns the lines of the files in testdata matching glob, failing
// when there are none.
func seeds(f *testing.F, glob string) []string {
	paths, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed files testdata/%s (%v)", glob, err)
	}
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
	}
	if len(out) == 0 {
		f.Fatalf("testdata/%s holds no lines", glob)
	}
	return out
}

// FuzzParseMapsLine: the parser never panics, and what it accepts
// satisfies the invariants its callers rely on.
func FuzzParseMapsLine(f *testing.F) {
	for _, l := range seeds(f, "maps-*.txt") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseMapsLine(line)
		if err != nil {
			var me *MapsError
			if !errors.As(err, &me) {
				t.Fatalf("ParseMapsLine(%q) error %v is not a *MapsError", line, err)
			}
			return
		}
		if m.Start >= m.End || m.Start%pageSize != 0 || m.End%pageSize != 0 || len(m.Perms) != 4 || strings.ContainsAny(m.Path, "\n\x00") {
			t.Fatalf("ParseMapsLine(%q) accepted %+v", line, m)
		}
		if _, err := ParseMaps([]byte(line + "\n")); err != nil {
			t.Fatalf("ParseMaps refuses the line ParseMapsLine accepts: %v", err)
		}
	})
}

func TestParseSelector(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Selector
	}{
		{"pid:1:model.bin", Selector{1, "model.bin"}},
		{"pid:4194304:[heap]", Selector{MaxPID, "[heap]"}},
		{"pid:7:a:b:c", Selector{7, "a:b:c"}},
		{"pid:42:/memfd:weights (deleted)", Selector{42, "/memfd:weights (deleted)"}},
	} {
		got, err := ParseSelector(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSelector(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("ParseSelector(%q).String() = %q", tc.in, got.String())
		}
	}
	for _, in := range []string{"", "pid", "pid:", "pid:1", "pid::x", "pid:0:x", "pid:01:x", "pid:1:", "pid:4194305:x",
		"pid:-1:x", "pid:+1:x", "pid: 1:x", "pid:99999999999999999999:x", "PID:1:x", "file.bin", "pid:1:a\nb", "pid:1:" + strings.Repeat("a", MaxPattern+1)} {
		got, err := ParseSelector(in)
		var se *SelectorError
		if !errors.As(err, &se) {
			t.Errorf("ParseSelector(%.40q) = %+v, %v; want a *SelectorError", in, got, err)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, l := range seeds(f, "selectors.txt") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSelector(in)
		if err != nil {
			var se *SelectorError
			if !errors.As(err, &se) {
				t.Fatalf("ParseSelector(%q) error %v is not a *SelectorError", in, err)
			}
			return
		}
		if s.PID < 1 || s.PID > MaxPID || s.Pattern == "" || s.String() != in {
			t.Fatalf("ParseSelector(%q) = %+v, which does not print back", in, s)
		}
	})
}

func TestResolve(t *testing.T) {
	data, err := os.ReadFile("testdata/maps-cat.txt")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := ParseMaps(data)
	if err != nil {
		t.Fatal(err)
	}
	run, err := Resolve(maps, Selector{1, "/usr/bin/cat"})
	if err != nil || len(run) < 2 || run[0].Path != "/usr/bin/cat" {
		t.Fatalf("Resolve(/usr/bin/cat) = %d mappings, %v; want the binary's run", len(run), err)
	}
	for i := 1; i < len(run); i++ {
		if run[i].Start != run[i-1].End {
			t.Errorf("Resolve: run has a gap at %#x", run[i].Start)
		}
	}
	var nm *NoMatchError
	if _, err := Resolve(maps, Selector{1, "no-such-thing"}); !errors.As(err, &nm) {
		t.Errorf("Resolve(no match) = %v, want *NoMatchError", err)
	}
	// libc is mapped in several runs around a gap or an anonymous piece,
	// or "/" matches several files: either way, more than one run.
	var am *AmbiguousError
	if _, err := Resolve(maps, Selector{1, "/"}); !errors.As(err, &am) || len(am.Runs) < 2 {
		t.Errorf("Resolve(\"/\") = %v, want *AmbiguousError", err)
	}
}

// TestCoveringCuts: areas next to an address range may merge or split
// without the range's mappings changing.
func TestCoveringCuts(t *testing.T) {
	merged := []Mapping{{Start: 0x1000, End: 0x9000, Perms: "rw-p"}}
	split := []Mapping{{Start: 0x1000, End: 0x3000, Perms: "rw-p"}, {Start: 0x3000, End: 0x6000, Perms: "rw-p"}, {Start: 0x6000, End: 0x9000, Perms: "r--p"}}
	a, err := covering(merged, 0x3000, 0x6000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := covering(split, 0x3000, 0x6000)
	if err != nil || len(a) != 1 || a[0] != b[0] || a[0].Start != 0x3000 || a[0].End != 0x6000 {
		t.Errorf("covering = %+v and %+v, %v; want the same cut mapping", a, b, err)
	}
	file := []Mapping{{Start: 0x1000, End: 0x9000, Perms: "r--p", Offset: 0x10000, Inode: 7, Path: "/f"}}
	if c, _ := covering(file, 0x2000, 0x3000); c[0].Offset != 0x11000 {
		t.Errorf("covering a file mapping from 0x2000: offset %#x, want 0x11000", c[0].Offset)
	}
	if _, err := covering(split[:1], 0x2000, 0x4000); err == nil {
		t.Error("covering accepted a range that runs past the last mapping")
	}
}
