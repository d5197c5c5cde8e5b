package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCurrent: measure/keccak8_amd64.s is what this generator
// writes now.
func TestGeneratedCurrent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "keccak8_amd64.s")
	if b, err := exec.Command("go", "run", ".", out).CombinedOutput(); err != nil {
		t.Fatalf("go run x8gen: %v\n%s", err, b)
	}
	got, err := os.ReadFile("../../keccak8_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("measure/keccak8_amd64.s is stale: run go generate ./measure")
	}
}
