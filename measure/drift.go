package measure

import (
	"fmt"
	"slices"
)

// PageRange is a run of pages, First to Last inclusive, numbered from 0.
// Page i covers the region's bytes [i*PageSize, (i+1)*PageSize).
type PageRange struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// String returns "page 7" or "pages 1024–1031".
func (r PageRange) String() string {
	if r.First == r.Last {
		return fmt.Sprintf("page %d", r.First)
	}
	return fmt.Sprintf("pages %d–%d", r.First, r.Last)
}

// Pages returns the number of pages in the range.
func (r PageRange) Pages() int64 { return r.Last - r.First + 1 }

// Diff returns the pages whose leaves differ between two measurements of a
// region, as sorted, disjoint, non-adjacent ranges. When the regions have
// different sizes, the pages that exist in only one of them differ too.
// Equal leaf sets give nil.
func Diff(old, new []Digest) []PageRange {
	var out []PageRange
	n := max(len(old), len(new))
	for i := 0; i < n; i++ {
		if i < len(old) && i < len(new) && old[i] == new[i] {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].Last == int64(i)-1 {
			out[k].Last = int64(i)
		} else {
			out = append(out, PageRange{int64(i), int64(i)})
		}
	}
	return out
}

// normalize sorts ranges and merges those that overlap or touch. It
// reuses rs.
func normalize(rs []PageRange) []PageRange {
	slices.SortFunc(rs, func(a, b PageRange) int {
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && r.First <= out[k].Last+1 {
			out[k].Last = max(out[k].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}
