package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// LogConfig is one transparency log the outbox submits every stored
// report to (config: log "LABEL" { … }).
type LogConfig struct {
	// Label names the log in file names and metrics (ValidLogLabel).
	Label string
	// URL is the log server's submission URL (POST URL/v1/add).
	URL string
	// ReadURL is where the log's checkpoint and tiles are read; empty
	// means URL.
	ReadURL string
	// Policy verifies the log's checkpoints: the log key, the witness
	// keys and their quorum.
	Policy tlog.Policy
	// Concurrency bounds the submissions in flight (default 32).
	Concurrency int
	// Timeout bounds one submission, proof included (default 60 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential wait between
	// retries (defaults 1 s and 5 min). MaxBackoff also caps a log's
	// Retry-After and is the wait after a 403.
	MinBackoff, MaxBackoff time.Duration
	// AmbiguousDelay is the least wait before the same bytes are sent
	// again after a failure that may have reached the log (no answer, a
	// timeout, a 5xx other than 503): it lets the log's deduplication see
	// the first copy (default 5 s, which covers twice a 1 s checkpoint
	// interval plus 3 s).
	AmbiguousDelay time.Duration
}

// Defaults of LogConfig.
const (
	DefaultLogConcurrency   = 32
	DefaultLogTimeout       = 60 * time.Second
	DefaultLogMinBackoff    = time.Second
	DefaultLogMaxBackoff    = 5 * time.Minute
	DefaultLogAmbiguousWait = 5 * time.Second
)

func (c *LogConfig) defaults() {
	if c.ReadURL == "" {
		c.ReadURL = c.URL
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultLogConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultLogTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultLogMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultLogMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.AmbiguousDelay <= 0 {
		c.AmbiguousDelay = DefaultLogAmbiguousWait
	}
}

// OutboxOptions configure an Outbox. Zero values are safe except Store
// and Dir.
type OutboxOptions struct {
	// Store holds the reports and receives their proof files.
	Store *FileStore
	// Dir keeps each log's largest verified checkpoint as
	// <label>.checkpoint (the daemon uses DATA_DIR/outbox).
	Dir    string
	Logs   []LogConfig
	Client *http.Client // nil: http.DefaultClient
	// Reader returns the tile reader of a log; nil means an HTTP reader
	// over the log's ReadURL. Tests inject one.
	Reader  func(LogConfig) tlog.TileReader
	Logger  hclog.Logger
	Metrics *Metrics
	// Sleep waits d or until ctx is done; nil means a timer. Tests inject
	// one that records the waits.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock of the submit-time metric; nil means time.Now.
	Now func() time.Time
	// Rescan is how often the store is listed again without a Kick (for
	// reports another process stored in a shared data directory); zero
	// means DefaultOutboxRescan, negative never.
	Rescan time.Duration
}

// DefaultOutboxRescan is the default of OutboxOptions.Rescan.
const DefaultOutboxRescan = 5 * time.Minute

// Outbox submits every stored report to each configured log and keeps the
// verified proof beside the report (FileStore.PutProof). Its progress is
// the proof files and refusal markers themselves, so it resumes after a
// restart without resubmitting logged reports. Storage never waits on it:
// the supervisor only calls Kick after Put.
//
// For each log it lists the store oldest first, skips reports with a proof
// or a refusal, and dispatches the rest in store order with at most
// Concurrency submissions in flight. It keeps only entry metadata for the
// backlog and reads a report's bytes when it dispatches it. Before it
// writes a proof it checks the proof against the log's policy with the
// report's bytes as the entry, and the proof's checkpoint for consistency
// with the largest checkpoint it verified before (from the log's tiles).
// A log found inconsistent is stopped and raises hvmon_log_inconsistent.
type Outbox struct {
	opts OutboxOptions
	logs []*outboxLog
}

// NewOutbox checks opts and returns an outbox; Run starts it.
func NewOutbox(opts OutboxOptions) (*Outbox, error) {
	if opts.Store == nil || opts.Dir == "" {
		return nil, errors.New("outbox: no store or directory")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rescan == 0 {
		opts.Rescan = DefaultOutboxRescan
	}
	if opts.Reader == nil {
		c := opts.Client
		opts.Reader = func(l LogConfig) tlog.TileReader { return &tlogclient.HTTPReader{Base: l.ReadURL, Client: c} }
	}
	if err := atomicfile.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &Outbox{opts: opts}
	seen := map[string]bool{}
	for _, c := range opts.Logs {
		if !ValidLogLabel(c.Label) || seen[c.Label] {
			return nil, fmt.Errorf("outbox: log label %q is invalid or given twice", c.Label)
		}
		seen[c.Label] = true
		if c.Policy.Log == nil {
			return nil, fmt.Errorf("outbox: log %q has no key", c.Label)
		}
		c.defaults()
		l := &outboxLog{o: o, cfg: c, log: opts.Logger.Named("log").With("log", c.Label),
			reader: opts.Reader(c), kick: make(chan struct{}, 1), inflight: map[attest.Digest]bool{}}
		o.logs = append(o.logs, l)
	}
	return o, nil
}

// Kick tells the outbox that a report was stored. It never blocks.
func (o *Outbox) Kick(Entry) {
	for _, l := range o.logs {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Run submits until ctx is done, then waits for the submissions in
// flight to end. It returns ctx's error.
func (o *Outbox) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range o.logs {
		wg.Go(func() { l.run(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// outboxLog is the outbox of one log.
type outboxLog struct {
	o      *Outbox
	cfg    LogConfig
	log    hclog.Logger
	reader tlog.TileReader
	kick   chan struct{}

	mu       sync.Mutex // guards inflight, stopped, stop
	inflight map[attest.Digest]bool
	stopped  bool // the log was found inconsistent
	stop     context.CancelFunc

	// cmu serialises consistency checks (which read tiles) and guards
	// what they keep.
	cmu     sync.Mutex
	best    *tlog.Checkpoint // the largest verified checkpoint
	checked map[uint64][32]byte
}

func (l *outboxLog) checkpointPath() string {
	return filepath.Join(l.o.opts.Dir, l.cfg.Label+".checkpoint")
}

// run is the dispatcher of one log: a pass over the store at start and
// after every kick.
func (l *outboxLog) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.mu.Lock()
	l.stop = cancel
	l.mu.Unlock()
	l.loadCheckpoint()
	l.checkHead(ctx)
	if l.isStopped() {
		return
	}
	sem := make(chan struct{}, l.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for first := true; ; first = false {
		pending, err := l.pending(ctx, first)
		if err != nil && ctx.Err() == nil {
			l.log.Error("listing the store", "error", err)
		}
		for _, e := range pending {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				l.submit(ctx, e)
			})
		}
		if !l.wait(ctx) {
			return
		}
	}
}

// wait waits for a kick or the rescan period; false when ctx is done.
func (l *outboxLog) wait(ctx context.Context) bool {
	var rescan <-chan time.Time
	if l.o.opts.Rescan > 0 {
		t := time.NewTimer(l.o.opts.Rescan)
		defer t.Stop()
		rescan = t.C
	}
	select {
	case <-l.kick:
	case <-rescan:
	case <-ctx.Done():
		return false
	}
	return true
}

// loadCheckpoint reads the largest checkpoint verified before a restart.
// One that no longer opens under the policy (the keys changed) is set
// aside: consistency is then checked from the next one on.
func (l *outboxLog) loadCheckpoint() {
	b, err := boundedfile.Read(l.checkpointPath(), tlog.MaxCheckpointSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var cp *tlog.Checkpoint
	if err == nil {
		cp, err = l.cfg.Policy.Open(b)
	}
	if err != nil {
		l.log.Warn("ignoring the stored checkpoint", "path", l.checkpointPath(), "error", err)
		return
	}
	l.cmu.Lock()
	l.best = cp
	l.cmu.Unlock()
	l.o.opts.Metrics.logTree(l.cfg.Label, cp.Size)
}

// checkHead checks the log's current checkpoint against the stored one,
// so that a log that forked while the host was down is caught even with
// nothing to submit. A log that cannot be read now is checked with the
// next proof instead.
func (l *outboxLog) checkHead(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	b, err := l.reader.ReadCheckpoint(rctx)
	if err != nil {
		l.log.Debug("reading the log's checkpoint", "error", err)
		return
	}
	cp, err := l.cfg.Policy.Open(b)
	if err != nil {
		// Perhaps not witnessed yet, or the policy differs: proofs decide.
		l.log.Debug("opening the log's checkpoint", "error", err)
		return
	}
	if err := l.consistent(rctx, cp); errors.Is(err, tlog.ErrInconsistent) {
		l.alarm(err)
	} else if err != nil {
		l.log.Debug("checking the log's checkpoint", "error", err)
	}
}

// pending lists the store's reports that have neither a proof nor a
// refusal for this log and are not in flight, oldest first, and sets the
// backlog gauge.
//
// On the first pass (check set) it also verifies every stored proof
// against the policy and the report's bytes: a proof that fails (a
// damaged file, or a policy that now asks for more witnesses) is renamed
// to <base>.<label>.proof.invalid, kept for inspection, and the report is
// submitted again.
func (l *outboxLog) pending(ctx context.Context, check bool) ([]Entry, error) {
	all, err := l.o.opts.Store.List(ctx, Query{})
	if err != nil {
		return nil, err
	}
	var out []Entry
	backlog := 0
	for _, e := range all {
		// In flight first: a submission writes its proof before it
		// leaves the set, so an entry absent from it has its final files.
		l.mu.Lock()
		busy := l.inflight[e.Hash]
		l.mu.Unlock()
		if busy {
			backlog++
			continue
		}
		if l.done(e) && (!check || l.proofValid(e)) {
			continue
		}
		backlog++
		out = append(out, e)
	}
	// Mark them in flight now, so that the next pass does not list them
	// again while they wait for a free slot.
	l.mu.Lock()
	for _, e := range out {
		l.inflight[e.Hash] = true
	}
	l.mu.Unlock()
	l.o.opts.Metrics.logBacklogSet(l.cfg.Label, backlog)
	return out, nil
}

// done reports whether e has a proof file or a refusal marker for this
// log. Only their existence counts here; a proof file was verified before
// it was written.
func (l *outboxLog) done(e Entry) bool {
	s := l.o.opts.Store
	for _, p := range []string{s.ProofPath(e, l.cfg.Label), s.RefusedPath(e, l.cfg.Label)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// proofValid reports whether e's stored proof (if any) still verifies,
// and sets an invalid one aside. A report without a proof file (refused)
// or that cannot be read now counts as valid: nothing is resubmitted on
// its account.
func (l *outboxLog) proofValid(e Entry) bool {
	s := l.o.opts.Store
	proof, err := s.Proof(e, l.cfg.Label)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.log.Warn("reading a proof file", "path", s.ProofPath(e, l.cfg.Label), "error", err)
		}
		return true
	}
	entry, err := s.read(e)
	if err != nil {
		return true
	}
	if _, _, err = tlog.VerifyProof(l.cfg.Policy, entry, proof); err == nil {
		return true
	}
	path := s.ProofPath(e, l.cfg.Label)
	l.log.Warn("a stored proof does not verify: submitting the report again", "path", path, "error", err)
	l.o.opts.Metrics.logFailure(l.cfg.Label, reasonBadProof)
	if err := os.Rename(path, path+".invalid"); err != nil {
		l.log.Error("setting an invalid proof aside", "path", path, "error", err)
		return true
	}
	return false
}

func (l *outboxLog) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// Failure reasons of hvmon_log_submit_failures_total.
const (
	reasonUnreachable  = "unreachable"
	reasonPushback     = "pushback"
	reasonTimeout      = "timeout"
	reasonForbidden    = "forbidden"
	reasonMalformed    = "malformed"
	reasonTooLarge     = "too_large"
	reasonBadProof     = "bad_proof"
	reasonInconsistent = "inconsistent"
)

// submit sends e until the log gives a proof that verifies, refuses it
// for good, or the outbox stops.
func (l *outboxLog) submit(ctx context.Context, e Entry) {
	defer func() {
		l.mu.Lock()
		delete(l.inflight, e.Hash)
		l.mu.Unlock()
	}()
	entry, err := l.o.opts.Store.read(e)
	if err != nil {
		// Gone or changed since it was listed: nothing to submit.
		l.log.Error("reading a report to submit", "path", e.Path, "error", err)
		return
	}
	start := l.o.opts.Now()
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil || l.isStopped() {
			return
		}
		wait, done := l.try(ctx, e, entry, attempt)
		if done {
			if ctx.Err() == nil && !l.isStopped() {
				l.o.opts.Metrics.logBacklogAdd(l.cfg.Label, -1)
				l.o.opts.Metrics.logSubmitted(l.cfg.Label, l.o.opts.Now().Sub(start))
			}
			return
		}
		if err := l.o.opts.Sleep(ctx, wait); err != nil {
			return
		}
	}
}

// backoff is the exponential wait before retry attempt+1, with jitter:
// between half and all of MinBackoff·2^attempt, capped at MaxBackoff.
func (l *outboxLog) backoff(attempt int) time.Duration {
	d := l.cfg.MinBackoff
	for i := 0; i < attempt && d < l.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, l.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// try makes one submission of e. It returns done when e needs no more
// attempts (logged, refused, or the log stopped), else the wait before
// the next.
func (l *outboxLog) try(ctx context.Context, e Entry, entry []byte, attempt int) (time.Duration, bool) {
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	res, err := tlogclient.Submit(rctx, l.o.opts.Client, l.cfg.URL, entry)
	ambiguous := max(l.cfg.AmbiguousDelay, l.backoff(attempt))
	if err != nil {
		if ctx.Err() != nil {
			return 0, true
		}
		reason := reasonUnreachable
		if errors.Is(err, context.DeadlineExceeded) {
			reason = reasonTimeout
		}
		l.fail(reason, e, err)
		return ambiguous, false
	}
	switch res.Status {
	case http.StatusOK:
		err := l.accept(rctx, e, entry, res.Proof)
		switch {
		case err == nil:
			return 0, true
		case errors.Is(err, tlog.ErrInconsistent):
			l.alarm(err)
			return 0, true
		case ctx.Err() != nil:
			return 0, true
		}
		reason := reasonBadProof
		if !errors.Is(err, attest.ErrTrust) && !errors.Is(err, attest.ErrMalformed) {
			reason = reasonUnreachable // the tiles could not be read
		}
		l.fail(reason, e, err)
		return l.backoff(attempt), false
	case http.StatusServiceUnavailable:
		l.fail(reasonPushback, e, fmt.Errorf("%d %s", res.Status, res.Message))
		if res.RetryAfter > 0 {
			return min(time.Duration(res.RetryAfter)*time.Second, l.cfg.MaxBackoff), false
		}
		return l.backoff(attempt), false
	case http.StatusForbidden:
		// The log does not (yet) know the host key: its allowlist may lag.
		l.fail(reasonForbidden, e, fmt.Errorf("%d %s", res.Status, res.Message))
		return l.cfg.MaxBackoff, false
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		reason := reasonMalformed
		if res.Status == http.StatusRequestEntityTooLarge {
			reason = reasonTooLarge
		}
		l.fail(reason, e, fmt.Errorf("%d %s", res.Status, res.Message))
		if err := l.o.opts.Store.MarkRefused(ctx, e, l.cfg.Label, res.Status, res.Message); err != nil {
			l.log.Error("recording a refusal", "path", e.Path, "error", err)
			return l.backoff(attempt), false
		}
		return 0, true
	}
	// Any other answer may come after the log sequenced the entry.
	l.fail(reasonUnreachable, e, fmt.Errorf("%d %s", res.Status, res.Message))
	return ambiguous, false
}

func (l *outboxLog) fail(reason string, e Entry, err error) {
	l.o.opts.Metrics.logFailure(l.cfg.Label, reason)
	l.log.Warn("submission failed", "reason", reason, "report", e.Path, "error", err)
}

// accept verifies proof for entry and writes it beside e. An error
// matching tlog.ErrInconsistent means the log showed a checkpoint that is
// not consistent with one it showed before.
func (l *outboxLog) accept(ctx context.Context, e Entry, entry, proof []byte) error {
	cp, _, err := tlog.VerifyProof(l.cfg.Policy, entry, proof)
	if err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	if err := l.consistent(ctx, cp); err != nil {
		return err
	}
	return l.o.opts.Store.PutProof(ctx, e, l.cfg.Label, proof)
}

// maxChecked bounds the tree sizes remembered as consistent with the
// largest checkpoint (proofs of one batch share a checkpoint).
const maxChecked = 64

// consistent checks cp against the largest checkpoint verified so far,
// proving consistency from the log's tiles in whichever direction, and
// keeps cp when it is the new largest. Checks run one at a time; they
// do not hold up listing or dispatching.
func (l *outboxLog) consistent(ctx context.Context, cp *tlog.Checkpoint) error {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if l.isStopped() {
		return fmt.Errorf("%w: log stopped", tlog.ErrInconsistent)
	}
	best := l.best
	if best != nil && cp.Origin != best.Origin {
		return fmt.Errorf("%w: origin %q after %q", tlog.ErrInconsistent, cp.Origin, best.Origin)
	}
	switch {
	case best == nil:
	case cp.Size == best.Size:
		if cp.Root != best.Root {
			return fmt.Errorf("%w: two roots for tree size %d", tlog.ErrInconsistent, cp.Size)
		}
		return nil
	case cp.Size < best.Size:
		if root, ok := l.checked[cp.Size]; ok {
			if root != cp.Root {
				return fmt.Errorf("%w: two roots for tree size %d", tlog.ErrInconsistent, cp.Size)
			}
			return nil
		}
		if err := l.prove(ctx, cp, best); err != nil {
			return err
		}
		l.remember(cp)
		return nil
	default:
		if err := l.prove(ctx, best, cp); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(l.checkpointPath(), cp.Signed, 0o640, atomicfile.Options{Replace: true}); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	l.best = cp
	l.checked = nil
	if best != nil {
		l.remember(best)
	}
	l.o.opts.Metrics.logTree(l.cfg.Label, cp.Size)
	return nil
}

func (l *outboxLog) remember(cp *tlog.Checkpoint) {
	if l.checked == nil {
		l.checked = map[uint64][32]byte{}
	}
	if len(l.checked) >= maxChecked {
		clear(l.checked)
	}
	l.checked[cp.Size] = cp.Root
}

// prove checks that the tree of old is a prefix of the tree of new, from
// the log's tiles (authenticated against new's root).
func (l *outboxLog) prove(ctx context.Context, old, new *tlog.Checkpoint) error {
	path, err := tlog.ProveConsistency(ctx, l.reader, old, new)
	if err != nil {
		return fmt.Errorf("consistency from size %d to %d: %w", old.Size, new.Size, err)
	}
	if err := tlog.CheckConsistency(old, new, path); err != nil {
		return fmt.Errorf("consistency from size %d to %d: %w", old.Size, new.Size, err)
	}
	return nil
}

// alarm stops the log after it showed inconsistent checkpoints.
func (l *outboxLog) alarm(err error) {
	l.mu.Lock()
	first := !l.stopped
	l.stopped = true
	stop := l.stop
	l.mu.Unlock()
	if !first {
		return
	}
	l.o.opts.Metrics.logFailure(l.cfg.Label, reasonInconsistent)
	l.o.opts.Metrics.logAlarm(l.cfg.Label)
	l.log.Error("the log is inconsistent: its submissions stop", "error", err)
	if stop != nil {
		stop()
	}
}
