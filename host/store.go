package host

import (
	"cmp"
	"context"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
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
	"hvmon.dev/hvmon/tlog"
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

// ErrAmbiguous is a hash prefix that more than one stored report has.
var ErrAmbiguous = errors.New("ambiguous hash prefix")

// MinHashPrefix is the shortest hash prefix Lookup takes, in hex digits.
const MinHashPrefix = 6

// Lookup finds the stored report whose hash starts with prefix (at least
// MinHashPrefix lowercase or uppercase hex digits; a whole hash too): the
// store's entry, ErrNotFound when no report has it, or ErrAmbiguous
// naming the candidates when several do.
func (s *FileStore) Lookup(ctx context.Context, prefix string) (Entry, error) {
	p := strings.ToLower(prefix)
	if len(p) < MinHashPrefix || len(p) > 2*len(attest.Digest{}) || strings.Trim(p, "0123456789abcdef") != "" {
		return Entry{}, fmt.Errorf("hash prefix %q: want %d to %d hex digits", prefix, MinHashPrefix, 2*len(attest.Digest{}))
	}
	es, err := s.List(ctx, Query{})
	if err != nil {
		return Entry{}, err
	}
	var found []Entry
	for _, e := range es {
		if strings.HasPrefix(e.Hash.String(), p) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return Entry{}, fmt.Errorf("%w: no stored report's hash starts with %s", ErrNotFound, p)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, e := range found[:min(len(found), 5)] {
		names = append(names, fmt.Sprintf("%s (%s %s seq %d)", e.Hash, e.VM, e.Event, e.Seq))
	}
	return Entry{}, fmt.Errorf("%w: %d stored reports start with %s: %s", ErrAmbiguous, len(found), p, strings.Join(names, ", "))
}

// ErrNoStore is a data directory that does not exist or holds no report
// store.
var ErrNoStore = errors.New("no report store")

// OpenFileStore opens an existing store for reading: unlike NewFileStore
// it creates nothing, and a directory that does not exist or has no
// reports directory is ErrNoStore.
func OpenFileStore(dir string) (*FileStore, error) {
	st, err := os.Stat(filepath.Join(dir, "reports"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, derr := os.Stat(dir); errors.Is(derr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", ErrNoStore, dir)
		}
		return nil, fmt.Errorf("%w in %s: it has no reports directory (is it the daemon's data_dir?)", ErrNoStore, dir)
	case err != nil:
		return nil, err
	case !st.IsDir():
		return nil, fmt.Errorf("%w in %s: reports is not a directory", ErrNoStore, dir)
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
	e.Path = filepath.Join(dir, reportFileName(e))
	if err := atomicfile.Write(e.Path, signed, 0o640, atomicfile.Options{}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return e, nil // the same report, stored before: content-addressed
		}
		return Entry{}, fmt.Errorf("store: %w", err)
	}
	return e, nil
}

// reportFileName is the name of e's report file (see FileStore).
func reportFileName(e Entry) string {
	return fmt.Sprintf("%013d-%020d-%s-%s-%s.cose", e.Time.UnixMilli(), e.Seq, e.Chain, e.Event, e.Hash)
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

// Transparency-log files beside a report. For a report file <base>.cose
// and a log block labelled L (config: log "L" { … }):
//
//	<base>.L.proof    the log's tlog-proof file for the report (verified
//	                  by the outbox before it was written)
//	<base>.L.refused  the log refused the report for good (400 or 413): a
//	                  JSON object {"status", "message", "time"}
//
// Both are written with internal/atomicfile (0640). List ignores them: it
// lists only names ending in ".cose".

// LogState is where a stored report stands with one log.
type LogState int

const (
	// LogPending: no proof and no refusal yet.
	LogPending LogState = iota
	// LogLogged: a proof file exists (LogEntryState.Index is its index).
	LogLogged
	// LogRefused: the log refused the report for good.
	LogRefused
)

func (s LogState) String() string {
	switch s {
	case LogLogged:
		return "logged"
	case LogRefused:
		return "refused"
	}
	return "pending"
}

// LogEntryState is a report's state with one log.
type LogEntryState struct {
	State  LogState
	Index  uint64 // LogLogged: the entry's index in the log
	Status int    // LogRefused: the HTTP status of the refusal
}

// Refusal is the content of a refusal marker.
type Refusal struct {
	Status  int       `json:"status"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// maxRefusalSize bounds a refusal marker read back.
const maxRefusalSize = 4096

// ValidLogLabel reports whether label may name a log block: 1 to 32 of
// a–z, 0–9 and "-". The label is part of file names beside reports.
func ValidLogLabel(label string) bool {
	if len(label) == 0 || len(label) > 32 {
		return false
	}
	for _, c := range label {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func logFilePath(e Entry, label, ext string) string {
	return strings.TrimSuffix(e.Path, ".cose") + "." + label + ext
}

// ProofPath returns the path of e's proof file for the log label.
func (s *FileStore) ProofPath(e Entry, label string) string {
	return logFilePath(e, label, ".proof")
}

// RefusedPath returns the path of e's refusal marker for the log label.
func (s *FileStore) RefusedPath(e Entry, label string) string {
	return logFilePath(e, label, ".refused")
}

func checkLogEntry(e Entry, label string) error {
	if !ValidLogLabel(label) {
		return fmt.Errorf("store: invalid log label %q", label)
	}
	if !strings.HasSuffix(e.Path, ".cose") {
		return fmt.Errorf("store: entry %s has no report file", e.Hash)
	}
	return nil
}

// PutProof stores proof as e's proof file for the log label. The caller
// has verified it. A proof stored before is kept (proofs of one report in
// one log name the same index; the first verified one stays).
func (s *FileStore) PutProof(ctx context.Context, e Entry, label string, proof []byte) error {
	if err := checkLogEntry(e, label); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := atomicfile.Write(s.ProofPath(e, label), proof, 0o640, atomicfile.Options{})
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Proof returns e's proof file for the log label; an error matching
// fs.ErrNotExist when there is none.
func (s *FileStore) Proof(e Entry, label string) ([]byte, error) {
	if err := checkLogEntry(e, label); err != nil {
		return nil, err
	}
	return boundedfile.Read(s.ProofPath(e, label), tlog.MaxProofSize)
}

// MarkRefused records that the log label refused e for good.
func (s *FileStore) MarkRefused(ctx context.Context, e Entry, label string, status int, msg string) error {
	if err := checkLogEntry(e, label); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b, err := json.Marshal(Refusal{Status: status, Message: msg, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	err = atomicfile.Write(s.RefusedPath(e, label), b, 0o640, atomicfile.Options{})
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// LogState reports e's state with the log label from the files beside
// it. A proof file is parsed (for its index) but not verified here: the
// outbox verified it before writing it, and verify checks it again.
func (s *FileStore) LogState(e Entry, label string) (LogEntryState, error) {
	b, err := s.Proof(e, label)
	switch {
	case err == nil:
		p, err := tlog.ParseProof(b)
		if err != nil {
			return LogEntryState{}, fmt.Errorf("store: %s: %w", s.ProofPath(e, label), err)
		}
		return LogEntryState{State: LogLogged, Index: p.Index}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return LogEntryState{}, err
	}
	b, err = boundedfile.Read(s.RefusedPath(e, label), maxRefusalSize)
	switch {
	case err == nil:
		var r Refusal
		if err := json.Unmarshal(b, &r); err != nil {
			return LogEntryState{}, fmt.Errorf("store: %s: %w", s.RefusedPath(e, label), err)
		}
		return LogEntryState{State: LogRefused, Status: r.Status}, nil
	case errors.Is(err, fs.ErrNotExist):
		return LogEntryState{State: LogPending}, nil
	}
	return LogEntryState{}, err
}

// LogLabels returns the labels of the logs the store has files of, sorted:
// those with a checkpoint in the outbox directory (Dir/outbox) and those
// named by a proof file or refusal marker beside a report. Commands that
// read the store without the daemon's configuration use it.
func (s *FileStore) LogLabels(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	if cps, err := os.ReadDir(filepath.Join(s.Dir, "outbox")); err == nil {
		for _, f := range cps {
			if l, ok := strings.CutSuffix(f.Name(), ".checkpoint"); ok && ValidLogLabel(l) {
				seen[l] = true
			}
		}
	}
	root := filepath.Join(s.Dir, "reports")
	vms, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, d := range vms {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			// <base>.<label>.proof or .refused; the base has no dot.
			parts := strings.Split(f.Name(), ".")
			if len(parts) == 3 && (parts[2] == "proof" || parts[2] == "refused") && ValidLogLabel(parts[1]) {
				seen[parts[1]] = true
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(seen))
	for l := range seen {
		out = append(out, l)
	}
	slices.Sort(out)
	return out, nil
}
