package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hvmon.dev/hvmon/measure"
)

// TestMeasureProcess measures a private file mapping of this process by
// pid and pattern, changes it, and measures again.
func TestMeasureProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hvmon-measure-test.bin")
	if err := os.WriteFile(path, make([]byte, 40*measure.PageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := syscall.Mmap(int(f.Fd()), 0, 40*measure.PageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i % 253)
	}
	arg := fmt.Sprintf("pid:%d:hvmon-measure-test", os.Getpid())
	code, stdout, stderr := runIn(t, nil, "measure", "--json", arg)
	if code != 0 {
		t.Fatalf("measure %s: exit %d: %s", arg, code, stderr)
	}
	var got measureJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("measure --json: %v: %q", err, stdout)
	}
	if got.Root != measure.Bytes(mem) || got.Size != int64(len(mem)) || got.Mode != measure.ModeFull || !strings.HasPrefix(got.Region, arg+" (0x") {
		t.Errorf("measure %s = %+v; want root %s, size %d, mode full", arg, got, measure.Bytes(mem), len(mem))
	}
	mem[5*measure.PageSize] ^= 1
	code, stdout, stderr = runIn(t, nil, "measure", arg)
	if want := fmt.Sprintf("%s %d full ", measure.Bytes(mem), len(mem)); code != 0 || !strings.HasPrefix(stdout, want) {
		t.Errorf("measure %s after a write: exit %d, %q; want %q...; stderr %s", arg, code, stdout, want, stderr)
	}
	// A second pass is incremental where the kernel keeps soft-dirty bits,
	// and a full pass that says why where it does not.
	code, stdout, stderr = runIn(t, nil, "measure", "--repeat", "2", "--interval", "0s", "--json", arg)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("measure --repeat 2: exit %d, %q, stderr %s", code, stdout, stderr)
	}
	var second measureJSON
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	reason, fellBack := second.Mode.Fallback()
	switch {
	case second.Root != measure.Bytes(mem):
		t.Errorf("second pass root %s, want %s", second.Root, measure.Bytes(mem))
	case second.Mode != measure.ModeIncremental && !(fellBack && strings.Contains(reason, "soft-dirty")):
		t.Errorf("second pass mode %q, want incremental or a soft-dirty fallback", second.Mode)
	case fellBack && !strings.Contains(stderr, "incremental measurement not possible"):
		t.Errorf("a fallback for a process region logged %q, want a warning", stderr)
	}
	// A pattern that selects nothing is a usage error.
	code, _, stderr = runIn(t, nil, "measure", fmt.Sprintf("pid:%d:no-such-mapping-anywhere", os.Getpid()))
	checkFailure(t, "measure (no match)", code, stderr, exitUsage)
}
