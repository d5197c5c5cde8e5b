// Package deptest keeps the pure core pure: attest, measure, policy and
// tlog (and every hvmon package they pull in) never import the network,
// process execution, the host, guest or QMP layers, or the CLI; attest and
// tlog do no I/O, and tlog links no part of the log server's storage.
// It keeps the in-guest agent small (guest links neither policy nor the
// HCL parser), and package testing out of every production package.
package deptest

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
}

// list runs go list -json with args and decodes the packages it prints.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %q: %v", args, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %q found no package", args)
	}
	return pkgs
}

// under reports whether path is prefix or a package under it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// forbidden lists, per core package, the imports it and its hvmon
// dependencies must not have.
var forbidden = map[string][]string{
	"hvmon.dev/hvmon/attest":  {"os", "net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/backend"},
	"hvmon.dev/hvmon/measure": {"net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/attest"},
	"hvmon.dev/hvmon/policy":  {"net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd"},
	// Launch measurements are computed from bytes the caller read.
	"hvmon.dev/hvmon/launch": {"os", "os/exec", "net", "net/http", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/backend"},
	// The log's formats and checks are pure: logs are read through the
	// TileReader interface, never opened here.
	"hvmon.dev/hvmon/tlog": {"os", "os/exec", "os/signal", "syscall", "net", "net/http", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/backend", "hvmon.dev/hvmon/evidence", "hvmon.dev/hvmon/policy"},
}

func TestCoreDependencies(t *testing.T) {
	for root, bad := range forbidden {
		checked := 0
		for _, p := range list(t, "-deps", root) {
			if !strings.HasPrefix(p.ImportPath, "hvmon.dev/hvmon/") {
				continue
			}
			checked++
			for _, imp := range p.Imports {
				for _, b := range bad {
					if imp == b || strings.HasPrefix(imp, b+"/") && strings.HasPrefix(b, "hvmon.dev/") {
						t.Errorf("%s (in the closure of %s) imports %s", p.ImportPath, root, imp)
					}
				}
			}
		}
		if checked == 0 {
			t.Errorf("go list found no hvmon package under %s", root)
		}
	}
}

// closureForbidden lists, per package, packages that must not be anywhere
// in its dependency closure (hvmon's or not), with the packages under them.
var closureForbidden = map[string][]string{
	// The agent runs inside every guest: it links the evidence providers,
	// not the appraisal of their evidence, nor the policy language.
	"hvmon.dev/hvmon/guest": {"hvmon.dev/hvmon/policy", "github.com/hashicorp/hcl/v2"},
	// Appraisal reads TEE evidence through package tee's types, never
	// through the TEE libraries (they import the network).
	"hvmon.dev/hvmon/policy": {"hvmon.dev/hvmon/evidence", "github.com/google/go-sev-guest", "github.com/google/go-tdx-guest"},
	"hvmon.dev/hvmon/tee":    {"net", "hvmon.dev/hvmon/evidence", "hvmon.dev/hvmon/policy", "github.com/google/go-sev-guest", "github.com/google/go-tdx-guest"},
	// Every verifier, host and monitor links tlog: the log server's
	// storage (Tessera, its drivers and their SDKs) stays out of it, and
	// so do the network and process execution.
	"hvmon.dev/hvmon/tlog": {"net", "os/exec", "github.com/transparency-dev/tessera", "github.com/aws", "github.com/go-sql-driver/mysql", "github.com/dgraph-io/badger", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/evidence", "hvmon.dev/hvmon/policy"},

	// Only the log server links the log's storage: not the agent, the
	// host, the verifiers or the demo (it gets the log server injected).
	"hvmon.dev/hvmon/guest/...":         logStorage,
	"hvmon.dev/hvmon/host/...":          logStorage,
	"hvmon.dev/hvmon/attest":            logStorage,
	"hvmon.dev/hvmon/policy/...":        logStorage,
	"hvmon.dev/hvmon/internal/demo/...": logStorage,
	// The log's clients (hosts' outboxes, verify, the monitor) read and
	// submit over HTTP with tlogclient, and the monitor audits from what
	// it reads: neither needs the host's QEMU or libvirt side, the agent
	// or process execution.
	"hvmon.dev/hvmon/tlog/tlogclient": append([]string{"os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/policy", "hvmon.dev/hvmon/evidence"}, logStorage...),
	"hvmon.dev/hvmon/logmon":          append([]string{"os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "libvirt.org/go/libvirt", "github.com/digitalocean/go-qemu"}, logStorage...),
	// The web view only reads the store and renders it: no process
	// execution, no agent, no TEE libraries (they import the network), no
	// log storage, and the browser that tests it stays in its tests.
	"hvmon.dev/hvmon/webui": append([]string{"os/exec", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/evidence", "github.com/chromedp", "github.com/google/go-sev-guest", "github.com/google/go-tdx-guest"}, logStorage...),
}

// logStorage is the log server's storage: Tessera, its drivers and their
// SDKs. Only package logd links it.
var logStorage = []string{"github.com/transparency-dev/tessera", "github.com/aws", "github.com/go-sql-driver/mysql", "github.com/dgraph-io/badger"}

func TestClosures(t *testing.T) {
	for root, bad := range closureForbidden {
		for _, p := range list(t, root) {
			if len(p.Deps) == 0 {
				t.Errorf("go list found no dependencies of %s", p.ImportPath)
			}
			for _, d := range p.Deps {
				for _, b := range bad {
					if under(d, b) {
						t.Errorf("%s depends on %s", p.ImportPath, d)
					}
				}
			}
		}
	}
}

// The guest's hvmon is built with the nologd tag (internal/tinyvm): that
// build links none of the log server's storage.
func TestNologdBuild(t *testing.T) {
	for _, p := range list(t, "-deps", "-tags", "nologd", "hvmon.dev/hvmon/cmd/hvmon") {
		for _, b := range logStorage {
			if under(p.ImportPath, b) {
				t.Errorf("hvmon built with -tags nologd links %s", p.ImportPath)
			}
		}
	}
}

// testHelpers are the packages whose job is to help other packages'
// tests (fakes): they may import testing, and no other package may import
// them.
var testHelpers = []string{"hvmon.dev/hvmon/qmp/qmptest", "hvmon.dev/hvmon/tlog/tlogtest"}

// No production package links package testing: its flags and helpers
// belong in test binaries only. The packages are those of ./... in the
// default build (the integration tests' files need a build tag, and their
// package holds only its doc without it).
func TestNoTestingInProduction(t *testing.T) {
	pkgs := list(t, "hvmon.dev/hvmon/...")
	seen := 0
	for _, p := range pkgs {
		if slices.Contains(testHelpers, p.ImportPath) {
			seen++
			continue
		}
		for _, d := range p.Deps {
			if d == "testing" || slices.Contains(testHelpers, d) {
				t.Errorf("production package %s links %s", p.ImportPath, d)
			}
		}
	}
	if seen != len(testHelpers) {
		t.Errorf("go list found %d of the test helpers %q", seen, testHelpers)
	}
	if len(pkgs) < 20 {
		t.Errorf("go list found only %d packages", len(pkgs))
	}
}
