package tlog

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// MaxEntrySize bounds an entry: a log entry is one report's COSE_Sign1
// bytes, and entry bundles (tlog-tiles) give each entry a 16-bit length.
const MaxEntrySize = 65535

// maxPath bounds the hashes of an inclusion or consistency proof: a tree of
// at most 2^63-1 leaves needs fewer than 64 (an inclusion path has at most
// 63, a consistency path at most 2·63).
const maxPath = 126

// maxProofHeader bounds the lines before a proof file's checkpoint.
const maxProofHeader = 8 << 10

// MaxProofSize bounds a proof or consistency file.
const MaxProofSize = MaxCheckpointSize + maxProofHeader

// LeafHash returns the RFC 6962 leaf hash of an entry: SHA-256(0x00 ‖
// entry).
func LeafHash(entry []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(entry)
	return [32]byte(h.Sum(nil))
}

const (
	proofHeader       = "c2sp.org/tlog-proof@v1"
	consistencyHeader = "hvmon.dev/tlog-consistency@v1"
)

// Proof is a C2SP tlog-proof@v1 file: an entry's index, its RFC 6962
// inclusion path (the leaf's sibling first) and the signed checkpoint,
// witness lines included, verbatim.
type Proof struct {
	// Extra is the optional "extra" line's data: unauthenticated, never
	// written by hvmon, kept only so a file re-encodes to its bytes.
	Extra      []byte
	Index      uint64
	Path       [][32]byte
	Checkpoint []byte
}

// ParseProof parses a tlog-proof@v1 file strictly: the header line, an
// optional extra line, "index N" (no leading zeros), canonical base64
// hashes, an empty line, then the checkpoint (checked by Policy.Open, not
// here). Marshal gives back the same bytes.
func ParseProof(b []byte) (*Proof, error) {
	lines, cp, err := splitFile("proof", b, proofHeader)
	if err != nil {
		return nil, err
	}
	p := &Proof{Checkpoint: cp}
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, ok := decodeB64(lines[0][len("extra "):])
		if !ok || len(extra) == 0 {
			return nil, malformed("proof", "extra data is not canonical base64", nil)
		}
		p.Extra, lines = extra, lines[1:]
	}
	if len(lines) == 0 {
		return nil, malformed("proof", "no index line", nil)
	}
	if p.Index, err = decimalField("proof", lines[0], "index"); err != nil {
		return nil, err
	}
	if p.Path, err = parseHashes("proof", lines[1:]); err != nil {
		return nil, err
	}
	return p, nil
}

// Marshal encodes the proof file.
func (p *Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(proofHeader + "\n")
	if p.Extra != nil {
		b.WriteString("extra " + b64.EncodeToString(p.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatUint(p.Index, 10) + "\n")
	writeHashes(&b, p.Path)
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// VerifyProof checks a proof file for entry offline: the checkpoint
// satisfies the policy (Policy.Open) and the path leads from the entry's
// leaf hash at the proof's index to the checkpoint's root. It returns the
// checkpoint and the index.
func VerifyProof(p Policy, entry, proof []byte) (*Checkpoint, uint64, error) {
	pr, err := ParseProof(proof)
	if err != nil {
		return nil, 0, err
	}
	cp, err := p.Open(pr.Checkpoint)
	if err != nil {
		return nil, 0, err
	}
	if err := CheckInclusion(cp, pr.Index, LeafHash(entry), pr.Path); err != nil {
		return nil, 0, err
	}
	if len(entry) > MaxEntrySize {
		return nil, 0, failure(ErrNotIncluded, "an entry of %d bytes is larger than a log holds (%d)", len(entry), MaxEntrySize)
	}
	return cp, pr.Index, nil
}

// CheckInclusion checks that path proves the leaf hash leaf at index in
// the tree of cp.
func CheckInclusion(cp *Checkpoint, index uint64, leaf [32]byte, path [][32]byte) error {
	if index >= cp.Size {
		return failure(ErrNotIncluded, "index %d is not below the tree size %d", index, cp.Size)
	}
	if err := xtlog.CheckRecord(toRecordProof(path), int64(cp.Size), cp.Root, int64(index), leaf); err != nil {
		return failure(ErrNotIncluded, "index %d in the tree of size %d: %v", index, cp.Size, err)
	}
	return nil
}

// ConsistencyProof is hvmon's consistency file: an RFC 6962 consistency
// proof from the tree of size Old to the tree of the signed checkpoint
// Checkpoint, which it carries verbatim. C2SP defines no such file; its
// layout follows tlog-proof@v1:
//
//	hvmon.dev/tlog-consistency@v1
//	old <size>
//	<base64 hash>   (zero or more)
//	<empty line>
//	<signed checkpoint>
type ConsistencyProof struct {
	Old        uint64
	Path       [][32]byte
	Checkpoint []byte
}

// ParseConsistency parses a consistency file strictly (as ParseProof).
func ParseConsistency(b []byte) (*ConsistencyProof, error) {
	lines, cp, err := splitFile("consistency file", b, consistencyHeader)
	if err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, malformed("consistency file", "no old line", nil)
	}
	c := &ConsistencyProof{Checkpoint: cp}
	if c.Old, err = decimalField("consistency file", lines[0], "old"); err != nil {
		return nil, err
	}
	if c.Path, err = parseHashes("consistency file", lines[1:]); err != nil {
		return nil, err
	}
	return c, nil
}

// Marshal encodes the consistency file.
func (c *ConsistencyProof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(consistencyHeader + "\n")
	b.WriteString("old " + strconv.FormatUint(c.Old, 10) + "\n")
	writeHashes(&b, c.Path)
	b.WriteString("\n")
	b.Write(c.Checkpoint)
	return b.Bytes()
}

// VerifyConsistency checks a consistency file against a checkpoint the
// verifier already holds: the file's checkpoint satisfies the policy, its
// old size is old's size, and the path proves old a prefix of it. It
// returns the new checkpoint.
func VerifyConsistency(p Policy, old *Checkpoint, file []byte) (*Checkpoint, error) {
	c, err := ParseConsistency(file)
	if err != nil {
		return nil, err
	}
	cp, err := p.Open(c.Checkpoint)
	if err != nil {
		return nil, err
	}
	if c.Old != old.Size {
		return nil, failure(ErrInconsistent, "the file proves from size %d, the old checkpoint has size %d", c.Old, old.Size)
	}
	if err := CheckConsistency(old, cp, c.Path); err != nil {
		return nil, err
	}
	return cp, nil
}

// CheckConsistency checks that path proves the tree of old a prefix of the
// tree of new: same origin, old not larger, equal roots at equal sizes (and
// an empty path), and a valid RFC 6962 consistency proof otherwise.
func CheckConsistency(old, new *Checkpoint, path [][32]byte) error {
	switch {
	case old.Origin != new.Origin:
		return failure(ErrOrigin, "checkpoints of %q and %q", old.Origin, new.Origin)
	case old.Size > new.Size:
		return failure(ErrInconsistent, "size %d after size %d (a rollback)", new.Size, old.Size)
	case old.Size == new.Size:
		if old.Root != new.Root {
			return failure(ErrInconsistent, "two roots for size %d (a fork)", old.Size)
		}
		if len(path) != 0 {
			return failure(ErrInconsistent, "a proof of %d hashes between equal trees", len(path))
		}
		return nil
	case old.Size == 0:
		if len(path) != 0 {
			return failure(ErrInconsistent, "a proof of %d hashes from the empty tree", len(path))
		}
		return nil
	}
	if err := xtlog.CheckTree(toTreeProof(path), int64(new.Size), new.Root, int64(old.Size), old.Root); err != nil {
		return failure(ErrInconsistent, "from size %d to size %d: %v", old.Size, new.Size, err)
	}
	return nil
}

// splitFile checks a proof-like file's bound and header line and splits
// it at the first empty line into the lines between (without the header)
// and the checkpoint after it.
func splitFile(what string, b []byte, header string) ([]string, []byte, error) {
	if len(b) > MaxProofSize {
		return nil, nil, malformed(what, fmt.Sprintf("larger than %d bytes", MaxProofSize), nil)
	}
	end := bytes.Index(b, []byte("\n\n"))
	if end < 0 || end > maxProofHeader {
		return nil, nil, malformed(what, "no empty line before the checkpoint", nil)
	}
	lines := strings.Split(string(b[:end]), "\n")
	if lines[0] != header {
		return nil, nil, malformed(what, fmt.Sprintf("first line is not %q", header), nil)
	}
	cp := b[end+2:]
	if len(cp) == 0 {
		return nil, nil, malformed(what, "no checkpoint", nil)
	}
	return lines[1:], bytes.Clone(cp), nil
}

// decimalField parses "name N" with N a decimal below 2^63 without leading
// zeros.
func decimalField(what, line, name string) (uint64, error) {
	v, ok := strings.CutPrefix(line, name+" ")
	n, err := strconv.ParseUint(v, 10, 63)
	if !ok || err != nil || strconv.FormatUint(n, 10) != v {
		return 0, malformed(what, fmt.Sprintf("want %q and a decimal number below 2^63 without leading zeros", name+" N"), nil)
	}
	return n, nil
}

func parseHashes(what string, lines []string) ([][32]byte, error) {
	if len(lines) > maxPath {
		return nil, malformed(what, fmt.Sprintf("%d hashes, at most %d", len(lines), maxPath), nil)
	}
	path := make([][32]byte, len(lines))
	for i, l := range lines {
		h, ok := decodeB64(l)
		if !ok || len(h) != 32 {
			return nil, malformed(what, fmt.Sprintf("line %d is not the canonical base64 of a 32-byte hash", i+1), nil)
		}
		path[i] = [32]byte(h)
	}
	return path, nil
}

func writeHashes(b *bytes.Buffer, path [][32]byte) {
	for _, h := range path {
		b.WriteString(b64.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
}

func toRecordProof(path [][32]byte) xtlog.RecordProof {
	p := make(xtlog.RecordProof, len(path))
	for i, h := range path {
		p[i] = h
	}
	return p
}

func toTreeProof(path [][32]byte) xtlog.TreeProof {
	p := make(xtlog.TreeProof, len(path))
	for i, h := range path {
		p[i] = h
	}
	return p
}

func fromHashes(hs []xtlog.Hash) [][32]byte {
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}
