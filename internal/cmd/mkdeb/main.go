// Command mkdeb builds hvmon's Debian package (make deb) with nfpm as a
// library:
//
//	mkdeb -config contrib/deb/nfpm.yaml -gen bin/deb -describe "$(git describe --tags --always --dirty)" -date 2026-12-03 -out bin
//
// writes bin/hvmon_VERSION_amd64.deb and prints its path. VERSION is the
// Debian form of the git description (debVersion). The package's
// changelog is one entry for that version; its files carry the time of
// SOURCE_DATE_EPOCH when set, so two builds of one commit are the same.
//
// It is its own module: nfpm and its dependencies (go-git, the RPM, APK
// and MSIX writers, OpenPGP) are needed only to build the package, and
// stay out of the go.mod and go.sum of what hvmon ships.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	config := fl.String("config", "contrib/deb/nfpm.yaml", "nfpm configuration `FILE`")
	gen := fl.String("gen", "bin/deb", "`DIR` of the built files the configuration names as ${GEN}")
	describe := fl.String("describe", "", "git describe --tags --always --dirty of the tree (required)")
	date := fl.String("date", "", "commit date, YYYY-MM-DD (required when the tree has no tag)")
	out := fl.String("out", "bin", "output `DIR`")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	version, err := debVersion(*describe, *date)
	if err != nil {
		return err
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(*config, func(k string) string {
		switch k {
		case "VERSION":
			return version
		case "GEN":
			return *gen
		}
		return os.Getenv(k)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	info = nfpm.WithDefaults(info)
	mtime := info.MTime
	changelog, err := writeChangelog(version, *describe, info.Maintainer, mtime)
	if err != nil {
		return err
	}
	defer os.Remove(changelog)
	info.Changelog = changelog
	if err := nfpm.Validate(info); err != nil {
		return err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	info.Target = filepath.Join(*out, pkg.ConventionalFileName(info))
	f, err := os.Create(info.Target)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(info.Target)
		return fmt.Errorf("package: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(info.Target)
	return nil
}

var (
	// v1.2.3, v1.2.3-rc1, v1.2.3-4-gabc1234, each maybe -dirty.
	tagged = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*?)(-[0-9A-Za-z.]+?)??(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)
	// A tree without tags: git describe --always gives the short commit.
	untagged = regexp.MustCompile(`^([0-9a-f]{7,40})(-dirty)?$`)
	isoDate  = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})-([0-9]{2})$`)
)

// debVersion turns git describe's output into a Debian version that sorts
// as the history does: v1.2.3 is 1.2.3, a pre-release v1.2.3-rc1 is
// 1.2.3~rc1 (before 1.2.3), four commits after it 1.2.3+4.gabc1234; a
// tree without tags is 0.0~gitYYYYMMDD.abc1234 by its commit date; a
// dirty tree adds +dirty.
func debVersion(describe, date string) (string, error) {
	if m := untagged.FindStringSubmatch(describe); m != nil {
		d := isoDate.FindStringSubmatch(date)
		if d == nil {
			return "", fmt.Errorf("-date %q: want the commit date as YYYY-MM-DD for an untagged tree", date)
		}
		return "0.0~git" + d[1] + d[2] + d[3] + "." + m[1] + strings.Replace(m[2], "-", "+", 1), nil
	}
	m := tagged.FindStringSubmatch(describe)
	if m == nil {
		return "", fmt.Errorf("-describe %q: not the output of git describe --tags --always --dirty of a vX.Y.Z tag", describe)
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2][1:]
	}
	if m[3] != "" {
		v += "+" + m[3] + ".g" + m[4]
	}
	if m[5] != "" {
		v += "+dirty"
	}
	if strings.Contains(v, "+dirty") && strings.Count(v, "+") > 1 {
		v = strings.Replace(v, "+dirty", ".dirty", 1)
	}
	return v, nil
}

// writeChangelog writes the package's changelog (nfpm's chglog YAML): one
// entry for this build. The history itself is the project's git log.
func writeChangelog(version, describe, maintainer string, when time.Time) (string, error) {
	if maintainer == "" {
		return "", errors.New("the configuration names no maintainer")
	}
	f, err := os.CreateTemp("", "hvmon-changelog-*.yaml")
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintf(f, `- semver: %q
  date: %q
  packager: %q
  changes:
    - note: %q
  deb:
    urgency: medium
    distributions: [unstable]
`, version, when.UTC().Format(time.RFC3339), maintainer, "Package built from "+describe+"; the changes are the project's history.")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
