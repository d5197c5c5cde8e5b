// Package atomicfile writes files so that a reader sees either the old
// content or the complete new content, never a part, even across a crash:
// the bytes go to a temporary file in the same directory (or in
// Options.TempDir, on the same file system), which is synced, then renamed
// (or hard-linked, when existing files must not be replaced) over the
// target, and the target's directory is synced. MkdirAll and OpenFile make
// the directories and files they create durable the same way: a new name
// lasts only once the directory holding it is synced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Options tune Write. The zero value never replaces an existing file and
// writes the temporary file next to the target.
type Options struct {
	// Replace allows Write to replace an existing file at path.
	Replace bool
	// TempDir is the directory of the temporary file; empty means the
	// target's own directory. Set it when a file that appears in the
	// target's directory, even for a moment or as what a crash leaves
	// behind, would be acted on: libvirt runs every executable in its
	// qemu.d hooks directory. It must be on the same file system as the
	// target, because a rename cannot cross file systems (and a copy would
	// not be atomic); Write refuses one that is not with an error matching
	// ErrCrossDevice, before it writes anything.
	TempDir string
}

// ErrCrossDevice matches the error of a Write whose Options.TempDir is not
// on the target's file system.
var ErrCrossDevice = errors.New("temporary directory on another file system than the target")

// Write stores data at path with exactly the permission bits perm (the
// umask does not apply). Without opts.Replace an existing path, even a
// dangling symlink, makes Write fail with an error matching fs.ErrExist and
// leaves it untouched.
func Write(path string, data []byte, perm fs.FileMode, opts Options) (err error) {
	dir := filepath.Dir(path)
	tmpDir := dir
	if opts.TempDir != "" {
		tmpDir = opts.TempDir
		if err := sameFileSystem(tmpDir, dir); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(tmpDir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		// After a successful rename tmpName no longer exists; after a link
		// it is a second name to remove either way.
		if rmErr := os.Remove(tmpName); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = rmErr
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		tmp = nil
		return err
	}
	tmp = nil
	if opts.Replace {
		err = os.Rename(tmpName, path)
	} else {
		err = publishExclusive(tmpName, path)
	}
	if errors.Is(err, syscall.EXDEV) {
		// The same device, but another mount (a bind mount): the kernel
		// refuses to rename across it.
		return crossDeviceError(tmpDir, dir, err)
	}
	if err != nil {
		return err
	}
	return syncDirHook(dir)
}

// sameFileSystem returns an error matching ErrCrossDevice unless the
// directories a and b are on the same file system.
func sameFileSystem(a, b string) error {
	sa, err := os.Stat(a)
	if err != nil {
		return err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return err
	}
	da, okA := sa.Sys().(*syscall.Stat_t)
	db, okB := sb.Sys().(*syscall.Stat_t)
	if okA && okB && da.Dev != db.Dev {
		return crossDeviceError(a, b, nil)
	}
	return nil
}

func crossDeviceError(tmpDir, dir string, cause error) error {
	if cause != nil {
		return fmt.Errorf("%w: %s and %s (%w)", ErrCrossDevice, tmpDir, dir, cause)
	}
	return fmt.Errorf("%w: %s and %s", ErrCrossDevice, tmpDir, dir)
}

// publishExclusive gives tmp the name path only if path does not exist. A
// hard link fails atomically when path exists; on file systems without hard
// links it falls back to a check followed by a rename, which a concurrent
// writer can race.
func publishExclusive(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, statErr := os.Lstat(path); statErr == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return statErr
	}
	if renameErr := os.Rename(tmp, path); renameErr != nil {
		return fmt.Errorf("%w (hard link failed: %v)", renameErr, err)
	}
	return nil
}

// MkdirAll is os.MkdirAll that also syncs the parent of every directory
// it creates, so that they survive a crash (of the machine, not only of
// the process) once it returns.
func MkdirAll(path string, perm fs.FileMode) error {
	path = filepath.Clean(path)
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			return nil // made meanwhile by someone else, who syncs it
		}
		return err
	}
	return syncDirHook(parent)
}

// OpenFile is os.OpenFile that, when flag has os.O_CREATE and the file did
// not exist, syncs its directory after creating it.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	if flag&os.O_CREATE == 0 || flag&os.O_EXCL != 0 {
		f, err := os.OpenFile(path, flag, perm)
		if err == nil && flag&os.O_EXCL != 0 {
			if err := syncDirHook(filepath.Dir(path)); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, err
	}
	f, err := os.OpenFile(path, flag|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return os.OpenFile(path, flag&^os.O_CREATE, perm)
	}
	if err != nil {
		return nil, err
	}
	if err := syncDirHook(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// syncDirHook is syncDir; tests replace it to see which directories are
// synced.
var syncDirHook = syncDir

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems cannot sync a directory; the rename is then as
	// durable as they make it.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
