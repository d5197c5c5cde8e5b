package tlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of tlog-tiles tiles: a full tile holds 256
// hashes, a full entry bundle 256 entries.
const TileHeight = 8

const tileWidth = 1 << TileHeight

// TileReader reads a log published in the C2SP tlog-tiles layout (a
// directory, an HTTP server, a test double). Widths are 1–255 for a
// partial tile or bundle and 0 for a full one. A reader reports a missing
// object with an error matching fs.ErrNotExist: this package then falls
// back from a partial tile to the full one, which logs may have replaced
// it with.
type TileReader interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error)
}

// TilePath returns the tlog-tiles path of a hash tile:
// "tile/<level>/<index>[.p/<width>]", the index written in groups of three
// digits, all but the last prefixed with "x" (1234067 is "x001/x234/067").
func TilePath(level, index uint64, width uint8) string {
	return "tile/" + strconv.FormatUint(level, 10) + "/" + indexPath(index, width)
}

// EntriesPath returns the tlog-tiles path of an entry bundle:
// "tile/entries/<index>[.p/<width>]".
func EntriesPath(index uint64, width uint8) string {
	return "tile/entries/" + indexPath(index, width)
}

func indexPath(n uint64, width uint8) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	if width != 0 {
		s += ".p/" + strconv.Itoa(int(width))
	}
	return s
}

// ParseTilePath parses a path made by TilePath or EntriesPath (without a
// leading slash); entries reports which. Only the canonical form is
// accepted: it must re-encode to path.
func ParseTilePath(path string) (level, index uint64, width uint8, entries bool, err error) {
	bad := malformed("tile path", fmt.Sprintf("%q", path), nil)
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return 0, 0, 0, false, bad
	}
	lv, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, false, bad
	}
	if lv == "entries" {
		entries = true
	} else if level, err = strconv.ParseUint(lv, 10, 6); err != nil {
		return 0, 0, 0, false, bad
	}
	if r, w, ok := strings.Cut(rest, ".p/"); ok {
		wv, err := strconv.ParseUint(w, 10, 8)
		if err != nil || wv == 0 {
			return 0, 0, 0, false, bad
		}
		rest, width = r, uint8(wv)
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 7 {
		return 0, 0, 0, false, bad
	}
	for i, p := range parts {
		if i < len(parts)-1 {
			p, ok = strings.CutPrefix(p, "x")
			if !ok {
				return 0, 0, 0, false, bad
			}
		}
		d, err := strconv.ParseUint(p, 10, 16)
		if err != nil || len(p) != 3 || d > 999 || index > (1<<63)/1000 {
			return 0, 0, 0, false, bad
		}
		index = index*1000 + d
	}
	want := TilePath(level, index, width)
	if entries {
		want = EntriesPath(index, width)
	}
	if want != path {
		return 0, 0, 0, false, bad
	}
	return level, index, width, entries, nil
}

// ParseEntryBundle splits a tlog-tiles entry bundle: one to 256 entries,
// each a big-endian 16-bit length and that many bytes, nothing after.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(out) == tileWidth {
			return nil, malformed("entry bundle", fmt.Sprintf("more than %d entries", tileWidth), nil)
		}
		if len(b) < 2 {
			return nil, malformed("entry bundle", "truncated length", nil)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, malformed("entry bundle", fmt.Sprintf("entry %d: %d bytes announced, %d left", len(out), n, len(b)-2), nil)
		}
		out = append(out, b[2:2+n:2+n])
		b = b[2+n:]
	}
	if len(out) == 0 {
		return nil, malformed("entry bundle", "no entries", nil)
	}
	return out, nil
}

// MarshalEntryBundle encodes one to 256 entries as an entry bundle.
func MarshalEntryBundle(entries [][]byte) ([]byte, error) {
	if len(entries) == 0 || len(entries) > tileWidth {
		return nil, malformed("entry bundle", fmt.Sprintf("%d entries, want 1 to %d", len(entries), tileWidth), nil)
	}
	var b []byte
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			return nil, malformed("entry bundle", fmt.Sprintf("entry %d has %d bytes, more than %d", i, len(e), MaxEntrySize), nil)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

// readerError marks an error of the TileReader itself (I/O, a missing
// tile), so it is not mistaken for a failed authentication.
type readerError struct{ err error }

func (e *readerError) Error() string { return e.err.Error() }
func (e *readerError) Unwrap() error { return e.err }

// tiles adapts a TileReader to x/mod's tile reader (height 8, levels ≥ 0).
type tiles struct {
	ctx context.Context
	r   TileReader
}

func (t tiles) Height() int { return TileHeight }

func (t tiles) ReadTiles(ts []xtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tl := range ts {
		if tl.H != TileHeight || tl.L < 0 || tl.N < 0 || tl.W < 1 || tl.W > tileWidth {
			return nil, fmt.Errorf("tlog: unexpected tile %+v", tl)
		}
		b, err := readTile(t.ctx, t.r, uint64(tl.L), uint64(tl.N), tl.W)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (t tiles) SaveTiles([]xtlog.Tile, [][]byte) {}

// readTile reads the first w hashes of a tile: the partial tile when w is
// below 256, or the full tile when the partial one is missing.
func readTile(ctx context.Context, r TileReader, level, index uint64, w int) ([]byte, error) {
	width := uint8(w % tileWidth)
	b, err := r.ReadTile(ctx, level, index, width)
	if width != 0 && errors.Is(err, fs.ErrNotExist) {
		width = 0
		b, err = r.ReadTile(ctx, level, index, 0)
	}
	if err != nil {
		return nil, &readerError{fmt.Errorf("reading %s: %w", TilePath(level, index, width), err)}
	}
	want := w * xtlog.HashSize
	if width == 0 {
		want = tileWidth * xtlog.HashSize
	}
	if len(b) != want {
		return nil, malformed("tile", fmt.Sprintf("%s has %d bytes, want %d", TilePath(level, index, width), len(b), want), nil)
	}
	return b[:w*xtlog.HashSize], nil
}

// hashReader returns x/mod's tile hash reader for the tree of cp: every
// hash it returns was checked against cp's root.
func hashReader(ctx context.Context, r TileReader, cp *Checkpoint) xtlog.HashReader {
	return xtlog.TileHashReader(xtlog.Tree{N: int64(cp.Size), Hash: cp.Root}, tiles{ctx, r})
}

// classify maps an error of x/mod's tile code: reader and malformed errors
// pass through, anything else is tiles that did not authenticate.
func classify(err error) error {
	var re *readerError
	var me *MalformedError
	if errors.As(err, &re) || errors.As(err, &me) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrBadTile, err)
}

// ProveInclusion builds the inclusion proof of the entry at index in the
// tree of cp from the log's tiles. The tiles are authenticated against
// cp's root on the way.
func ProveInclusion(ctx context.Context, r TileReader, cp *Checkpoint, index uint64) ([][32]byte, error) {
	if index >= cp.Size {
		return nil, failure(ErrNotIncluded, "index %d is not below the tree size %d", index, cp.Size)
	}
	p, err := xtlog.ProveRecord(int64(cp.Size), int64(index), hashReader(ctx, r, cp))
	if err != nil {
		return nil, classify(err)
	}
	return fromHashes(p), nil
}

// ProveConsistency builds the consistency proof from the tree of old to
// the tree of new from the log's tiles (authenticated against new's root).
// It does not compare old's root: CheckConsistency(old, new, proof) does.
func ProveConsistency(ctx context.Context, r TileReader, old, new *Checkpoint) ([][32]byte, error) {
	if old.Size > new.Size {
		return nil, failure(ErrInconsistent, "size %d after size %d (a rollback)", new.Size, old.Size)
	}
	if old.Size == 0 || old.Size == new.Size {
		return nil, nil
	}
	p, err := xtlog.ProveTree(int64(new.Size), int64(old.Size), hashReader(ctx, r, new))
	if err != nil {
		return nil, classify(err)
	}
	return fromHashes(p), nil
}

// LeafHashes returns the leaf hashes of the n entries from first in the
// tree of cp, read from the log's tiles and authenticated against cp's
// root.
func LeafHashes(ctx context.Context, r TileReader, cp *Checkpoint, first, n uint64) ([][32]byte, error) {
	if first > cp.Size || n > cp.Size-first {
		return nil, fmt.Errorf("tlog: entries [%d, %d+%d) are not all in the tree of size %d", first, first, n, cp.Size)
	}
	if n == 0 {
		return nil, nil
	}
	idx := make([]int64, n)
	for i := range idx {
		idx[i] = xtlog.StoredHashIndex(0, int64(first)+int64(i))
	}
	hs, err := hashReader(ctx, r, cp).ReadHashes(idx)
	if err != nil {
		return nil, classify(err)
	}
	return fromHashes(hs), nil
}

// ReadEntries returns the n entries from first in the tree of cp, read
// from the log's entry bundles (falling back from a missing partial bundle
// to the full one) and each checked against its authenticated leaf hash.
func ReadEntries(ctx context.Context, r TileReader, cp *Checkpoint, first, n uint64) ([][]byte, error) {
	leaves, err := LeafHashes(ctx, r, cp, first, n)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, n)
	for i := first; i < first+n; {
		bundle := i / tileWidth
		w := min(cp.Size-bundle*tileWidth, tileWidth)
		width := uint8(w % tileWidth)
		b, err := r.ReadEntryBundle(ctx, bundle, width)
		if width != 0 && errors.Is(err, fs.ErrNotExist) {
			width = 0
			b, err = r.ReadEntryBundle(ctx, bundle, 0)
		}
		if err != nil {
			return nil, &readerError{fmt.Errorf("reading %s: %w", EntriesPath(bundle, width), err)}
		}
		es, err := ParseEntryBundle(b)
		if err != nil {
			return nil, err
		}
		if want := cmpOr(uint64(width), tileWidth); uint64(len(es)) != want {
			return nil, malformed("entry bundle", fmt.Sprintf("%s has %d entries, want %d", EntriesPath(bundle, width), len(es), want), nil)
		}
		for ; i < first+n && i/tileWidth == bundle; i++ {
			e := es[i%tileWidth]
			if LeafHash(e) != leaves[i-first] {
				return nil, fmt.Errorf("%w: entry %d does not match its leaf hash", ErrBadTile, i)
			}
			out = append(out, e)
		}
	}
	return out, nil
}
