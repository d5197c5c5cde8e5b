package measure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
)

// Source is a region to measure: Size bytes, read in page-aligned pieces.
// Memory and Section (any io.ReaderAt) are here;
// hvmon.dev/hvmon/measure/fileregion opens regular files and
// hvmon.dev/hvmon/measure/proc reads process mappings.
type Source interface {
	// Size returns the region's length in bytes. It must not change
	// while a measurement runs.
	Size() int64
	// ReadPages fills p with the region's bytes from offset off, which is
	// a multiple of PageSize, with off+len(p) <= Size(). It fills p
	// entirely or returns an error. The engine calls it from several
	// goroutines at once.
	ReadPages(ctx context.Context, p []byte, off int64) error
}

// ErrShortRead reports that a source ended before the size it announced.
var ErrShortRead = errors.New("measure: source shorter than region size")

// Memory returns a source over b. The engine hashes b in place, without
// copying it; b must not change while it is measured.
func Memory(b []byte) Source { return memory(b) }

type memory []byte

func (m memory) Size() int64 { return int64(len(m)) }

func (m memory) ReadPages(_ context.Context, p []byte, off int64) error {
	if off < 0 || off > int64(len(m)) || copy(p, m[off:]) < len(p) {
		return ErrShortRead
	}
	return nil
}

// Section returns a source over size bytes of r from offset off: a file or
// a byte range of one, read with ReadAt (pread for an *os.File), page
// batches at a time, never in full.
func Section(r io.ReaderAt, off, size int64) (Source, error) {
	switch {
	case off < 0 || size < 0:
		return nil, fmt.Errorf("measure: negative offset %d or size %d", off, size)
	case off > math.MaxInt64-size:
		return nil, fmt.Errorf("measure: offset %d + size %d overflows", off, size)
	}
	return &section{r: r, off: off, size: size}, nil
}

type section struct {
	r         io.ReaderAt
	off, size int64
}

func (s *section) Size() int64 { return s.size }

func (s *section) ReadPages(_ context.Context, p []byte, off int64) error {
	n, err := s.r.ReadAt(p, s.off+off)
	if n < len(p) {
		if err == nil || err == io.EOF {
			err = ErrShortRead
		}
		return fmt.Errorf("measure: reading page at offset %d: %w", off+int64(n)/PageSize*PageSize, err)
	}
	return nil
}
