package main

import (
	"regexp"
	"testing"
)

func TestDebVersion(t *testing.T) {
	for _, tc := range []struct{ describe, date, want string }{
		{"v1.2.3", "", "1.2.3"},
		{"1.2.3", "", "1.2.3"},
		{"v1.2.3-dirty", "", "1.2.3+dirty"},
		{"v1.2.3-rc1", "", "1.2.3~rc1"},
		{"v1.2.3-4-gabc1234", "", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3-rc1-4-gabc1234", "", "1.2.3~rc1+4.gabc1234"},
		{"b591037", "2026-12-03", "0.0~git20261203.b591037"},
		{"b591037-dirty", "2026-12-03", "0.0~git20261203.b591037+dirty"},
	} {
		got, err := debVersion(tc.describe, tc.date)
		if err != nil || got != tc.want {
			t.Errorf("debVersion(%q, %q) = %q, %v; want %q", tc.describe, tc.date, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ describe, date string }{
		{"", ""},
		{"b591037", ""},         // untagged needs the date
		{"b591037", "20261203"}, // in ISO form
		{"release candidate", ""},
		{"v1.2.3;rm -rf", ""},
	} {
		if got, err := debVersion(tc.describe, tc.date); err == nil {
			t.Errorf("debVersion(%q, %q) = %q, want an error", tc.describe, tc.date, got)
		}
	}
}

// debVersionSyntax is Debian's upstream version without a revision
// (deb-version(7)): starts with a digit; letters, digits, . + ~.
var debVersionSyntax = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// FuzzDebVersion: whatever git describe prints, debVersion returns a
// Debian version or an error, never a malformed version.
func FuzzDebVersion(f *testing.F) {
	for _, s := range []string{"v1.2.3", "v1.2.3-rc1-4-gabc1234-dirty", "b591037-dirty", "v1.2.3-4-gabc1234", "v-", "1..2"} {
		f.Add(s, "2026-12-03")
	}
	f.Fuzz(func(t *testing.T, describe, date string) {
		v, err := debVersion(describe, date)
		if err == nil && !debVersionSyntax.MatchString(v) {
			t.Errorf("debVersion(%q, %q) = %q: not a Debian version", describe, date, v)
		}
	})
}
