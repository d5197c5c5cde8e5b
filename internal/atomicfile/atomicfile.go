// Package atomicfile writes files so that a reader sees either the old
// content or the complete new content, never a part, even across a crash:
// the bytes go to a temporary file in the same directory, which is synced,
// then renamed (or hard-linked, when existing files must not be replaced)
// over the target, and the directory is synced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Options tune Write. The zero value never replaces an existing file.
type Options struct {
	// Replace allows Write to replace an existing file at path.
	Replace bool
}

// Write stores data at path with exactly the permission bits perm (the
// umask does not apply). Without opts.Replace an existing path, even a
// dangling symlink, makes Write fail with an error matching fs.ErrExist and
// leaves it untouched.
func Write(path string, data []byte, perm fs.FileMode, opts Options) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
	if err != nil {
		return err
	}
	return syncDir(dir)
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
