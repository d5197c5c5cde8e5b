package main

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/backend"
)

// Flag value parsers. Every error they return is a configError: a bad flag
// is a usage error (exit 1) whatever it wraps.

// parseHex decodes a hex flag value. Errors say "invalid hex".
func parseHex(flag, s string) ([]byte, error) {
	if s == "" {
		return nil, configErr(fmt.Errorf("--%s: invalid hex: empty value", flag))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, configErr(fmt.Errorf("--%s %q: invalid hex: %v", flag, s, err))
	}
	return b, nil
}

// parseDigest decodes a 32-byte digest written as 64 hex digits.
func parseDigest(flag, s string) (attest.Digest, error) {
	var d attest.Digest
	b, err := parseHex(flag, s)
	if err != nil {
		return d, err
	}
	if len(b) != len(d) {
		return d, configErr(fmt.Errorf("--%s %q: invalid hex: want %d hex digits (%d bytes), got %d", flag, s, 2*len(d), len(d), len(s)))
	}
	copy(d[:], b)
	return d, nil
}

// parseRegion parses a --region value, ID=FILE[:OFFSET:SIZE]. OFFSET and
// SIZE are decimal or 0x-prefixed hex. The range is recognized only when
// both trailing fields are numbers, so FILE may itself contain colons.
func parseRegion(s string) (backend.FileRegion, error) {
	bad := func(format string, args ...any) (backend.FileRegion, error) {
		return backend.FileRegion{}, configErr(fmt.Errorf("--region %q: %s", s, fmt.Sprintf(format, args...)))
	}
	id, rest, ok := strings.Cut(s, "=")
	if !ok || id == "" || rest == "" {
		return bad("want ID=FILE or ID=FILE:OFFSET:SIZE")
	}
	fr := backend.FileRegion{ID: id, Path: rest}
	parts := strings.Split(rest, ":")
	if n := len(parts); n >= 3 {
		off, errOff := parseSize(parts[n-2])
		size, errSize := parseSize(parts[n-1])
		if errOff == nil && errSize == nil {
			if size == 0 {
				return bad("SIZE must be positive; leave out OFFSET:SIZE to measure the whole file")
			}
			if off > math.MaxInt64-size {
				return bad("OFFSET + SIZE overflows")
			}
			fr.Path = strings.Join(parts[:n-2], ":")
			fr.Offset, fr.Length = int64(off), int64(size)
		}
	}
	if n := len(parts); n >= 2 && fr.Length == 0 {
		if _, err := parseSize(parts[n-1]); err == nil {
			return bad("give both OFFSET and SIZE (ID=FILE:OFFSET:SIZE) or neither")
		}
	}
	if fr.Path == "" {
		return bad("empty FILE")
	}
	return fr, nil
}

// parseSize parses a non-negative decimal or 0x-prefixed hex number that
// fits in an int64. Leading zeros do not switch to octal.
func parseSize(s string) (int64, error) {
	base := 10
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		s, base = h, 16
	}
	if s == "" || strings.ContainsAny(s, "+-_") {
		return 0, fmt.Errorf("not a number")
	}
	v, err := strconv.ParseUint(s, base, 63)
	if err != nil {
		return 0, err
	}
	return int64(v), nil
}

// parseExpectations groups --expect ID=HEX values by region, in the order
// the regions first appear; repeating an id accepts several roots.
func parseExpectations(vals []string) ([]attest.Expectation, error) {
	var out []attest.Expectation
	index := map[string]int{}
	for _, v := range vals {
		id, h, ok := strings.Cut(v, "=")
		if !ok || id == "" {
			return nil, configErr(fmt.Errorf("--expect %q: want ID=HEX", v))
		}
		root, err := parseDigest("expect", h)
		if err != nil {
			return nil, err
		}
		i, seen := index[id]
		if !seen {
			i = len(out)
			index[id] = i
			out = append(out, attest.Expectation{RegionID: id})
		}
		out[i].Roots = append(out[i].Roots, root)
	}
	return out, nil
}

// checkDuration checks a duration flag against bounds.
func checkDuration(flag string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return configErr(fmt.Errorf("--%s %s: want between %s and %s", flag, d, lo, hi))
	}
	return nil
}
