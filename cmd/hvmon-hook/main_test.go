package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	xml, err := os.ReadFile("../../hook/testdata/domain-snp.xml")
	if err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		argv   []string
		code   int
		stderr string
	}{
		{[]string{"hvmon-hook"}, 1, "hvmon-hook: want OBJECT OPERATION SUB-OPERATION EXTRA (libvirt's hook arguments), got 0 argument(s)\n"},
		{[]string{"hvmon-hook", "--bogus"}, 1, "flag provided but not defined: -bogus"},
		{[]string{"hvmon-hook", "--timeout", "0s", "--", "llm-1", "start", "begin", "-"}, 1, "hvmon-hook: --timeout must be positive\n"},
		{[]string{"hvmon-hook", "--syslog=false", "--api-socket", none, "--", "llm-1", "start", "begin", "-"}, 0, "hvmon-hook: hook: warning: start of domain \"llm-1\" not recorded"},
		{[]string{"hvmon-hook", "--syslog=false", "--fail-closed", "--api-socket", none, "--", "llm-1", "start", "begin", "-"}, 1, "hvmon-hook: hook: refusing start of domain \"llm-1\": its policy requires attestation"},
		{[]string{"hvmon-hook", "--driver", "network", "--", "default", "start", "begin", "-"}, 0, ""},
		// As a symlink libvirt runs: no flags, a domain may look like one.
		{[]string{"/etc/libvirt/hooks/qemu.d/hvmon", "-x", "stopped", "end", "-"}, 0, "domain XML: names domain \"llm-1\", arguments name \"-x\" (fail-open)"},
	} {
		var stderr bytes.Buffer
		code := run(c.argv, bytes.NewReader(xml), &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) || (c.stderr == "") != (stderr.Len() == 0) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, %q", c.argv, code, stderr.String(), c.code, c.stderr)
		}
	}
}

// TestDependencies keeps the hook binary small: the standard library,
// package hook and internal/hookrun, and no cgo.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{.CgoFiles}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"hvmon.dev/hvmon/hook []": true, "hvmon.dev/hvmon/internal/hookrun []": true, "hvmon.dev/hvmon/cmd/hvmon-hook []": true}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		n++
		if !allowed[l] {
			t.Errorf("hvmon-hook depends on %s", l)
		}
	}
	if n != len(allowed) {
		t.Errorf("go list found %d packages outside the standard library, want %d:\n%s", n, len(allowed), out)
	}
	out, err = exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, heavy := range []string{"net/http", "crypto/tls", "crypto/x509"} {
		for _, p := range strings.Fields(string(out)) {
			if p == heavy {
				t.Errorf("hvmon-hook links %s, whose initialisation slows every hook run", heavy)
			}
		}
	}
}
