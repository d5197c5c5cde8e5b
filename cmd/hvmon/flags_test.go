package main

import (
	"errors"
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
