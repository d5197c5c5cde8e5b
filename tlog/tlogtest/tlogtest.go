// Package tlogtest is an in-memory transparency log for tests: it appends
// entries, signs checkpoints with a real log key (and witness signers),
// writes real proof and consistency files, and serves its tiles and entry
// bundles through tlog.TileReader, so that the log server's clients, the
// host's outbox, verify and the monitor can be tested against the real
// formats without a log server. Hashes come from x/mod's tlog package, not
// from package tlog's own code, so the two check each other.
//
// It keeps everything in memory, starts no goroutines, and is safe for
// concurrent use. Only tests import it.
package tlogtest

import (
	"context"
	"fmt"
	"io/fs"
	"sync"

	"golang.org/x/mod/sumdb/note"
	xtlog "golang.org/x/mod/sumdb/tlog"

	"hvmon.dev/hvmon/tlog"
)

// Log is an in-memory log signed by one log key.
type Log struct {
	key  *tlog.PrivateKey
	opts tlog.SignerOptions

	mu        sync.Mutex
	entries   [][]byte
	hashes    []xtlog.Hash
	published []byte // the signed checkpoint ReadCheckpoint serves

	// GC, when set, makes a partial tile or bundle missing once the full
	// one exists, as a log that collected it does. Set it before the log is
	// shared between goroutines.
	GC bool
	// Tamper, when set, may change the bytes of every tile, bundle or
	// checkpoint served (path "checkpoint" for the latter). Set it before
	// the log is shared between goroutines.
	Tamper func(path string, b []byte) []byte
}

// New returns an empty log signing with key under opts.
func New(key *tlog.PrivateKey, opts tlog.SignerOptions) *Log {
	return &Log{key: key, opts: opts}
}

// Append adds entries and returns the index of the first.
func (l *Log) Append(entries ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := uint64(len(l.entries))
	for _, e := range entries {
		if len(e) > tlog.MaxEntrySize {
			return 0, fmt.Errorf("tlogtest: entry of %d bytes", len(e))
		}
		hs, err := xtlog.StoredHashes(int64(len(l.entries)), e, l.reader())
		if err != nil {
			return 0, err
		}
		l.entries = append(l.entries, append([]byte(nil), e...))
		l.hashes = append(l.hashes, hs...)
	}
	return first, nil
}

// Size returns the number of entries.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.entries))
}

// reader reads stored hashes; l.mu must be held.
func (l *Log) reader() xtlog.HashReader {
	return xtlog.HashReaderFunc(func(idx []int64) ([]xtlog.Hash, error) {
		out := make([]xtlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("tlogtest: hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

func (l *Log) checkSize(size uint64) error {
	if size > uint64(len(l.entries)) {
		return fmt.Errorf("tlogtest: size %d, the log has %d entries", size, len(l.entries))
	}
	return nil
}

// Root returns the root of the tree of the first size entries.
func (l *Log) Root(size uint64) ([32]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkSize(size); err != nil {
		return [32]byte{}, err
	}
	return xtlog.TreeHash(int64(size), l.reader())
}

// Checkpoint returns the checkpoint of the tree of the first size entries,
// signed by the log key and then by each witness.
func (l *Log) Checkpoint(size uint64, witnesses ...note.Signer) ([]byte, error) {
	root, err := l.Root(size)
	if err != nil {
		return nil, err
	}
	signed, err := l.key.SignCheckpoint(size, root, l.opts)
	if err != nil || len(witnesses) == 0 {
		return signed, err
	}
	return tlog.Cosign(signed, witnesses...)
}

// Publish signs the checkpoint of the whole log (see Checkpoint) and
// serves it from ReadCheckpoint. It returns the signed checkpoint.
func (l *Log) Publish(witnesses ...note.Signer) ([]byte, error) {
	signed, err := l.Checkpoint(l.Size(), witnesses...)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.published = signed
	l.mu.Unlock()
	return signed, nil
}

// Proof returns the tlog-proof file of the entry at index in the tree of
// the signed checkpoint cp, which must be one of this log's.
func (l *Log) Proof(index uint64, cp []byte) ([]byte, error) {
	size, err := l.sizeOf(cp)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if index >= size {
		return nil, fmt.Errorf("tlogtest: index %d in a tree of size %d", index, size)
	}
	p, err := xtlog.ProveRecord(int64(size), int64(index), l.reader())
	if err != nil {
		return nil, err
	}
	return (&tlog.Proof{Index: index, Path: hashes(p), Checkpoint: cp}).Marshal(), nil
}

// Consistency returns the consistency file from the tree of size old to
// the tree of the signed checkpoint cp.
func (l *Log) Consistency(old uint64, cp []byte) ([]byte, error) {
	size, err := l.sizeOf(cp)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old > size {
		return nil, fmt.Errorf("tlogtest: old size %d above %d", old, size)
	}
	var p xtlog.TreeProof
	if old > 0 && old < size {
		if p, err = xtlog.ProveTree(int64(size), int64(old), l.reader()); err != nil {
			return nil, err
		}
	}
	return (&tlog.ConsistencyProof{Old: old, Path: hashes(p), Checkpoint: cp}).Marshal(), nil
}

// sizeOf opens cp with the log key alone and returns its size.
func (l *Log) sizeOf(cp []byte) (uint64, error) {
	c, err := tlog.Policy{Log: l.key.Verifier(), Now: l.opts.Now}.Open(cp)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return c.Size, l.checkSize(c.Size)
}

func hashes[T ~[]xtlog.Hash](p T) [][32]byte {
	out := make([][32]byte, len(p))
	for i, h := range p {
		out[i] = h
	}
	return out
}

func (l *Log) tamper(path string, b []byte) []byte {
	if l.Tamper != nil {
		return l.Tamper(path, b)
	}
	return b
}

// ReadCheckpoint implements tlog.TileReader: the checkpoint last
// published, or fs.ErrNotExist.
func (l *Log) ReadCheckpoint(context.Context) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.published == nil {
		return nil, fs.ErrNotExist
	}
	return l.tamper("checkpoint", append([]byte(nil), l.published...)), nil
}

// width returns the number of items a tile or bundle of the given width
// holds, or fs.ErrNotExist when the log does not have it (avail items
// exist at that level).
func (l *Log) width(index uint64, width uint8, avail uint64) (int, error) {
	w := uint64(width)
	if w == 0 {
		w = 256
	} else if l.GC && (index+1)*256 <= avail {
		return 0, fs.ErrNotExist
	}
	if index*256+w > avail {
		return 0, fs.ErrNotExist
	}
	return int(w), nil
}

// ReadTile implements tlog.TileReader.
func (l *Log) ReadTile(_ context.Context, level, index uint64, width uint8) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if level > 7 {
		return nil, fs.ErrNotExist
	}
	w, err := l.width(index, width, uint64(len(l.entries))>>(8*level))
	if err != nil {
		return nil, err
	}
	b, err := xtlog.ReadTileData(xtlog.Tile{H: tlog.TileHeight, L: int(level), N: int64(index), W: w}, l.reader())
	if err != nil {
		return nil, err
	}
	return l.tamper(tlog.TilePath(level, index, width), b), nil
}

// ReadEntryBundle implements tlog.TileReader.
func (l *Log) ReadEntryBundle(_ context.Context, index uint64, width uint8) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, err := l.width(index, width, uint64(len(l.entries)))
	if err != nil {
		return nil, err
	}
	b, err := tlog.MarshalEntryBundle(l.entries[index*256 : index*256+uint64(w)])
	if err != nil {
		return nil, err
	}
	return l.tamper(tlog.EntriesPath(index, width), b), nil
}

var _ tlog.TileReader = (*Log)(nil)
