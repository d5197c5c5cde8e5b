package host

import (
	"cmp"
	"context"
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
)

// Entry is a stored report's index record: everything a listing needs
// without reading the report.
type Entry struct {
	VM    string
	Time  time.Time // issued-at, millisecond precision in the name
	Seq   uint64
	Event attest.Event
	Hash  attest.Digest
	Path  string
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
//	Dir/reports/<vm, escaped>/<issued-at unix ms, 13 digits>-<seq, 20 digits>-<event>-<hash hex>.cose
//
// Each file is written to a temporary file in the same directory, synced,
// linked into place and the directory synced, so a crash at any point
// leaves either no file or the whole report; temporary files are never
// listed. Names sort by time, then seq.
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

// escapeVM makes a VM identifier a safe single path element.
func escapeVM(vm string) string {
	e := url.PathEscape(vm)
	e = strings.ReplaceAll(e, ".", "%2E") // no "." or ".." elements, no hidden files
	return e
}

func unescapeVM(s string) (string, error) { return url.PathUnescape(s) }

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, vm string, signed []byte, r *attest.Report) (Entry, error) {
	if vm == "" {
		return Entry{}, fmt.Errorf("store: empty vm name")
	}
	h := attest.ReportHash(signed)
	e := Entry{VM: vm, Time: r.IssuedAt, Seq: r.Seq, Event: r.Event, Hash: h}
	dir := filepath.Join(s.Dir, "reports", escapeVM(vm))
	s.mu.Lock()
	// A VM's first report creates its directory: MkdirAll syncs
	// reports/ too, or the report would not be durable.
	err := atomicfile.MkdirAll(dir, 0o750)
	s.mu.Unlock()
	if err != nil {
		return Entry{}, err
	}
	name := fmt.Sprintf("%013d-%020d-%s-%s.cose", r.IssuedAt.UnixMilli(), r.Seq, r.Event, h)
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
	i := strings.LastIndexByte(parts[2], '-')
	if err1 != nil || err2 != nil || i < 0 {
		return Entry{}, false
	}
	h, err := attest.ParseDigest(parts[2][i+1:])
	if err != nil {
		return Entry{}, false
	}
	return Entry{VM: vm, Time: time.UnixMilli(ms).UTC(), Seq: seq, Event: attest.Event(parts[2][:i]), Hash: h, Path: path}, true
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
		vm, err := unescapeVM(d.Name())
		if err != nil || (q.VM != "" && vm != q.VM) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") {
				continue // temporary files of writes in progress or interrupted
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
		b, err := os.ReadFile(e.Path)
		if err != nil {
			return nil, Entry{}, err
		}
		if attest.ReportHash(b) != hash {
			return nil, Entry{}, fmt.Errorf("store: %s does not hash to its name", e.Path)
		}
		return b, e, nil
	}
	return nil, Entry{}, fmt.Errorf("%w: %s", ErrNotFound, hash)
}
