package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrDataDirInUse is a data directory another hvmon daemon holds.
var ErrDataDirInUse = errors.New("data directory in use")

// LockFileName is the daemon's lock file in its data directory; it holds
// the PID of the daemon that has the lock.
const LockFileName = "daemon.lock"

// DataDirLock is a daemon's exclusive hold on its data directory: one
// daemon per store, so that two never sign into the same chains, follow
// the same VMs or take each other's API socket. The lock is an advisory
// flock(2) on DATA_DIR/daemon.lock, which the kernel releases when the
// process ends however it ends (a kill -9 leaves no stale lock; the file
// with the old PID stays and is rewritten by the next holder).
type DataDirLock struct {
	f *os.File
}

// LockDataDir creates dir if needed and takes its lock without waiting.
// When another process holds it, the error wraps ErrDataDirInUse and
// names that process's PID; nothing in dir is changed.
func LockDataDir(dir string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("lock %s: not a regular file", path)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another hvmon daemon (%s); that daemon was left untouched", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &DataDirLock{f: f}, nil
}

// lockHolder describes the process named in a held lock file: "pid N",
// or "PID unknown" when the file holds no number (its holder is writing
// it).
func lockHolder(f *os.File) string {
	b := make([]byte, 32)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "PID unknown"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return "PID unknown"
	}
	return "pid " + strconv.Itoa(pid)
}

// Close releases the lock. The file stays: removing it could let a
// third daemon lock a new file while a second still waits on the old.
func (l *DataDirLock) Close() error {
	return l.f.Close()
}
