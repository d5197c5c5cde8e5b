package host

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDataDirLock: a second lock on a held data directory fails at once,
// names the holder's PID and changes nothing; once released, the next
// daemon gets it; a lock file that is a symlink is not followed.
func TestDataDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, LockFileName))
	_, err = LockDataDir(dir)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, LockFileName))
	if string(before) != string(after) || string(after) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("lock file %q after a refused lock, %q before", after, before)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Close()

	evil := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(evil, 0o750)
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("keep"), 0o600)
	os.Symlink(target, filepath.Join(evil, LockFileName))
	if _, err := LockDataDir(evil); err == nil {
		t.Error("a symlinked lock file was followed")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the symlink's target was rewritten: %q", b)
	}
}
