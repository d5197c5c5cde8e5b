package logd

import (
	"context"
	"path/filepath"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// Bounds of what DirReader reads: a checkpoint (a note of at most 100
// signature lines of a few KiB), a full tile, a full bundle of maximal
// entries.
const (
	maxCheckpointSize = 1 << 20
	maxTileSize       = 256 * 32
	maxBundleSize     = 256 * (2 + tlog.MaxEntrySize)
)

// DirReader reads a log in the tlog-tiles layout from a directory (a POSIX
// log's directory, or a copy of one). It implements tlog.TileReader; a
// missing file is an error matching fs.ErrNotExist.
type DirReader struct {
	Root string
}

var _ tlog.TileReader = DirReader{}

// ReadCheckpoint reads Root/checkpoint.
func (d DirReader) ReadCheckpoint(context.Context) ([]byte, error) {
	return boundedfile.Read(filepath.Join(d.Root, "checkpoint"), maxCheckpointSize)
}

// ReadTile reads a hash tile.
func (d DirReader) ReadTile(_ context.Context, level, index uint64, width uint8) ([]byte, error) {
	return boundedfile.Read(filepath.Join(d.Root, filepath.FromSlash(tlog.TilePath(level, index, width))), maxTileSize)
}

// ReadEntryBundle reads an entry bundle.
func (d DirReader) ReadEntryBundle(_ context.Context, index uint64, width uint8) ([]byte, error) {
	return boundedfile.Read(filepath.Join(d.Root, filepath.FromSlash(tlog.EntriesPath(index, width))), maxBundleSize)
}
