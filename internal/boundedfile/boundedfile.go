// Package boundedfile reads files whose bytes hvmon does not control
// (reports, keys, roots, certificates, configuration, policies) with two
// guarantees: it reads only regular files, and at most a given number of
// bytes.
//
// A path that names a FIFO, a device, a socket or a directory is refused
// without blocking: the file is opened with O_NONBLOCK, so opening a FIFO
// that no one writes returns at once (a plain open(2) would wait for a
// writer forever), and the type is checked on the open descriptor with
// fstat, so nothing can be swapped in between the check and the read.
// Symbolic links are followed (callers that must refuse them, such as
// private key files, check with Lstat first); a symlink loop is the
// kernel's ELOOP error.
//
// It uses only the standard library, so that cmd/hvmon-hook can use it.
package boundedfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular matches the error for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge matches the error for a file larger than the bound.
var ErrTooLarge = errors.New("file larger than allowed")

// Error says which path failed, and why.
type Error struct {
	Path string
	Kind string // for ErrNotRegular: "a directory", "a FIFO", …
	Max  int64  // for ErrTooLarge
	Err  error  // ErrNotRegular or ErrTooLarge
}

func (e *Error) Error() string {
	if errors.Is(e.Err, ErrTooLarge) {
		return fmt.Sprintf("%s is larger than %d bytes", e.Path, e.Max)
	}
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, e.Kind)
}

func (e *Error) Unwrap() error { return e.Err }

// Open opens path for reading if it is a regular file, without ever
// blocking on a FIFO or a device.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		// open(2) of a socket fails with ENXIO ("no such device or
		// address"): say what the path is instead.
		if st, serr := os.Stat(path); serr == nil && st.Mode()&fs.ModeSocket != 0 {
			return nil, &Error{Path: path, Kind: Kind(st.Mode()), Err: ErrNotRegular}
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &Error{Path: path, Kind: Kind(st.Mode()), Err: ErrNotRegular}
	}
	// O_NONBLOCK changes nothing for a regular file: reads of one never
	// wait for a writer.
	return f, nil
}

// Read reads the regular file at path, refusing it when it holds more than
// max bytes. It reads at most max+1 bytes whatever the file claims.
func Read(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, max)
}

// ReadAll reads r to its end, refusing more than max bytes (path names it
// in the error).
func ReadAll(r io.Reader, path string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &Error{Path: path, Max: max, Err: ErrTooLarge}
	}
	return b, nil
}

// Kind names a file type for messages: "a directory", "a FIFO", …
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}
