package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// libvirt hook events, as "hvmon hook" forwards them:
//
//	POST /v1/hook              hook.Message -> HookDecision
//	GET  /v1/hooks?vm=&limit=  recorded HookEvents, oldest first
//
// The daemon answers a hook at once: it never attests inside the request.
// It records every event durably in a HookJournal before it answers.

// HookEvent is one hook event as the daemon recorded it.
type HookEvent struct {
	// Seq numbers the journal's events from 1, across restarts.
	Seq      uint64    `json:"seq"`
	Received time.Time `json:"received"`
	hook.Message
	HookDecision
}

// VM is the name of the event's domain.
func (e HookEvent) VM() string { return e.Domain.Name }

// HookDecision is the daemon's answer to a hook. Its Seq is the journal
// sequence number of the recorded event in an answer, and zero in a
// journal line, where HookEvent.Seq says it.
type HookDecision = hook.Decision

// HookJournalOptions configure a HookJournal. Zero values take defaults.
type HookJournalOptions struct {
	// Keep bounds the events held in memory for listing; default 1024.
	Keep int
	// PendingPerVM bounds the events held for one VM until Pending takes
	// them; default 64. Older ones are dropped first.
	PendingPerVM int
	// PendingVMs bounds the VMs with pending events; default 4096. Events
	// of further VMs are journaled but not held.
	PendingVMs int
	// Logger hears about lines of the file that could not be read back.
	Logger hclog.Logger
	// MaxSize is the size past which the file is rotated: path becomes
	// path.1 (path.1 becomes path.2, and so on), and a new path starts;
	// default 16 MiB.
	MaxSize int64
	// Rotated is how many rotated files are kept (path.1 to path.N), the
	// oldest removed; default 4.
	Rotated int
}

// HookJournal records hook events: every event is appended to a JSON-lines
// file and synced before Record returns, and the newest ones are kept in
// memory for List and Pending. Events read back at open are listed but
// not pending: the journal cannot know which were in a report before the
// daemon stopped.
type HookJournal struct {
	opts HookJournalOptions
	path string

	mu      sync.Mutex
	f       *os.File
	size    int64 // of f
	seq     uint64
	recent  []HookEvent // ring, oldest first after ordering
	next    int
	full    bool
	pending map[string][]HookEvent
	skipped int
}

// maxJournalLine bounds a journal line (Record refuses longer events), so
// reading the journal back holds at most Keep lines of this size, however
// large or damaged the file.
const maxJournalLine = 64 << 10

// OpenHookJournal opens (creating, mode 0640) the journal file at path and
// reads back its events. A last line cut short by a crash is truncated
// away. Any other line that cannot be read back (not an event, longer
// than a journal line may be, or a seq not after the one before) is
// skipped and logged, and stays in the file: a damaged journal loses
// nothing else, and the daemon starts. The file must be a regular file.
func OpenHookJournal(path string, opts HookJournalOptions) (*HookJournal, error) {
	if opts.Keep <= 0 {
		opts.Keep = 1024
	}
	if opts.PendingPerVM <= 0 {
		opts.PendingPerVM = 64
	}
	if opts.PendingVMs <= 0 {
		opts.PendingVMs = 4096
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 16 << 20
	}
	if opts.Rotated <= 0 {
		opts.Rotated = 4
	}
	// O_NONBLOCK: a FIFO at the path must not block the open (it would
	// block every read after it); fstat then refuses anything but a file.
	// A new journal's name is synced too.
	f, err := atomicfile.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o640)
	if err != nil {
		return nil, fmt.Errorf("hook journal: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &boundedfile.Error{Path: path, Kind: boundedfile.Kind(st.Mode()), Err: boundedfile.ErrNotRegular}
		}
		return nil, fmt.Errorf("hook journal: %w", err)
	}
	j := &HookJournal{opts: opts, path: path, f: f, recent: make([]HookEvent, opts.Keep), pending: map[string][]HookEvent{}}
	if err := j.load(path); err != nil {
		f.Close()
		return nil, err
	}
	if j.seq == 0 {
		// A file just rotated holds no event yet: the numbering goes on
		// from the newest rotated file's last event.
		j.seq = lastSeq(path+".1", opts.Logger)
	}
	return j, nil
}

// lastSeq is the seq of the last event of a journal file that can be read
// back, 0 when there is none (or no file).
func lastSeq(path string, log hclog.Logger) uint64 {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0
	}
	tmp := &HookJournal{opts: HookJournalOptions{Keep: 1, Logger: log}, f: f, recent: make([]HookEvent, 1)}
	if err := tmp.loadLines(path, false); err != nil {
		return 0
	}
	return tmp.seq
}

// rotate moves the full file aside (path.1, path.2, ... up to Rotated,
// the oldest removed) and starts a new one. Called with j.mu held.
func (j *HookJournal) rotate() error {
	for i := j.opts.Rotated; i >= 1; i-- {
		from := j.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", j.path, i-1)
		}
		if err := os.Rename(from, fmt.Sprintf("%s.%d", j.path, i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := atomicfile.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	j.f.Close()
	j.f, j.size = f, 0
	return nil
}

func (j *HookJournal) load(path string) error { return j.loadLines(path, true) }

// loadLines reads the events of j.f; live: it is the journal being
// appended to, whose partial last line is truncated away.
func (j *HookJournal) loadLines(path string, live bool) error {
	r := bufio.NewReaderSize(j.f, maxJournalLine)
	var good, read int64 // the end of the last complete line; bytes read
	skip := func(line int, why error) {
		j.skipped++
		j.opts.Logger.Error("hook journal: skipping a line that cannot be read back; it stays in the file", "file", path, "line", line, "error", why)
	}
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		read += int64(len(b))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long for a journal line: skip to its end, holding none of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.ReadSlice('\n')
				read += int64(len(b))
			}
			if err == nil {
				good = read
				skip(line, fmt.Errorf("longer than %d bytes", maxJournalLine))
				continue
			}
		}
		if errors.Is(err, io.EOF) {
			if read > good && live {
				// A write cut short: drop it so the next append starts a line.
				if err := j.f.Truncate(good); err != nil {
					return fmt.Errorf("hook journal %s: truncating a partial last line: %w", path, err)
				}
			}
			break
		}
		if err != nil {
			return fmt.Errorf("hook journal %s: %w", path, err)
		}
		good = read
		var ev HookEvent
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil || ev.Seq <= j.seq {
			if err == nil {
				err = fmt.Errorf("seq %d after seq %d", ev.Seq, j.seq)
			}
			skip(line, err)
			continue
		}
		j.seq = ev.Seq
		j.remember(ev)
	}
	if _, err := j.f.Seek(good, io.SeekStart); err != nil {
		return fmt.Errorf("hook journal %s: %w", path, err)
	}
	j.size = good
	return nil
}

// Skipped is the number of lines of the file that could not be read back
// when the journal was opened.
func (j *HookJournal) Skipped() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.skipped
}

func (j *HookJournal) remember(ev HookEvent) {
	j.recent[j.next] = ev
	j.next = (j.next + 1) % len(j.recent)
	if j.next == 0 {
		j.full = true
	}
}

// Record gives ev the next sequence number, appends it to the file, syncs
// it, and holds it for List and Pending. It returns the recorded event.
func (j *HookJournal) Record(ev HookEvent) (HookEvent, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return HookEvent{}, errors.New("hook journal: closed")
	}
	ev.Seq = j.seq + 1
	ev.HookDecision.Seq = 0
	b, err := json.Marshal(ev)
	if err != nil {
		return HookEvent{}, err
	}
	if len(b) >= maxJournalLine {
		return HookEvent{}, fmt.Errorf("hook journal: event of %d bytes", len(b))
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return HookEvent{}, fmt.Errorf("hook journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return HookEvent{}, fmt.Errorf("hook journal: %w", err)
	}
	j.size += int64(len(b) + 1)
	j.seq = ev.Seq
	if j.size >= j.opts.MaxSize {
		// The event is recorded; a rotation that fails is logged and
		// tried again after the next event.
		if err := j.rotate(); err != nil {
			j.opts.Logger.Error("hook journal: rotating", "file", j.path, "error", err)
		}
	}
	j.remember(ev)
	vm := ev.VM()
	if p, ok := j.pending[vm]; ok || len(j.pending) < j.opts.PendingVMs {
		if len(p) > 0 && p[0].Domain.UUID != ev.Domain.UUID {
			// Another domain under the same name (the old one was
			// undefined, a new one defined): its events are not this
			// one's to report.
			p = nil
		}
		if len(p) >= j.opts.PendingPerVM {
			p = append(p[:0], p[1:]...)
		}
		j.pending[vm] = append(p, ev)
	}
	return ev, nil
}

// List returns the newest limit events held in memory for vm ("" for
// all VMs; limit 0 for all held), oldest first.
func (j *HookJournal) List(vm string, limit int) []HookEvent {
	j.mu.Lock()
	defer j.mu.Unlock()
	var all []HookEvent
	if j.full {
		all = append(all, j.recent[j.next:]...)
	}
	all = append(all, j.recent[:j.next]...)
	out := all[:0:0]
	for _, ev := range all {
		if vm == "" || ev.VM() == vm {
			out = append(out, ev)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Pending returns the events recorded for vm since the last call for vm
// (at most PendingPerVM, the newest), oldest first, and forgets them: a
// report that carries them as facts takes them once. A domain is known
// by its UUID as well as its name: with uuid set, only events of the
// domain with that UUID are returned (a new domain with an old name does
// not inherit the old one's events).
func (j *HookJournal) Pending(vm, uuid string) []HookEvent {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.pending[vm]
	delete(j.pending, vm)
	if uuid != "" {
		p = slices.DeleteFunc(p, func(ev HookEvent) bool { return !strings.EqualFold(ev.Domain.UUID, uuid) })
	}
	return p
}

// Close closes the journal file.
func (j *HookJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// HookOptions configure a HookService.
type HookOptions struct {
	Journal *HookJournal
	// Store holds the reports an incoming migration is judged on.
	Store Store
	// TrustedKeys verify those reports: the host's own public key and the
	// keys of peer hosts whose reports reach this store (trust_peers).
	TrustedKeys []*attest.PublicKey
	// Evidence verifies hardware evidence inside those reports; nil fails
	// every report that carries hardware evidence.
	Evidence attest.EvidenceVerifier
	// Registerer, when set, gets hvmon_hook_events_total.
	Registerer prometheus.Registerer
	Logger     hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnEvent, when set, is called with every recorded event before the
	// hook gets its answer (for example to start following a domain that
	// libvirt reports started). It must not block: libvirt waits.
	OnEvent func(HookEvent)
}

// HookService answers libvirt hook events on the local API.
type HookService struct {
	opts   HookOptions
	log    hclog.Logger
	events *prometheus.CounterVec
}

// NewHookService returns a service that records into opts.Journal.
func NewHookService(opts HookOptions) (*HookService, error) {
	if opts.Journal == nil || opts.Store == nil {
		return nil, errors.New("host: a hook service needs a journal and a store")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &HookService{opts: opts, log: opts.Logger}
	if opts.Registerer != nil {
		h.events = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hvmon_hook_events_total", Help: "libvirt hook events received, by VM, operation and decision (allow, deny).",
		}, []string{"vm", "op", "decision"})
		if err := opts.Registerer.Register(h.events); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Routes adds POST /v1/hook and GET /v1/hooks to mux.
func (h *HookService) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/hook", h.serveHook)
	mux.HandleFunc("GET /v1/hooks", h.serveList)
}

func (h *HookService) serveHook(w http.ResponseWriter, r *http.Request) {
	var m hook.Message
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("hook event: %w", err))
		return
	}
	if err := validHookMessage(&m); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	d := h.Decide(r.Context(), &m)
	ev, err := h.opts.Journal.Record(HookEvent{Received: h.opts.Now().UTC(), Message: m, HookDecision: d})
	if err != nil {
		h.log.Error("recording a hook event failed", "vm", m.Domain.Name, "op", m.Op, "error", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if h.opts.OnEvent != nil {
		h.opts.OnEvent(ev)
	}
	decision := "allow"
	if !d.Allow {
		decision = "deny"
	}
	if h.events != nil {
		h.events.WithLabelValues(m.Domain.Name, m.Op, decision).Inc()
	}
	h.log.Info("hook event", "vm", m.Domain.Name, "op", m.Op, "sub_op", m.SubOp, "decision", decision, "reason", d.Reason, "seq", ev.Seq)
	d.Seq = ev.Seq
	writeJSON(w, http.StatusOK, d)
}

func validHookMessage(m *hook.Message) error {
	if _, err := hook.ParseArgs([]string{m.Object, m.Op, m.SubOp, m.Extra}); err != nil {
		return fmt.Errorf("hook event: %w", err)
	}
	if !hook.Followed(m.Driver, m.Op) {
		return fmt.Errorf("hook event: driver %q operation %q is not followed", m.Driver, m.Op)
	}
	if m.Domain.Name != m.Object {
		return fmt.Errorf("hook event: domain %q differs from object %q", m.Domain.Name, m.Object)
	}
	if b, err := hex.DecodeString(m.XMLSHA3); err != nil || len(b) != 32 {
		return fmt.Errorf("hook event: xml_sha3_256 %q: want 64 hex digits", m.XMLSHA3)
	}
	if m.XMLSize <= 0 || m.XMLSize > hook.MaxXML {
		return fmt.Errorf("hook event: xml_size %d out of range", m.XMLSize)
	}
	return nil
}

func (h *HookService) serveList(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q", l))
			return
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, h.opts.Journal.List(r.URL.Query().Get("vm"), limit))
}

// Decide judges a hook event. An incoming migration (operation migrate,
// on the destination) is allowed only when the newest report this store
// holds for the domain verifies under the trusted keys, as of its issue
// time, and does not say the host refused the guest's evidence; when the
// domain's XML marks attestation required, that report must also carry
// guest evidence. Every other operation is allowed: the daemon follows
// them, it does not gate them.
func (h *HookService) Decide(ctx context.Context, m *hook.Message) HookDecision {
	if m.Op != hook.OpMigrate {
		return HookDecision{Allow: true}
	}
	vm := m.Domain.Name
	deny := func(format string, args ...any) HookDecision {
		return HookDecision{Reason: fmt.Sprintf(format, args...)}
	}
	es, err := h.opts.Store.List(ctx, Query{VM: vm, Limit: 1})
	if err != nil {
		return deny("reading the store: %v", err)
	}
	if len(es) == 0 {
		return deny("no stored report for %q: the source's reports must reach this host's store", vm)
	}
	e := es[0]
	b, _, err := h.opts.Store.Get(ctx, e.Hash)
	if err != nil {
		return deny("reading report %s: %v", e.Hash, err)
	}
	res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: h.opts.TrustedKeys, Now: e.Time, Evidence: h.opts.Evidence})
	what := fmt.Sprintf("last report of %q (%s, seq %d, %s)", vm, e.Event, e.Seq, e.Hash)
	if res != nil && res.Report != nil && res.Report.Host != nil && res.Report.Host.Agent == "bad-evidence" {
		// Authentic (Report is set only past the signature), but the host
		// said the guest's evidence failed its checks.
		return deny("%s: the host refused the guest's evidence: %s", what, res.Report.Host.Detail)
	}
	if err != nil {
		// This includes a report without any region (the agent was
		// unavailable): nothing of the guest was verified.
		return deny("%s does not verify: %v", what, err)
	}
	if m.Domain.AttestationRequired && res.Guest == nil {
		agent := attest.AgentNone
		if res.Report.Host != nil {
			agent = res.Report.Host.Agent
		}
		return deny("%s carries no guest evidence (agent %s) and the domain requires attestation", what, agent)
	}
	return HookDecision{Allow: true, Reason: fmt.Sprintf("%s verifies under key %s", what, res.KeyID)}
}

// Hook forwards a hook event and returns the daemon's decision (hvmon hook).
func (c *APIClient) Hook(ctx context.Context, m *hook.Message) (HookDecision, error) {
	var out HookDecision
	return out, c.do(ctx, http.MethodPost, "/v1/hook", m, &out)
}

// Hooks lists recorded hook events.
func (c *APIClient) Hooks(ctx context.Context, vm string, limit int) ([]HookEvent, error) {
	var out []HookEvent
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/hooks?vm=%s&limit=%d", url.QueryEscape(vm), limit), nil, &out)
}
