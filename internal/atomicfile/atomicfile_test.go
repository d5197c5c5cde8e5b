package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := Write(path, []byte("one"), 0o640, Options{}); err != nil {
		t.Fatalf("Write(new) = %v", err)
	}
	check := func(want string, perm fs.FileMode) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("content = %q, %v; want %q", got, err, want)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != perm {
			t.Errorf("mode = %v, %v; want %04o", st.Mode(), err, perm)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries, want 1 (no temporary file left)", len(entries))
		}
	}
	check("one", 0o640)

	if err := Write(path, []byte("two"), 0o600, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Write(existing) = %v, want fs.ErrExist", err)
	}
	check("one", 0o640)

	if err := Write(path, []byte("three"), 0o600, Options{Replace: true}); err != nil {
		t.Errorf("Write(existing, Replace) = %v", err)
	}
	check("three", 0o600)
}

func TestWriteDanglingSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("x"), 0o600, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Write over a dangling symlink = %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write followed the symlink: %v", err)
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "out")
	if err := Write(path, []byte("x"), 0o600, Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write into a missing directory = %v, want fs.ErrNotExist", err)
	}
}
