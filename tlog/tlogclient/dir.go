package tlogclient

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

// DirReader is a tlog.TileReader over a log published as a directory in
// the tlog-tiles layout (the checkpoint file, tile/ and tile/entries/): a
// POSIX log server's directory or a copy of one. A missing object is an
// error matching fs.ErrNotExist, so tlog falls back from a partial tile or
// bundle to the full one.
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
	return d.read(ctx, tlog.TilePath(level, index, width), MaxTileSize)
}

// ReadEntryBundle reads an entry bundle; width 0 is the full bundle.
func (d DirReader) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	return d.read(ctx, tlog.EntriesPath(index, width), MaxBundleSize)
}

// WriteDir writes everything r serves for a tree of the given size (the
// signed checkpoint, every tile and entry bundle, partial ones under
// their .p/ names) into dir in the tlog-tiles layout. Tests and tools use
// it to publish a log as a directory.
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
