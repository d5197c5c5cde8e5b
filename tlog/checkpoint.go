package tlog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds a signed checkpoint: room for the log's line and
// about 35 ML-DSA-44 (or hundreds of Ed25519) witness lines.
const MaxCheckpointSize = 128 << 10

// DefaultSkew is how far in the future a cosignature may be dated when
// Policy.Skew is zero.
const DefaultSkew = 5 * time.Minute

// emptyRoot is the RFC 6962 root of the empty tree, SHA-256 of nothing.
var emptyRoot = sha256.Sum256(nil)

// FormatCheckpoint returns the note text of a checkpoint: the origin, the
// decimal tree size and the base64 root hash, each on its own line, with no
// extension lines.
func FormatCheckpoint(origin string, size uint64, root [32]byte) []byte {
	b := make([]byte, 0, len(origin)+66)
	b = append(b, origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, size, 10)
	b = append(b, '\n')
	b = b64.AppendEncode(b, root[:])
	return append(b, '\n')
}

// body is a parsed checkpoint note text.
type body struct {
	origin     string
	size       uint64
	root       [32]byte
	extensions bool // lines after the root
}

// parseBody parses a checkpoint note text (tlog-checkpoint): origin, size
// without leading zeros, canonical base64 of a 32-byte root, and optional
// non-empty extension lines, every line ending in a newline. hvmon bounds
// the size to 2^63-1 (the Merkle tree code counts in int64).
func parseBody(text []byte) (body, error) {
	var b body
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return b, malformed("checkpoint", "note text does not end with a newline", nil)
	}
	lines := bytes.Split(text[:len(text)-1], []byte("\n"))
	if len(lines) < 3 {
		return b, malformed("checkpoint", fmt.Sprintf("%d lines, want origin, size and root", len(lines)), nil)
	}
	if err := checkName("checkpoint origin", string(lines[0])); err != nil {
		return b, err
	}
	b.origin = string(lines[0])
	size, err := strconv.ParseUint(string(lines[1]), 10, 64)
	if err != nil || size > math.MaxInt64 || strconv.FormatUint(size, 10) != string(lines[1]) {
		return b, malformed("checkpoint", fmt.Sprintf("tree size %q is not a decimal number below 2^63 without leading zeros", lines[1]), nil)
	}
	b.size = size
	root, ok := decodeB64(string(lines[2]))
	if !ok || len(root) != 32 {
		return b, malformed("checkpoint", "root is not the canonical base64 of 32 bytes", nil)
	}
	b.root = [32]byte(root)
	for _, l := range lines[3:] {
		if len(l) == 0 {
			return b, malformed("checkpoint", "empty extension line", nil)
		}
		b.extensions = true
	}
	return b, nil
}

// Checkpoint is a checkpoint that a Policy opened: its signatures verified
// and the policy met.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
	// Body is the note text (origin, size and root lines); Signed the
	// whole signed note as it was opened, signature lines included.
	Body, Signed []byte
	// LogTime is the timestamp of the log's own cosignature (the zero
	// Unix time when the log makes no freshness claim).
	LogTime time.Time
	// Witnesses are the names of the configured witnesses whose
	// cosignatures verified, in the order of their lines.
	Witnesses []string
}

// Policy says which checkpoints a verifier accepts: signed by the log key
// (ML-DSA-44, its name equal to the checkpoint's origin) and cosigned by
// at least Quorum distinct witnesses of Witnesses. The zero value of Now,
// Skew and Quorum is safe: the real clock, DefaultSkew, and every witness
// listed.
type Policy struct {
	Log       *Verifier
	Witnesses []*Verifier // 0x06 or 0x04 keys; each name and key ID at most once
	// Quorum is how many distinct witnesses must cosign: 0 means all of
	// Witnesses; it may not exceed len(Witnesses).
	Quorum int
	// Now is the verifier's clock; nil means time.Now.
	Now func() time.Time
	// Skew is how far in the future a cosignature may be dated; zero
	// means DefaultSkew.
	Skew time.Duration
}

func (p *Policy) check() error {
	if p.Log == nil {
		return failure(ErrPolicy, "no log key")
	}
	if p.Log.typ != TypeMLDSA44 {
		return failure(ErrPolicy, "log key %s is not ML-DSA-44", p.Log.name)
	}
	if p.Quorum < 0 || p.Quorum > len(p.Witnesses) {
		return failure(ErrPolicy, "quorum %d of %d witnesses", p.Quorum, len(p.Witnesses))
	}
	seen := map[[2]any]bool{{p.Log.name, p.Log.hash}: true}
	for _, w := range p.Witnesses {
		if w == nil {
			return failure(ErrPolicy, "nil witness key")
		}
		k := [2]any{w.name, w.hash}
		if seen[k] {
			return failure(ErrPolicy, "key %s+%08x given twice", w.name, w.hash)
		}
		seen[k] = true
	}
	return nil
}

// Open verifies a signed checkpoint against the policy and returns it.
// It refuses, in this order: an oversized or ill-formed note or checkpoint
// text, or one with extension lines (ErrMalformed); a configured witness
// line that does not verify (ErrWitness); no valid line by the log key
// (ErrLogSignature); an origin other than the log key's name (ErrOrigin);
// a cosignature dated after Now+Skew (ErrTimestamp); fewer than Quorum
// distinct witnesses (ErrQuorum). Lines of keys the policy does not name
// are ignored, as the signed-note rules require.
func (p Policy) Open(signed []byte) (*Checkpoint, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if len(signed) > MaxCheckpointSize {
		return nil, malformed("checkpoint", fmt.Sprintf("larger than %d bytes", MaxCheckpointSize), nil)
	}
	split := bytes.LastIndex(signed, []byte("\n\n"))
	if split < 0 {
		return nil, malformed("checkpoint", "no signature block", nil)
	}
	text := signed[:split+1]
	b, err := parseBody(text)
	if err != nil {
		return nil, err
	}
	if b.extensions {
		return nil, malformed("checkpoint", "extension lines are not allowed (ML-DSA-44 signatures do not cover them)", nil)
	}
	if b.size == 0 && b.root != emptyRoot {
		return nil, malformed("checkpoint", "an empty tree's root must be SHA-256 of nothing", nil)
	}
	known := make([]note.Verifier, 0, 1+len(p.Witnesses))
	known = append(known, p.Log)
	for _, w := range p.Witnesses {
		known = append(known, w)
	}
	n, err := note.Open(signed, note.VerifierList(known...))
	var (
		invalid    *note.InvalidSignatureError
		unverified *note.UnverifiedNoteError
	)
	switch {
	case errors.As(err, &invalid):
		if invalid.Name == p.Log.name && invalid.Hash == p.Log.hash {
			return nil, failure(ErrLogSignature, "the line of %s+%08x does not verify", invalid.Name, invalid.Hash)
		}
		return nil, failure(ErrWitness, "the line of %s+%08x does not verify", invalid.Name, invalid.Hash)
	case errors.As(err, &unverified):
		return nil, failure(ErrLogSignature, "no line of %s+%08x", p.Log.name, p.Log.hash)
	case err != nil:
		return nil, malformed("checkpoint", "not a signed note", err)
	}
	cp := &Checkpoint{Origin: b.origin, Size: b.size, Root: b.root, Body: bytes.Clone(text), Signed: bytes.Clone(signed)}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	latest := now().Add(cmpOr(p.Skew, DefaultSkew))
	logSigned := false
	for _, s := range n.Sigs {
		t := sigTime(s)
		if t.After(latest) {
			return nil, failure(ErrTimestamp, "%s cosigned at %s, after %s", s.Name, t.Format(time.RFC3339), latest.UTC().Format(time.RFC3339))
		}
		if s.Name == p.Log.name && s.Hash == p.Log.hash {
			logSigned, cp.LogTime = true, t
			continue
		}
		cp.Witnesses = append(cp.Witnesses, s.Name)
	}
	if !logSigned {
		return nil, failure(ErrLogSignature, "no line of %s+%08x", p.Log.name, p.Log.hash)
	}
	if b.origin != p.Log.name {
		return nil, failure(ErrOrigin, "origin %q, log key %q", b.origin, p.Log.name)
	}
	if q := cmpOr(p.Quorum, len(p.Witnesses)); len(cp.Witnesses) < q {
		return nil, failure(ErrQuorum, "%d of %d witnesses cosigned, %d required", len(cp.Witnesses), len(p.Witnesses), q)
	}
	return cp, nil
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}
