package logd

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// Bounds of the allowlist file.
const (
	MaxAllowlistSize = 1 << 20
	MaxAllowlistKeys = 10000
)

// ParseAllowlist parses an allowlist: concatenated PEM PUBLIC KEY blocks
// (hvmon host public keys, as `hvmon keygen` writes them), with '#' comment
// lines and blank lines between them. Any other content, a key that does
// not parse, more than MaxAllowlistKeys keys or none at all is an error
// matching attest.ErrMalformed. A key given twice counts once.
func ParseAllowlist(data []byte) ([]*attest.PublicKey, error) {
	if len(data) > MaxAllowlistSize {
		return nil, &attest.MalformedError{What: "allowlist", Reason: fmt.Sprintf("larger than %d bytes", MaxAllowlistSize)}
	}
	var keys []*attest.PublicKey
	seen := map[attest.Digest]bool{}
	rest := data
	for line := 1; len(rest) > 0; {
		trimmed := bytes.TrimLeft(rest, " \t\r\n")
		line += bytes.Count(rest[:len(rest)-len(trimmed)], []byte("\n"))
		rest = trimmed
		if len(rest) == 0 {
			break
		}
		if rest[0] == '#' {
			_, rest, _ = bytes.Cut(rest, []byte("\n"))
			line++
			continue
		}
		blk, after := pem.Decode(rest)
		if blk == nil || !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, &attest.MalformedError{What: "allowlist", Reason: fmt.Sprintf("line %d: neither a comment nor a PEM block", line)}
		}
		k, err := attest.ParsePublicKeyPEM(rest[:len(rest)-len(after)])
		if err != nil {
			return nil, fmt.Errorf("allowlist line %d: %w", line, err)
		}
		line += bytes.Count(rest[:len(rest)-len(after)], []byte("\n"))
		rest = after
		if seen[k.KeyID()] {
			continue
		}
		seen[k.KeyID()] = true
		if len(keys) == MaxAllowlistKeys {
			return nil, &attest.MalformedError{What: "allowlist", Reason: fmt.Sprintf("more than %d keys", MaxAllowlistKeys)}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, &attest.MalformedError{What: "allowlist", Reason: "no key"}
	}
	return keys, nil
}

// Allowlist is the set of host keys whose reports the log accepts, read
// from a file and reloaded on request. A reload that fails keeps the keys
// in force.
type Allowlist struct {
	path string

	mu    sync.RWMutex
	keys  []*attest.PublicKey
	mtime time.Time
	size  int64
}

// LoadAllowlist reads the allowlist file at path.
func LoadAllowlist(path string) (*Allowlist, error) {
	a := &Allowlist{path: path}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Keys returns the keys in force. The slice must not be changed.
func (a *Allowlist) Keys() []*attest.PublicKey {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.keys
}

// Reload reads the file again. On error the keys in force stay.
func (a *Allowlist) Reload() error {
	st, err := os.Stat(a.path)
	if err != nil {
		return err
	}
	data, err := boundedfile.Read(a.path, MaxAllowlistSize)
	if err != nil {
		return err
	}
	keys, err := ParseAllowlist(data)
	if err != nil {
		return fmt.Errorf("%s: %w", a.path, err)
	}
	a.mu.Lock()
	a.keys, a.mtime, a.size = keys, st.ModTime(), st.Size()
	a.mu.Unlock()
	return nil
}

// Changed reports whether the file's modification time or size differs
// from the version last loaded (or the last failed attempt is worth
// repeating: a file that cannot be read counts as changed).
func (a *Allowlist) Changed() bool {
	st, err := os.Stat(a.path)
	if err != nil {
		return true
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return !st.ModTime().Equal(a.mtime) || st.Size() != a.size
}
