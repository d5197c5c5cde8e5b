package host

import (
	"cmp"
	"context"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// Entry is a stored report's index record: everything a listing needs
// without reading the report.
type Entry struct {
	VM    string
	Time  time.Time // issued-at, millisecond precision in the name
	Seq   uint64
	Event attest.Event
	Hash  attest.Digest
	// Chain is the tag of the host chain the report belongs to (ChainTag);
	// empty for a report stored without one (by an older hvmon).
	Chain string
	Path  string
}

// ChainTag names a host chain (docs/FORMAT.md, "Chain audit": the reports
// one key signs under one host name) in 16 hex digits: the first 8 bytes
// of SHA3-256("hvmon host chain v1" 0x00 ‖ key id ‖ host name). A store
// keeps it beside each report so that a host finds the head of its own
// chain without reading reports, also when several hosts share the store.
func ChainTag(kid attest.Digest, hostName string) string {
	h := sha3.New256()
	h.Write([]byte("hvmon host chain v1\x00"))
	h.Write(kid[:])
	h.Write([]byte(hostName))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// reportChainTag is the tag of the host chain r belongs to: its signer's
// key under its host name (the observations' host, else the attester's
// name), as the chain audit groups them. r must have been signed (Sign sets
// the attester's key id).
func reportChainTag(r *attest.Report) string {
	name := r.Attester.Name
	if r.Host != nil {
		name = r.Host.Host
	}
	return ChainTag(r.Attester.KeyID, name)
}

// Query selects entries. Zero fields match everything.
type Query struct {
	VM    string
	Event attest.Event
	Since time.Time
	Until time.Time
	Limit int // 0: no limit; otherwise the newest Limit entries
}

// Store keeps signed reports as append-only facts. Put returns only once
// the report is durable. Implementations: FileStore; a transparency-log
// store can wrap one without changing callers.
type Store interface {
	Put(ctx context.Context, vm string, signed []byte, r *attest.Report) (Entry, error)
	Get(ctx context.Context, hash attest.Digest) ([]byte, Entry, error)
	List(ctx context.Context, q Query) ([]Entry, error)
}

// ErrNotFound is returned by Get for an unknown hash.
var ErrNotFound = errors.New("report not found")

// FileStore keeps one file per report under Dir:
//
//	Dir/reports/<vm, escaped>/<issued-at unix ms, 13 digits>-<seq, 20 digits>-<chain tag, 16 hex>-<event>-<hash hex>.cose
//
// Each file is written to a temporary file in the same directory, synced,
// linked into place and the directory synced, so a crash at any point
// leaves either no file or the whole report; temporary files are never
// listed. Names sort by time, then seq. Names without the chain tag (as
// hvmon wrote them before it kept one) are still listed, with an empty
// Entry.Chain.
type FileStore struct {
	Dir string
	mu  sync.Mutex // serialises directory creation
}

// NewFileStore opens (creating) a store under dir.
func NewFileStore(dir string) (*FileStore, error) {
	if err := atomicfile.MkdirAll(filepath.Join(dir, "reports"), 0o750); err != nil {
		return nil, err
	}
	return &FileStore{Dir: dir}, nil
}

// VM directory names. A name escapes to at most maxVMDir bytes as it is;
// a longer one (a VM name of up to 1024 bytes escapes to up to 3072) keeps
// the start of its escaped form, cut at an escape, then hashedVM and the
// SHA3-256 of the whole name in hex: at most 160+2+64 bytes, under the 255
// bytes (NAME_MAX) a file name may have. Escaping never writes "%~", so a
// directory name with it is always a hashed one; the full name is then in
// the file vmNameFile inside, written before any report.
const (
	maxVMDir   = 200
	vmDirKeep  = 160
	hashedVM   = "%~"
	vmNameFile = ".name"
)

// escapeVM makes a VM identifier a safe single path element.
func escapeVM(vm string) string {
	e := url.PathEscape(vm)
	e = strings.ReplaceAll(e, ".", "%2E") // no "." or ".." elements, no hidden files
	if len(e) <= maxVMDir {
		return e
	}
	n := vmDirKeep
	if i := strings.LastIndexByte(e[n-2:n], '%'); i >= 0 {
		n = n - 2 + i // not inside a %XX escape
	}
	sum := sha3.Sum256([]byte(vm))
	return e[:n] + hashedVM + hex.EncodeToString(sum[:])
}

// unescapeVM gives the VM name of a directory of the store. A hashed
// name's VM comes from its name file, which must hash to the directory.
func unescapeVM(dir, name string) (string, error) {
	i := strings.Index(name, hashedVM)
	if i < 0 {
		return url.PathUnescape(name)
	}
	b, err := boundedfile.Read(filepath.Join(dir, name, vmNameFile), 4*MaxObservedText)
	if err != nil {
		return "", err
	}
	vm := string(b)
	if escapeVM(vm) != name {
		return "", fmt.Errorf("store: %s does not name the VM of directory %s", vmNameFile, name)
	}
	return vm, nil
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, vm string, signed []byte, r *attest.Report) (Entry, error) {
	if err := checkReportText("VM name", vm); err != nil {
		return Entry{}, fmt.Errorf("store: %w", err)
	}
	h := attest.ReportHash(signed)
	e := Entry{VM: vm, Time: r.IssuedAt, Seq: r.Seq, Event: r.Event, Hash: h, Chain: reportChainTag(r)}
	dir := filepath.Join(s.Dir, "reports", escapeVM(vm))
	s.mu.Lock()
	// A VM's first report creates its directory: MkdirAll syncs
	// reports/ too, or the report would not be durable.
	err := atomicfile.MkdirAll(dir, 0o750)
	if err == nil && strings.Contains(filepath.Base(dir), hashedVM) {
		// The full name, before any report: List reads it back.
		err = atomicfile.Write(filepath.Join(dir, vmNameFile), []byte(vm), 0o640, atomicfile.Options{})
		if errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	s.mu.Unlock()
	if err != nil {
		return Entry{}, fmt.Errorf("store: %w", err)
	}
	name := fmt.Sprintf("%013d-%020d-%s-%s-%s.cose", r.IssuedAt.UnixMilli(), r.Seq, e.Chain, r.Event, h)
	e.Path = filepath.Join(dir, name)
	if err := atomicfile.Write(e.Path, signed, 0o640, atomicfile.Options{}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return e, nil // the same report, stored before: content-addressed
		}
		return Entry{}, fmt.Errorf("store: %w", err)
	}
	return e, nil
}

func parseName(vm, path string) (Entry, bool) {
	base := strings.TrimSuffix(filepath.Base(path), ".cose")
	parts := strings.SplitN(base, "-", 3)
	if len(parts) != 3 || !strings.HasSuffix(path, ".cose") {
		return Entry{}, false
	}
	ms, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 64)
	rest := parts[2]
	// The chain tag: 16 hex digits, which no event name is.
	var chain string
	if tag, after, ok := strings.Cut(rest, "-"); ok && isChainTag(tag) {
		chain, rest = tag, after
	}
	i := strings.LastIndexByte(rest, '-')
	if err1 != nil || err2 != nil || i < 0 {
		return Entry{}, false
	}
	h, err := attest.ParseDigest(rest[i+1:])
	if err != nil {
		return Entry{}, false
	}
	return Entry{VM: vm, Time: time.UnixMilli(ms).UTC(), Seq: seq, Event: attest.Event(rest[:i]), Hash: h, Chain: chain, Path: path}, true
}

func isChainTag(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// List implements Store, oldest first.
func (s *FileStore) List(ctx context.Context, q Query) ([]Entry, error) {
	root := filepath.Join(s.Dir, "reports")
	vms, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range vms {
		if !d.IsDir() {
			continue
		}
		vm, err := unescapeVM(root, d.Name())
		if err != nil || (q.VM != "" && vm != q.VM) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") || !f.Type().IsRegular() {
				// Temporary files of writes in progress or interrupted, and
				// anything that is not a report file (a FIFO, a directory or a
				// symlink named *.cose), which reading could hang on.
				continue
			}
			e, ok := parseName(vm, filepath.Join(root, d.Name(), f.Name()))
			if !ok || (q.Event != "" && e.Event != q.Event) || (!q.Since.IsZero() && e.Time.Before(q.Since)) || (!q.Until.IsZero() && e.Time.After(q.Until)) {
				continue
			}
			out = append(out, e)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.VM, b.VM); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, nil
}

// read returns the bytes of a listed entry, checking that they still hash
// to its name: Supervisor.Add reads a few entries this way without Get's
// search of the whole store.
func (s *FileStore) read(e Entry) ([]byte, error) {
	b, err := boundedfile.Read(e.Path, attest.MaxReportSize)
	if err != nil {
		return nil, err
	}
	if attest.ReportHash(b) != e.Hash {
		return nil, fmt.Errorf("store: %s does not hash to its name", e.Path)
	}
	return b, nil
}

// Get implements Store. It checks that the file still hashes to its name.
func (s *FileStore) Get(ctx context.Context, hash attest.Digest) ([]byte, Entry, error) {
	entries, err := s.List(ctx, Query{})
	if err != nil {
		return nil, Entry{}, err
	}
	for _, e := range entries {
		if e.Hash != hash {
			continue
		}
		b, err := s.read(e)
		if err != nil {
			return nil, Entry{}, fmt.Errorf("store: %w", err)
		}
		return b, e, nil
	}
	return nil, Entry{}, fmt.Errorf("%w: %s", ErrNotFound, hash)
}
