package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages: "hvmon man" writes one page per visible command, each a
// troff page naming its command, and none for hidden commands.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := filepath.Join(t.TempDir(), "man")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"man", "--dir", dir}, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("hvmon man --dir %s: exit %d, stderr %q", dir, code, stderr.String())
	}
	for page, want := range map[string]string{
		"hvmon.1":              `.TH "HVMON" "1" "Nov 2023"`,
		"hvmon-verify.1":       "hvmon-verify - Verify a signed report offline",
		"hvmon-hook-install.1": "hvmon hook install",
		"hvmon-daemon.1":       "hvmon daemon",
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("page %s: %v", page, err)
			continue
		}
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("page %s: no %q in:\n%.400s", page, want, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "hvmon-man.1")); err == nil {
		t.Errorf("hvmon-man.1 written: hidden commands get no page")
	}
	if code := run([]string{"man"}, nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("hvmon man without --dir: exit %d, want %d (usage)", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), "--dir") {
		t.Errorf("hvmon man without --dir: stderr %q does not name --dir", stderr.String())
	}
}
