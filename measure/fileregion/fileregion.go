// Package fileregion measures a regular file, or a byte range of one, as a
// region. It is the one place where hvmon opens a file to measure it: the
// file backend (hvmon attest), the agent's file regions, the host's
// pmemsave regions and hvmon measure all come through Open.
//
// Open refuses anything that is not a regular file (a FIFO, a device, a
// directory, a socket) at once: the file is opened without blocking and its
// type is checked on the open descriptor (internal/boundedfile), so a FIFO
// put where a file was expected fails instead of hanging the measurement.
// No caller measures a device; one that must would need its own, explicit
// way in. Open also checks the range against the file's size, so a range
// past the end is an error, never a silently shorter measurement.
//
// A Region is a measure.Source: measure.Root, measure.Measure and
// measure.Tracker hash it with the package's engine, reading page batches
// with pread, never the whole file at once.
package fileregion

import (
	"context"
	"fmt"
	"os"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/measure"
)

// RangeError reports a byte range that does not lie inside its file.
type RangeError struct {
	Path           string
	Offset, Length int64 // the range asked for; Length is resolved when 0 was asked
	FileSize       int64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("range [%d, %d) exceeds %s (%d bytes)", e.Offset, e.Offset+e.Length, e.Path, e.FileSize)
}

// Region is size bytes of an open regular file from an offset. It
// implements measure.Source; Close it when done.
type Region struct {
	f    *os.File
	path string
	src  measure.Source
}

// Open opens the regular file at path and returns the size bytes from off
// as a region; size 0 means up to the end of the file (its size now). An
// error matching boundedfile.ErrNotRegular says the path is not a regular
// file; a *RangeError, that the range does not lie inside the file.
func Open(path string, off, size int64) (*Region, error) {
	if off < 0 || size < 0 {
		return nil, fmt.Errorf("%s: negative offset %d or size %d", path, off, size)
	}
	f, err := boundedfile.Open(path) // never waits on a FIFO or reads a device
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if size == 0 {
		size = max(st.Size()-off, 0)
	}
	if off > st.Size() || size > st.Size()-off {
		f.Close()
		return nil, &RangeError{Path: path, Offset: off, Length: size, FileSize: st.Size()}
	}
	src, err := measure.Section(f, off, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Region{f: f, path: path, src: src}, nil
}

// Size implements measure.Source.
func (r *Region) Size() int64 { return r.src.Size() }

// ReadPages implements measure.Source. Its errors name the file.
func (r *Region) ReadPages(ctx context.Context, p []byte, off int64) error {
	if err := r.src.ReadPages(ctx, p, off); err != nil {
		return fmt.Errorf("%s: %w", r.path, err)
	}
	return nil
}

// Close closes the file.
func (r *Region) Close() error { return r.f.Close() }
