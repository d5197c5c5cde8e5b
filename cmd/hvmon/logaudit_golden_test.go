package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateAudit = flag.Bool("update-audit", false, "rewrite testdata/logaudit from the current output")

// TestLogAuditGolden compares log audit --json over logs of chain vectors
// with golden files: the clean history, one with a withheld report.
func TestLogAuditGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		skip []string
		exit int
	}{
		{"clean", nil, 0},
		{"withheld", []string{"02-hv-a-periodic.cose"}, exitAppraisal},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			tiles := filepath.Join(dir, "log")
			lg := publishVector(t, "log.example/main", "clean", tiles, c.skip...)
			code, stdout, stderr := runIn(t, nil, "log", "audit", "--json", "--tlog", tiles, "--log-key", lg.vkey, "--state", filepath.Join(dir, "state"),
				"--trust", filepath.Join(vectorDir, "keys", "host.pub"), "--trust", filepath.Join(vectorDir, "keys", "other.pub"))
			if code != c.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.exit, stdout, stderr)
			}
			golden := filepath.Join("testdata", "logaudit", c.name+".json")
			if *updateAudit {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != stdout {
				t.Errorf("output differs from %s (-update-audit rewrites it):\n%s", golden, stdout)
			}
		})
	}
}
