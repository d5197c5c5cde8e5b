package main

import (
	"cmp"
	"fmt"
	"runtime/debug"
)

// version and commit are set at build time (the Makefile passes
// -ldflags "-X main.version=... -X main.commit=..."); otherwise they come
// from the module's build information, which has the commit only when Go
// stamped it (-buildvcs).
var (
	version = ""
	commit  = ""
)

// buildInfo is what hvmon --version prints and hvmon_build_info exports.
type buildInfo struct {
	Version, Commit, GoVersion string
	Modified                   bool // built from a tree with uncommitted changes
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: cmp.Or(commit, "unknown"), GoVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	b.GoVersion = info.GoVersion
	if b.Version == "" {
		b.Version = info.Main.Version // "(devel)" for a build in the source tree
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if commit == "" {
				b.Commit = s.Value
			}
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the --version line: version, commit (with "+dirty" for a
// modified tree) and Go version.
func (b buildInfo) String() string {
	commit := b.Commit
	if b.Modified {
		commit += "+dirty"
	}
	return fmt.Sprintf("hvmon %s (commit %s, %s)", b.Version, commit, b.GoVersion)
}
