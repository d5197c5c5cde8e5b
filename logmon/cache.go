package logmon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// CacheReader keeps the full tiles and entry bundles it reads through R
// in the directory Dir (tlog-tiles layout), so that a monitor run reads
// only what changed since the last. Full tiles and bundles never change;
// checkpoints and partial ones are always read through R. What the cache
// returns is authenticated by tlog as anything R returns is, so a
// damaged cache fails the run rather than misleading it.
type CacheReader struct {
	R   tlog.TileReader
	Dir string
}

var _ tlog.TileReader = CacheReader{}

// ReadCheckpoint reads the checkpoint through R.
func (c CacheReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return c.R.ReadCheckpoint(ctx)
}

// ReadTile reads a full tile from the cache, else through R (keeping it).
func (c CacheReader) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	return c.cached(tlog.TilePath(level, index, width), width,
		func(r tlog.TileReader) ([]byte, error) { return r.ReadTile(ctx, level, index, width) })
}

// ReadEntryBundle reads a full bundle from the cache, else through R
// (keeping it).
func (c CacheReader) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	return c.cached(tlog.EntriesPath(index, width), width,
		func(r tlog.TileReader) ([]byte, error) { return r.ReadEntryBundle(ctx, index, width) })
}

// cached reads a full tile or bundle (rel its path) with read from the
// cache, else with read from R, keeping it; partial ones always from R.
func (c CacheReader) cached(rel string, width uint8, read func(tlog.TileReader) ([]byte, error)) ([]byte, error) {
	if width != 0 {
		return read(c.R)
	}
	if b, err := read(tlogclient.DirReader{Root: c.Dir}); err == nil {
		return b, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b, err := read(c.R)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(c.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(p, b, 0o644, atomicfile.Options{Replace: true}); err != nil {
		return nil, err
	}
	return b, nil
}
