package atomicfile

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// watchNames records every name that appears in dir (created, hard-linked
// or renamed into it) from now until the returned function is called.
func watchNames(t *testing.T, dir string) func() []string {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		t.Fatalf("inotify watch %s: %v", dir, err)
	}
	return func() []string {
		defer syscall.Close(fd)
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if errors.Is(err, syscall.EAGAIN) {
				return names // the kernel queues events as it acts: all are read
			}
			if err != nil {
				t.Fatalf("reading inotify events: %v", err)
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+nameLen]
				names = append(names, strings.TrimRight(string(name), "\x00"))
				off += syscall.SizeofInotifyEvent + nameLen
			}
		}
	}
}

// TestWriteTempDir: with TempDir, the temporary file is made there, and
// the only name that ever appears in the target's directory is the
// target's, created or replaced whole; the target's directory is synced.
func TestWriteTempDir(t *testing.T) {
	root := t.TempDir()
	dir, tmpDir := filepath.Join(root, "qemu.d"), filepath.Join(root, "staging")
	os.Mkdir(dir, 0o755)
	os.Mkdir(tmpDir, 0o755)
	path := filepath.Join(dir, "hvmon")
	synced := recordSyncs(t)
	for i, opts := range []Options{{TempDir: tmpDir}, {TempDir: tmpDir, Replace: true}} {
		inDir, inTmp := watchNames(t, dir), watchNames(t, tmpDir)
		content := []byte{byte('a' + i)}
		if err := Write(path, content, 0o755, opts); err != nil {
			t.Fatalf("Write(%+v) = %v", opts, err)
		}
		if names := inDir(); !slices.Equal(names, []string{"hvmon"}) {
			t.Errorf("Write(%+v): names that appeared in the target directory = %q, want only %q", opts, names, "hvmon")
		}
		if names := inTmp(); len(names) != 1 || !strings.HasPrefix(names[0], ".hvmon.tmp-") {
			t.Errorf("Write(%+v): names that appeared in TempDir = %q, want one temporary file", opts, names)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != string(content) {
			t.Errorf("Write(%+v): content %q, %v; want %q", opts, got, err, content)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("Write(%+v): mode %v, %v; want 0755", opts, st.Mode(), err)
		}
		if es, _ := os.ReadDir(tmpDir); len(es) != 0 {
			t.Errorf("Write(%+v) left %v in TempDir", opts, es)
		}
		if !slices.Equal(*synced, []string{dir}) {
			t.Errorf("Write(%+v) synced %q, want %q", opts, *synced, []string{dir})
		}
		*synced = nil
	}
}

// TestWriteTempDirOtherFileSystem: a TempDir on another file system than
// the target is refused before anything is written.
func TestWriteTempDirOtherFileSystem(t *testing.T) {
	dir := t.TempDir()
	other := ""
	for _, cand := range []string{"/dev/shm", os.TempDir(), "/run", "/var/tmp"} {
		if d, err := os.MkdirTemp(cand, "atomicfile-test"); err == nil {
			if sameFileSystem(d, dir) != nil {
				other = d
				t.Cleanup(func() { os.RemoveAll(d) })
				break
			}
			os.Remove(d)
		}
	}
	if other == "" {
		t.Skip("no writable directory on another file system than " + dir)
	}
	path := filepath.Join(dir, "hvmon")
	inOther := watchNames(t, other)
	err := Write(path, []byte("x"), 0o755, Options{TempDir: other, Replace: true})
	if names := inOther(); len(names) != 0 {
		t.Errorf("Write wrote %q in the other file system's directory before refusing", names)
	}
	if !errors.Is(err, ErrCrossDevice) || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Write(TempDir on another file system) = %v, want ErrCrossDevice naming both directories", err)
	}
	for _, d := range []string{dir, other} {
		if es, _ := os.ReadDir(d); len(es) != 0 {
			t.Errorf("Write left %v in %s", es, d)
		}
	}
}

// TestCrossDeviceRename: a rename the kernel refuses across mounts (EXDEV)
// is reported as ErrCrossDevice.
func TestCrossDeviceRename(t *testing.T) {
	err := crossDeviceError("/a", "/b", &os.LinkError{Op: "rename", Old: "/a/x", New: "/b/x", Err: syscall.EXDEV})
	if !errors.Is(err, ErrCrossDevice) || !errors.Is(err, syscall.EXDEV) {
		t.Errorf("crossDeviceError = %v, want ErrCrossDevice and EXDEV", err)
	}
}
