// Command benchratio prints the measurement engine's figures from the
// output of go test -bench (one or more files, or stdin): the median time
// of each benchmark over its runs, and the ratios the engine is held to,
// each next to its target. `make bench` runs it after benchstat.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ratio is a figure of merit: num's median time over den's, as a speed-up
// (den/num, "×") or a share (num/den, "%").
type ratio struct {
	what     string
	num, den string
	speedup  bool
	target   float64
}

var ratios = []ratio{
	{"page tree (Bytes) vs crypto/sha3 single stream, 1 GiB", "PageTree", "SHA3Stream", true, 4},
	{"page tree through ReadAt vs crypto/sha3 single stream, 1 GiB", "PageTreeSection", "SHA3Stream", true, 4},
	{"update of 1% of the pages vs full measure, 1 GiB in memory", "Update1Percent", "MeasureFull", false, 3},
	{"incremental re-measure, 1% written (single pages) vs full, 1 GiB mapping", "ProcessIncremental1Percent", "ProcessFull", false, 3},
	{"incremental re-measure, 1% written (64-page runs) vs full, 1 GiB mapping", "ProcessIncremental1PercentRuns", "ProcessFull", false, 3},
}

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 {
		var rs []io.Reader
		for _, p := range os.Args[1:] {
			f, err := os.Open(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "benchratio:", err)
				os.Exit(1)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		in = io.MultiReader(rs...)
	}
	times, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
	fmt.Printf("%-72s %12s %8s\n", "figure", "value", "target")
	for _, r := range ratios {
		n, okn := median(times[r.num])
		d, okd := median(times[r.den])
		if !okn || !okd {
			continue
		}
		if r.speedup {
			fmt.Printf("%-72s %11.2f× %7s\n", r.what, d/n, fmt.Sprintf("≥ %g×", r.target))
		} else {
			fmt.Printf("%-72s %11.2f%% %7s\n", r.what, 100*n/d, fmt.Sprintf("≤ %g%%", r.target))
		}
	}
}

// parse collects the ns/op figures of each benchmark, by name without
// the Benchmark prefix and the -GOMAXPROCS suffix.
func parse(r io.Reader) (map[string][]float64, error) {
	out := map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", sc.Text(), err)
		}
		out[name] = append(out[name], v)
	}
	return out, sc.Err()
}

func median(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}
