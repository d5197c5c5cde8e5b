package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
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

// recordSyncs makes the package record the directories it syncs.
func recordSyncs(t *testing.T) *[]string {
	var synced []string
	old := syncDirHook
	syncDirHook = func(dir string) error { synced = append(synced, dir); return old(dir) }
	t.Cleanup(func() { syncDirHook = old })
	return &synced
}

// TestMkdirAllSyncsParents: each directory MkdirAll creates has its parent
// synced; existing ones are left alone.
func TestMkdirAllSyncsParents(t *testing.T) {
	root := t.TempDir()
	synced := recordSyncs(t)
	a, b, c := filepath.Join(root, "a"), filepath.Join(root, "a", "b"), filepath.Join(root, "a", "b", "c")
	if err := MkdirAll(c, 0o750); err != nil {
		t.Fatal(err)
	}
	if want := []string{root, a, b}; !slices.Equal(*synced, want) {
		t.Errorf("synced %q, want %q", *synced, want)
	}
	for _, d := range []string{a, b, c} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o750&^umask() {
			t.Errorf("%s: %v, %v", d, st, err)
		}
	}
	*synced = nil
	if err := MkdirAll(c, 0o750); err != nil || len(*synced) != 0 {
		t.Errorf("MkdirAll(existing) = %v, synced %q", err, *synced)
	}
	f := filepath.Join(root, "file")
	os.WriteFile(f, nil, 0o600)
	if err := MkdirAll(filepath.Join(f, "d"), 0o750); err == nil {
		t.Error("MkdirAll under a file succeeded")
	}
}

// TestOpenFileSyncsNewFile: a file OpenFile creates has its directory
// synced; opening it again syncs nothing.
func TestOpenFileSyncsNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	synced := recordSyncs(t)
	for i, want := range [][]string{{dir}, nil} {
		f, err := OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !slices.Equal(*synced, want) {
			t.Errorf("open %d: synced %q, want %q", i, *synced, want)
		}
		*synced = nil
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640&^umask() {
		t.Errorf("mode: %v, %v", st, err)
	}
}

func umask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}
