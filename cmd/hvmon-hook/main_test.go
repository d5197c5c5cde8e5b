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

// TestHookFile: run through the "#!" line of the file "hvmon hook install"
// writes, hvmon-hook takes its flags from the file and libvirt's arguments
// as they are.
func TestHookFile(t *testing.T) {
	xml, err := os.ReadFile("../../hook/testdata/domain-snp.xml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	none := filepath.Join(dir, "none.sock")
	file := func(body string) string {
		p := filepath.Join(dir, "hvmon")
		os.WriteFile(p, []byte("#!/usr/local/bin/hvmon-hook --config\n# hvmon-hook-wrapper v1\n"+body), 0o755)
		return p
	}
	for _, c := range []struct {
		body   string
		args   []string
		code   int
		stderr string
	}{
		{"flags: --syslog=false --fail-closed --api-socket " + none + "\n", []string{"llm-1", "start", "begin", "-"}, 1, "refusing start of domain \"llm-1\""},
		{"flags: --syslog=false --api-socket " + none + "\n", []string{"llm-1", "start", "begin", "-"}, 0, "start of domain \"llm-1\" not recorded"},
		// A domain named like a flag is libvirt's argument, not a flag.
		{"flags: --syslog=false --api-socket " + none + "\n", []string{"-x", "stopped", "end", "-"}, 0, "arguments name \"-x\""},
		{"no flags here\n", []string{"llm-1", "start", "begin", "-"}, 1, "no \"flags:\" line"},
		{"flags: --bogus\n", []string{"llm-1", "start", "begin", "-"}, 1, "holds flags only"},
		{"flags: --timeout 1s extra\n", []string{"llm-1", "start", "begin", "-"}, 1, "holds flags only"},
		{"flags: --timeout 1s\nflags: --timeout 2s\n", []string{"llm-1", "start", "begin", "-"}, 1, "more than one"},
	} {
		var stderr bytes.Buffer
		argv := append([]string{"/usr/local/bin/hvmon-hook", "--config", file(c.body)}, c.args...)
		code := run(argv, bytes.NewReader(xml), &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("%q with %q: %d, stderr %q; want %d, %q", c.body, c.args, code, stderr.String(), c.code, c.stderr)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"hvmon-hook", "--config", filepath.Join(dir, "missing"), "a", "b", "c", "d"}, nil, &stderr); code != 1 {
		t.Errorf("missing hook file: %d %s", code, stderr.String())
	}
}

// TestHookFileExec runs a built hvmon-hook the way the kernel does for
// the hook file: through its "#!" line.
func TestHookFileExec(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hvmon-hook")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "qemu.d", "hvmon")
	os.Mkdir(filepath.Dir(file), 0o755)
	os.WriteFile(file, []byte("#!"+bin+" --config\n# hvmon-hook-wrapper v1\nflags: --syslog=false --fail-closed --api-socket "+filepath.Join(dir, "none.sock")+"\n"), 0o755)
	xml, _ := os.ReadFile("../../hook/testdata/domain-snp.xml")
	cmd := exec.Command(file, "llm-1", "start", "begin", "-")
	cmd.Stdin = bytes.NewReader(xml)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "refusing start of domain \"llm-1\"") {
		t.Fatalf("hook file run: %v\n%s", err, out)
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
