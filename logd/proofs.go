package logd

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/tessera/api/layout"
)

// treeNodes builds the inclusion proofs of one tree size from the log's
// hash tiles. It keeps the tiles it read and every node hash it computed,
// so the proofs of one checkpoint — all the submissions that waited for
// it, often hundreds — share the work: a tile is read once (concurrent
// proofs wait for the first reader) and a node inside a tile is hashed
// once, not once per proof. Full tiles, which never change, come from a
// cache shared by all tree sizes. It is safe for concurrent use; tiles
// are read without holding its lock.
//
// (Tessera's client.ProofBuilder recomputes each inner node of a tile
// from its leaves on every proof and is not safe for concurrent use: with
// one builder per checkpoint behind a lock, proof building took a fifth
// of the server's CPU and serialised the answers of a batch.)
type treeNodes struct {
	size     uint64
	readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	full     *fullTiles

	mu    sync.Mutex
	tiles map[[2]uint64]*tileRead     // (tile level, tile index) → hashes
	nodes map[compact.NodeID][32]byte // computed inner nodes
}

// tileRead is one tile being read or read.
type tileRead struct {
	done chan struct{} // closed when b and err are set
	b    []byte
	err  error
}

// fullTiles caches full tiles for all tree sizes (they never change),
// up to maxFullTiles of them (8 KiB each); when full it starts over.
type fullTiles struct {
	mu    sync.Mutex
	tiles map[[2]uint64][]byte
}

const maxFullTiles = 512

func (f *fullTiles) get(key [2]uint64) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.tiles[key]
	return b, ok
}

func (f *fullTiles) put(key [2]uint64, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tiles == nil || len(f.tiles) >= maxFullTiles {
		f.tiles = map[[2]uint64][]byte{}
	}
	f.tiles[key] = b
}

func newTreeNodes(size uint64, readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error), full *fullTiles) *treeNodes {
	return &treeNodes{size: size, readTile: readTile, full: full, tiles: map[[2]uint64]*tileRead{}, nodes: map[compact.NodeID][32]byte{}}
}

// inclusion returns the RFC 6962 audit path of index in the tree.
func (t *treeNodes) inclusion(ctx context.Context, index uint64) ([][32]byte, error) {
	nodes, err := proof.Inclusion(index, t.size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := t.node(ctx, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h[:]
	}
	hashes, err = nodes.Rehash(hashes, hashChildren)
	if err != nil {
		return nil, err
	}
	out := make([][32]byte, len(hashes))
	for i, h := range hashes {
		if len(h) != sha256.Size {
			return nil, fmt.Errorf("proof hash of %d bytes", len(h))
		}
		out[i] = [32]byte(h)
	}
	return out, nil
}

// node returns the hash of a node of a perfect subtree of the tree.
func (t *treeNodes) node(ctx context.Context, id compact.NodeID) ([32]byte, error) {
	tileLevel, tileIndex, nodeLevel, nodeIndex := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	tile, err := t.tile(ctx, tileLevel, tileIndex)
	if err != nil {
		return [32]byte{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inner(tile, id, nodeLevel, nodeIndex)
}

// inner computes node id, at nodeLevel and nodeIndex inside tile, from
// the tile's hashes and the nodes computed before. t.mu is held.
func (t *treeNodes) inner(tile []byte, id compact.NodeID, nodeLevel uint, nodeIndex uint64) ([32]byte, error) {
	if nodeLevel == 0 {
		if (nodeIndex+1)*sha256.Size > uint64(len(tile)) {
			return [32]byte{}, fmt.Errorf("node %d/%d is beyond a tile of %d hashes", id.Level, id.Index, len(tile)/sha256.Size)
		}
		return [32]byte(tile[nodeIndex*sha256.Size:]), nil
	}
	if h, ok := t.nodes[id]; ok {
		return h, nil
	}
	l, err := t.inner(tile, compact.NewNodeID(id.Level-1, 2*id.Index), nodeLevel-1, 2*nodeIndex)
	if err != nil {
		return [32]byte{}, err
	}
	r, err := t.inner(tile, compact.NewNodeID(id.Level-1, 2*id.Index+1), nodeLevel-1, 2*nodeIndex+1)
	if err != nil {
		return [32]byte{}, err
	}
	h := [32]byte(hashChildren(l[:], r[:]))
	t.nodes[id] = h
	return h, nil
}

// tile returns the hashes of a tile of the tree (partial at its right
// edge), reading it the first time; concurrent callers wait for that
// read. A failed read is forgotten, so a later proof tries again.
func (t *treeNodes) tile(ctx context.Context, level, index uint64) ([]byte, error) {
	key := [2]uint64{level, index}
	t.mu.Lock()
	r, ok := t.tiles[key]
	if !ok {
		r = &tileRead{done: make(chan struct{})}
		t.tiles[key] = r
	}
	t.mu.Unlock()
	if ok {
		select {
		case <-r.done:
			return r.b, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r.b, r.err = t.read(ctx, level, index)
	if r.err != nil {
		t.mu.Lock()
		delete(t.tiles, key)
		t.mu.Unlock()
	}
	close(r.done)
	return r.b, r.err
}

// read reads a tile from the shared cache of full tiles or the log.
func (t *treeNodes) read(ctx context.Context, level, index uint64) ([]byte, error) {
	key := [2]uint64{level, index}
	p := layout.PartialTileSize(level, index, t.size)
	if p == 0 {
		if b, ok := t.full.get(key); ok {
			return b, nil
		}
	}
	b, err := t.readTile(ctx, level, index, p)
	if err != nil {
		return nil, fmt.Errorf("reading tile %d/%d: %w", level, index, err)
	}
	want := int(p) * sha256.Size
	if p == 0 {
		want = layout.TileWidth * sha256.Size
	}
	if len(b) != want {
		return nil, fmt.Errorf("tile %d/%d has %d bytes, want %d", level, index, len(b), want)
	}
	if p == 0 {
		t.full.put(key, b)
	}
	return b, nil
}

// hashChildren is RFC 6962's interior node hash, SHA-256(0x01 ‖ l ‖ r).
func hashChildren(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}
