// Package logmon monitors an hvmon transparency log: it follows the log's
// signed checkpoints, proves each new one consistent with the last it
// saw, reads and authenticates the new entries, verifies each as an hvmon
// report and audits the reports' chains across the whole log, so that a
// report a host withheld from the log, a report deleted from a store
// after it was logged, or a rewritten log history is named.
package logmon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// Bounds on what a directory reader reads: a tile holds 256 hashes; an
// entry bundle 256 entries of at most tlog.MaxEntrySize bytes with their
// two-byte lengths.
const (
	maxTile   = 256 * 32
	maxBundle = 256 * (2 + tlog.MaxEntrySize)
)

// DirReader reads a log published as a directory in the tlog-tiles
// layout (the checkpoint file, tile/ and tile/entries/). A missing object
// is an error matching fs.ErrNotExist, so tlog falls back from a partial
// tile or bundle to the full one.
type DirReader struct {
	Root string
}

var _ tlog.TileReader = DirReader{}

func (d DirReader) read(ctx context.Context, rel string, max int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := boundedfile.Read(filepath.Join(d.Root, filepath.FromSlash(rel)), max)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("log %s: %w", d.Root, err)
	}
	return b, err
}

// ReadCheckpoint reads the directory's checkpoint file.
func (d DirReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return d.read(ctx, "checkpoint", tlog.MaxCheckpointSize)
}

// ReadTile reads a hash tile; width 0 is the full tile.
func (d DirReader) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	return d.read(ctx, tlog.TilePath(level, index, width), maxTile)
}

// ReadEntryBundle reads an entry bundle; width 0 is the full bundle.
func (d DirReader) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	return d.read(ctx, tlog.EntriesPath(index, width), maxBundle)
}

// WriteDir writes everything r serves for the tree of cp (the signed
// checkpoint, every tile and entry bundle, partial ones under their .p/
// names) into dir in the tlog-tiles layout. Tests and tools use it to
// publish a log as a directory.
func WriteDir(ctx context.Context, r tlog.TileReader, signed []byte, size uint64, dir string) error {
	put := func(rel string, b []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	if err := put("checkpoint", signed); err != nil {
		return err
	}
	for level, n := uint64(0), size; n > 0; level, n = level+1, n/256 {
		for i := uint64(0); i*256 < n; i++ {
			w := uint8(min(n-i*256, 256) % 256)
			t, err := r.ReadTile(ctx, level, i, w)
			if err != nil {
				return err
			}
			if err := put(tlog.TilePath(level, i, w), t); err != nil {
				return err
			}
			if level == 0 {
				b, err := r.ReadEntryBundle(ctx, i, w)
				if err != nil {
					return err
				}
				if err := put(tlog.EntriesPath(i, w), b); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
