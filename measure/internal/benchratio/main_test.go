package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `goos: linux
BenchmarkSHA3Stream-2   	       1	2245484353 ns/op	 478.18 MB/s
BenchmarkPageTree-2     	       2	1062132029 ns/op	1010.93 MB/s	   68840 B/op	      14 allocs/op
BenchmarkPageTree-2     	       2	1000000000 ns/op	1010.93 MB/s	   68840 B/op	      14 allocs/op
BenchmarkPageTree-2     	       2	900000000 ns/op	1010.93 MB/s	   68840 B/op	      14 allocs/op
PASS
`
	got, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := median(got["PageTree"]); !ok || m != 1e9 || len(got["SHA3Stream"]) != 1 {
		t.Errorf("parse = %v; median PageTree %v", got, m)
	}
	if _, ok := median(nil); ok {
		t.Error("median of nothing")
	}
}
