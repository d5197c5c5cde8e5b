package logd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// MaxKeyFileSize bounds the log key file.
const MaxKeyFileSize = 64 << 10

// Options tune New.
type Options struct {
	// Logger receives the server's log lines; nil discards them.
	Logger hclog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Signer tunes the checkpoint signer (clock; deterministic signatures
	// for tests).
	Signer tlog.SignerOptions
	// HTTPClient is used to reach witnesses; nil means a client with the
	// configured witness timeout.
	HTTPClient *http.Client
	// Getenv reads the storage's secrets; nil means os.Getenv.
	Getenv func(string) string
	// AllowlistPoll is how often the allowlist file is checked for a
	// change by Run; zero means 10 s.
	AllowlistPoll time.Duration
}

// Server is a running log: the Tessera appender and its reader, the
// allowlist, and the HTTP handler that serves them.
type Server struct {
	cfg      *Config
	key      *tlog.PrivateKey
	allow    *Allowlist
	log      hclog.Logger
	metrics  *Metrics
	poll     time.Duration
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc

	// add and await are the appender's Add and the publication awaiter's
	// Await; tests replace them to provoke pushback.
	add   func(context.Context, []byte) tessera.IndexFuture
	await func(context.Context, tessera.IndexFuture) (tessera.Index, []byte, error)

	follower  tessera.Follower
	closeOnce sync.Once
	closeErr  error

	inflight chan struct{}
	ready    atomic.Bool
	proofs   proofCache
}

// LoadKey reads the log's private key file. The file must be a regular
// file that group and others cannot access; its name is the origin.
func LoadKey(path, origin string) (*tlog.PrivateKey, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("log key %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("log key %s has mode %04o, which lets other users read or change it: run chmod 600 %s", path, uint32(st.Mode().Perm()), path)
	}
	data, err := boundedfile.Read(path, MaxKeyFileSize)
	if err != nil {
		return nil, err
	}
	k, err := tlog.ParsePrivateKeyPEM(origin, data)
	if err != nil {
		return nil, fmt.Errorf("log key %s: %w", path, err)
	}
	return k, nil
}

// New loads the key and the allowlist named by cfg, opens the storage and
// starts the appender. The log keeps running until Close; ctx bounds only
// the start.
func New(ctx context.Context, cfg *Config, o Options) (*Server, error) {
	key, err := LoadKey(cfg.Key, cfg.Origin)
	if err != nil {
		return nil, err
	}
	allow, err := LoadAllowlist(cfg.Allowlist)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, key: key, allow: allow, log: o.Logger, metrics: NewMetrics(o.Registerer),
		poll: o.AllowlistPoll, inflight: make(chan struct{}, *cfg.MaxInflight),
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	routeLibraryLogs(s.log)
	if s.poll == 0 {
		s.poll = 10 * time.Second
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Durations.WitnessTimeout}
	}
	// The appender lives until Close, not until the start's ctx ends.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	fail := func(err error) (*Server, error) {
		cancel()
		return nil, err
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	drv, as, err := openStorage(runCtx, cfg, hc, getenv)
	if err != nil {
		return fail(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(key.NoteSigner(o.Signer)).
		WithCheckpointInterval(cfg.Durations.CheckpointInterval).
		WithBatching(uint(*cfg.BatchMaxSize), cfg.Durations.BatchMaxAge).
		WithPushback(uint(*cfg.PushbackMaxOutstanding)).
		WithAntispam(tessera.DefaultAntispamInMemorySize, as)
	if ws := cfg.WitnessList(); len(ws) > 0 {
		opts = opts.WithWitnesses(witnessGroup(cfg.Quorum(), ws),
			&tessera.WitnessOptions{Timeout: cfg.Durations.WitnessTimeout, FailOpen: cfg.WitnessFailOpen})
	}
	app, shutdown, reader, err := tessera.NewAppender(runCtx, drv, opts)
	if err != nil {
		return fail(fmt.Errorf("starting the log: %w", err))
	}
	s.reader, s.shutdown = reader, shutdown
	aw := tessera.NewPublicationAwaiter(runCtx, reader.ReadCheckpoint, 50*time.Millisecond)
	s.add = func(ctx context.Context, b []byte) tessera.IndexFuture { return app.Add(ctx, tessera.NewEntry(b)) }
	s.await = aw.Await
	s.proofs.readTile = fallbackReadTile(reader.ReadTile)
	s.proofs.policy = tlog.Policy{Log: key.Verifier()}
	s.follower = as.Follower(nil)
	go s.gate(runCtx)
	return s, nil
}

// witnessGroup builds the witness policy: quorum of the witnesses, each
// checked with hvmon's own verifier (Ed25519 or ML-DSA-44 cosignatures;
// Tessera's own parser knows only the former).
func witnessGroup(quorum int, ws []*Witness) tessera.WitnessGroup {
	g := tessera.WitnessGroup{N: quorum}
	for _, w := range ws {
		g.Components = append(g.Components, tessera.Witness{Key: w.Verifier, URL: w.URL + "/add-checkpoint"})
	}
	return g
}

// gate opens the server for submissions once the persistent dedup index
// has followed every entry sequenced before the start: until then a
// resubmission after a crash could be logged twice.
func (s *Server) gate(ctx context.Context) {
	target, err := s.reader.NextIndex(ctx)
	if err != nil {
		s.log.Error("reading the log's next index", "error", err)
	}
	if n, err := s.reader.IntegratedSize(ctx); err == nil && n > target {
		target = n
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := s.follower.EntriesProcessed(ctx)
		if err == nil && n >= target {
			s.ready.Store(true)
			s.metrics.ready.Set(1)
			s.log.Info("log ready", "origin", s.cfg.Origin, "size", target)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the server accepts submissions.
func (s *Server) Ready() bool { return s.ready.Load() }

// VerifierKey returns the log's verifier key (its vkey).
func (s *Server) VerifierKey() string { return s.key.VerifierKey() }

// Reader returns the log's reader.
func (s *Server) Reader() tessera.LogReader { return s.reader }

// ReloadAllowlist reads the allowlist file again. A file that fails to
// load keeps the previous list in force; the failure is logged, counted
// and returned.
func (s *Server) ReloadAllowlist() error {
	if err := s.allow.Reload(); err != nil {
		s.metrics.reloadFailures.Inc()
		s.log.Error("allowlist not reloaded; the previous list stays in force", "error", err)
		return err
	}
	s.log.Info("allowlist loaded", "keys", len(s.allow.Keys()))
	return nil
}

// Run reloads the allowlist whenever its file changes or a value arrives
// on hup, and refreshes the tree size metric, until ctx ends.
func (s *Server) Run(ctx context.Context, hup <-chan os.Signal) {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.ReloadAllowlist()
		case <-t.C:
			if s.allow.Changed() {
				s.ReloadAllowlist()
			}
			// The tree size also moves with no submission here (another
			// process of a fleet).
			if cp, err := s.reader.ReadCheckpoint(ctx); err == nil {
				if e, err := s.proofs.get(cp); err == nil {
					s.metrics.treeSize.Set(float64(e.cp.Size))
				}
			}
		}
	}
}

// Close stops accepting submissions, waits (bounded by ctx) until every
// sequenced entry is in a published checkpoint, and stops the log. Later
// calls return the first one's result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.ready.Store(false)
		s.metrics.ready.Set(0)
		s.closeErr = s.shutdown(ctx)
		s.cancel()
	})
	return s.closeErr
}

// fallbackReadTile reads a partial tile, or the first hashes of the full
// tile when the partial one is gone: the log deletes partial tiles once
// the full one is written, and a proof may still be built for a checkpoint
// that was the latest a moment ago.
func fallbackReadTile(read client.TileFetcherFunc) client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		b, err := read(ctx, level, index, p)
		if p == 0 || !errors.Is(err, os.ErrNotExist) {
			return b, err
		}
		full, ferr := read(ctx, level, index, 0)
		if ferr != nil {
			return nil, err
		}
		if len(full) < int(p)*32 {
			return nil, fmt.Errorf("full tile %d/%d has %d bytes, fewer than %d hashes", level, index, len(full), p)
		}
		return full[:int(p)*32], nil
	}
}

// proofCache keeps the proof builder of each of the last few published
// tree sizes.
type proofCache struct {
	readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	policy   tlog.Policy

	mu      sync.Mutex
	entries []*sizeProofs // most recent first
	full    fullTiles
}

const proofCacheSize = 4

type sizeProofs struct {
	signed []byte
	cp     *tlog.Checkpoint
	nodes  *treeNodes
}

// prove returns the tlog-proof of index in the signed checkpoint.
func (c *proofCache) prove(ctx context.Context, signed []byte, index uint64) ([]byte, error) {
	e, err := c.get(signed)
	if err != nil {
		return nil, err
	}
	if index >= e.cp.Size {
		return nil, fmt.Errorf("index %d is not in the checkpoint of size %d", index, e.cp.Size)
	}
	path, err := e.nodes.inclusion(ctx, index)
	if err != nil {
		return nil, err
	}
	return (&tlog.Proof{Index: index, Checkpoint: signed, Path: path}).Marshal(), nil
}

func (c *proofCache) get(signed []byte) (*sizeProofs, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if bytes.Equal(e.signed, signed) {
			return e, nil
		}
	}
	cp, err := c.policy.Open(signed)
	if err != nil {
		return nil, fmt.Errorf("the log's own checkpoint does not open: %w", err)
	}
	e := &sizeProofs{signed: bytes.Clone(signed), cp: cp, nodes: newTreeNodes(cp.Size, c.readTile, &c.full)}
	c.entries = append([]*sizeProofs{e}, c.entries...)
	if len(c.entries) > proofCacheSize {
		c.entries = c.entries[:proofCacheSize]
	}
	return e, nil
}
