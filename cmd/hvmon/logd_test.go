//go:build !nologd

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hvmon.dev/hvmon/tlog"
)

func TestLogdKeygen(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "log")
	code, stdout, stderr := runIn(t, nil, "logd", "keygen", "--origin", "example.hvmon.dev/log", "--out", prefix)
	if code != 0 {
		t.Fatalf("logd keygen: exit %d: %s", code, stderr)
	}
	vkey, err := os.ReadFile(prefix + ".vkey")
	if err != nil || strings.TrimSpace(string(vkey)) != strings.TrimSpace(stdout) {
		t.Fatalf("vkey file %q, stdout %q, %v", vkey, stdout, err)
	}
	v, err := tlog.LogVerifier(strings.TrimSpace(stdout))
	if err != nil || v.Name() != "example.hvmon.dev/log" {
		t.Fatalf("printed key: %v %v", v, err)
	}
	st, err := os.Stat(prefix + ".key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", st, err)
	}
	if code, _, stderr := runIn(t, nil, "logd", "keygen", "--origin", "example.hvmon.dev/log", "--out", prefix); code != exitUsage {
		t.Errorf("keygen over existing files: exit %d: %s", code, stderr)
	}
	if code, _, _ := runIn(t, nil, "logd", "keygen", "--origin", "bad origin", "--out", filepath.Join(dir, "x")); code != exitUsage {
		t.Errorf("keygen with a bad origin: exit %d", code)
	}
}

func TestLogdConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logd.hcl")
	for name, src := range map[string]string{
		"missing file": "",
		"bad config":   "origin = 1\n",
		"missing key":  "origin = \"o\"\nkey = \"" + filepath.Join(dir, "nokey") + "\"\nallowlist = \"a\"\nposix {\n dir = \"" + dir + "\"\n}\n",
	} {
		os.Remove(cfg)
		if src != "" {
			os.WriteFile(cfg, []byte(src), 0o644)
		}
		code, _, stderr := runIn(t, nil, "logd", "--config", cfg)
		checkFailure(t, name, code, stderr, exitUsage)
	}
}
