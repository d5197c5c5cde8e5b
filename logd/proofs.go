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
// it, often hundreds — share the work: a node inside a tile is hashed
// once, not once per proof. It is safe for concurrent use; tiles are read
// without holding its lock.
//
// (Tessera's client.ProofBuilder recomputes each inner node of a tile
// from its leaves on every proof and is not safe for concurrent use: with
// one builder per checkpoint behind a lock, proof building took a fifth
// of the server's CPU and serialised the answers of a batch.)
type treeNodes struct {
	size     uint64
	readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)

	mu    sync.Mutex
	tiles map[[2]uint64][]byte        // (tile level, tile index) → hashes
	nodes map[compact.NodeID][32]byte // computed inner nodes
}

func newTreeNodes(size uint64, readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)) *treeNodes {
	return &treeNodes{size: size, readTile: readTile, tiles: map[[2]uint64][]byte{}, nodes: map[compact.NodeID][32]byte{}}
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
// edge), reading it the first time.
func (t *treeNodes) tile(ctx context.Context, level, index uint64) ([]byte, error) {
	key := [2]uint64{level, index}
	t.mu.Lock()
	b, ok := t.tiles[key]
	t.mu.Unlock()
	if ok {
		return b, nil
	}
	p := layout.PartialTileSize(level, index, t.size)
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
	t.mu.Lock()
	t.tiles[key] = b
	t.mu.Unlock()
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
