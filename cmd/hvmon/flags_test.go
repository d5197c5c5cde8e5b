package main

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/backend"
)

func TestParseRegion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    backend.FileRegion
		wantErr string
	}{
		{in: "w=model.bin", want: backend.FileRegion{ID: "w", Path: "model.bin"}},
		{in: "w=model.bin:0:4096", want: backend.FileRegion{ID: "w", Path: "model.bin", Offset: 0, Length: 4096}},
		{in: "w=model.bin:0x1000:0X20", want: backend.FileRegion{ID: "w", Path: "model.bin", Offset: 0x1000, Length: 0x20}},
		{in: "w=model.bin:010:1", want: backend.FileRegion{ID: "w", Path: "model.bin", Offset: 10, Length: 1}}, // not octal
		{in: "w=/dev/disk/by-id/a:b:c", want: backend.FileRegion{ID: "w", Path: "/dev/disk/by-id/a:b:c"}},
		{in: "w=a:b:0:8", want: backend.FileRegion{ID: "w", Path: "a:b", Offset: 0, Length: 8}},
		{in: "w=x=y", want: backend.FileRegion{ID: "w", Path: "x=y"}},
		{in: "model.bin", wantErr: "want ID=FILE"},
		{in: "=model.bin", wantErr: "want ID=FILE"},
		{in: "w=", wantErr: "want ID=FILE"},
		{in: "w=model.bin:4096", wantErr: "give both OFFSET and SIZE"},
		{in: "w=model.bin:x:4096", wantErr: "give both OFFSET and SIZE"},
		{in: "w=model.bin:0:0", wantErr: "SIZE must be positive"},
		{in: "w=:0:1", wantErr: "empty FILE"},
		{in: "w=f:-1:1", wantErr: "give both"},
		{in: "w=f:+1:1", wantErr: "give both"},
		{in: "w=f:1_0:1", wantErr: "give both"},
		{in: "w=f:0x8000000000000000:1", wantErr: "give both"},
		{in: "w=f:0x7fffffffffffffff:1", wantErr: "overflows"},
	} {
		got, err := parseRegion(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseRegion(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			if exitCode(err) != exitUsage {
				t.Errorf("parseRegion(%q) error exits %d, want %d", tc.in, exitCode(err), exitUsage)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseRegion(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseHex(t *testing.T) {
	for _, in := range []string{"", "0", "zz", "0x00", "00 11", "0g"} {
		_, err := parseHex("nonce", in)
		if err == nil || !strings.Contains(err.Error(), "invalid hex") {
			t.Errorf("parseHex(%q) error = %v, want one saying invalid hex", in, err)
		}
	}
	for _, in := range []string{"", "00", strings.Repeat("0", 63), strings.Repeat("0", 66), strings.Repeat("g", 64)} {
		_, err := parseDigest("prev", in)
		if err == nil || !strings.Contains(err.Error(), "invalid hex") {
			t.Errorf("parseDigest(%q) error = %v, want one saying invalid hex", in, err)
		}
	}
	d, err := parseDigest("prev", strings.Repeat("ab", 32))
	if err != nil || d != attest.Digest(slices.Repeat([]byte{0xab}, 32)) {
		t.Errorf("parseDigest(ab...) = %v, %v", d, err)
	}
}

func TestParseExpectations(t *testing.T) {
	r1, r2, r3 := strings.Repeat("11", 32), strings.Repeat("22", 32), strings.Repeat("33", 32)
	got, err := parseExpectations([]string{"b=" + r1, "a=" + r2, "b=" + r3})
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) attest.Digest { v, _ := parseDigest("x", s); return v }
	want := []attest.Expectation{
		{RegionID: "b", Roots: []attest.Digest{d(r1), d(r3)}},
		{RegionID: "a", Roots: []attest.Digest{d(r2)}},
	}
	if !slices.EqualFunc(got, want, func(x, y attest.Expectation) bool {
		return x.RegionID == y.RegionID && slices.Equal(x.Roots, y.Roots)
	}) {
		t.Errorf("parseExpectations = %+v, want %+v", got, want)
	}
	for _, in := range []string{"a", "=" + r1, "a=" + r1[:10], "a=zz"} {
		_, err := parseExpectations([]string{in})
		var ce *configError
		if !errors.As(err, &ce) {
			t.Errorf("parseExpectations(%q) = %v, want a configError", in, err)
		}
	}
}

// FuzzParseRegion holds parseRegion to its contract on any input: an error,
// or a region whose pieces re-assemble into the input.
func FuzzParseRegion(f *testing.F) {
	for _, s := range []string{"w=model.bin", "w=model.bin:0:4096", "w=a:b:0x10:0x20", "w=f:1", "=x", "w=", "w=f:0:0", "w=f:9223372036854775807:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := parseRegion(s)
		if err != nil {
			return
		}
		if fr.Path == "" || fr.ID == "" || fr.Offset < 0 || fr.Length < 0 || fr.Offset > math.MaxInt64-fr.Length {
			t.Fatalf("parseRegion(%q) = %+v", s, fr)
		}
		if fr.Length == 0 && s != fr.ID+"="+fr.Path {
			t.Fatalf("parseRegion(%q) = %+v: whole-file region does not re-assemble", s, fr)
		}
		if fr.Length > 0 && !strings.HasPrefix(s, fr.ID+"="+fr.Path+":") {
			t.Fatalf("parseRegion(%q) = %+v: range region does not re-assemble", s, fr)
		}
	})
}

// FuzzParseExpectations: any accepted --expect value names a region and a
// 32-byte root that prints back as the hex given.
func FuzzParseExpectations(f *testing.F) {
	root := strings.Repeat("ab", 32)
	for _, s := range []string{"w0=" + root, "w0=" + strings.ToUpper(root), "w0=zz", "=" + root, "w0", "w0=" + root + "00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, err := parseExpectations([]string{s})
		if err != nil {
			return
		}
		if len(exp) != 1 || len(exp[0].Roots) != 1 || !strings.EqualFold(exp[0].RegionID+"="+exp[0].Roots[0].String(), s) {
			t.Fatalf("parseExpectations(%q) = %+v", s, exp)
		}
	})
}
