// Package deptest keeps the pure core pure: attest, measure and policy (and
// every hvmon package they pull in) never import the network, process
// execution, the host, guest or QMP layers, or the CLI; attest does no I/O.
package deptest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

// forbidden lists, per core package, the imports it and its hvmon
// dependencies must not have.
var forbidden = map[string][]string{
	"hvmon.dev/hvmon/attest":  {"os", "net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/backend"},
	"hvmon.dev/hvmon/measure": {"net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd", "hvmon.dev/hvmon/attest"},
	"hvmon.dev/hvmon/policy":  {"net", "net/http", "os/exec", "hvmon.dev/hvmon/host", "hvmon.dev/hvmon/guest", "hvmon.dev/hvmon/qmp", "hvmon.dev/hvmon/cmd"},
}

func TestCoreDependencies(t *testing.T) {
	for root, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-json", root).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", root, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		checked := 0
		for dec.More() {
			var p pkg
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
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
