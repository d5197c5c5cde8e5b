package demo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/logmon"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// The demo's transparency log. Its key comes from a fixed, public seed:
// the demo's log proves nothing about the machine it ran on, it shows the
// mechanism, and anyone can check its files with the printed verifier key.
const (
	// LogOrigin is the demo log's origin (the first line of its
	// checkpoints and its key's name).
	LogOrigin = "demo.hvmon.dev/log"
	// LogLabel labels the hosts' log block: each host keeps its proofs
	// as <base>.demo.proof beside its reports.
	LogLabel = "demo"
	// LogCheckpointInterval is how often the demo log publishes a
	// checkpoint.
	LogCheckpointInterval = time.Second
	// DefaultLogWait bounds the wait, after the lifecycle, for the proofs
	// of the reports stored last.
	DefaultLogWait = time.Minute
)

// LogSeed is the seed of the demo log's ML-DSA-44 key:
// SHA-256("hvmon demo log key v1").
func LogSeed() [32]byte { return sha256.Sum256([]byte("hvmon demo log key v1")) }

// LogKey is the demo log's key, derived from LogSeed.
func LogKey() (*tlog.PrivateKey, error) { return tlog.NewKeyFromSeed(LogOrigin, LogSeed()) }

// LogServer is a running demo log.
type LogServer struct {
	// URL is where hosts submit reports (URL/v1/add) and read the tiles.
	URL string
	// VKey is the log's verifier key.
	VKey string
	// Stop stops the log once what it sequenced is published.
	Stop func(context.Context) error
}

// LogStarter starts the demo's log with its tiles in dir (the tlog-tiles
// layout, dir/checkpoint included), accepting reports signed by the host
// keys. hvmon demo passes an in-process log server; this package does not
// link one (internal/deptest).
type LogStarter func(ctx context.Context, dir string, hosts []*attest.PublicKey) (*LogServer, error)

// LogResult is what the demo's log holds after a run, checked.
type LogResult struct {
	// Dir is the log's directory; VKey its verifier key.
	Dir, VKey string
	// Checkpoint is the log's final checkpoint, opened with its key.
	Checkpoint *tlog.Checkpoint
	// Proofs is the number of report proofs verified (tlog.VerifyProof).
	Proofs int
	// Audit is the log monitor's run over Dir with the stores of both
	// hosts (logmon.Audit); AuditErr its failure, if the log failed.
	Audit    *logmon.Result
	AuditErr error
}

// logSession runs the demo's log and an outbox per host that submits the
// host's stored reports to it.
type logSession struct {
	srv    *LogServer
	dir    string
	work   string
	policy tlog.Policy
	log    hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stores map[string]*host.FileStore
}

// startLog starts the log in dir and returns the session that attaches
// hosts to it. work keeps the outboxes' state.
func startLog(ctx context.Context, start LogStarter, dir, work string, hosts []*attest.PublicKey, log hclog.Logger) (*logSession, error) {
	srv, err := start(ctx, dir, hosts)
	if err != nil {
		return nil, fmt.Errorf("starting the log: %w", err)
	}
	lv, err := tlog.LogVerifier(srv.VKey)
	if err != nil {
		srv.Stop(context.Background())
		return nil, fmt.Errorf("the log's verifier key: %w", err)
	}
	s := &logSession{srv: srv, dir: dir, work: work, policy: tlog.Policy{Log: lv}, log: log, stores: map[string]*host.FileStore{}}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return s, nil
}

// attach starts an outbox that submits every report of the host's store
// to the log, and returns the hook the host's supervisor calls after
// storing one.
func (s *logSession) attach(name string, store *host.FileStore) (func(host.Entry), error) {
	ob, err := host.NewOutbox(host.OutboxOptions{Store: store, Dir: filepath.Join(s.work, "outbox-"+name), Logger: s.log.Named(name),
		Logs: []host.LogConfig{{Label: LogLabel, URL: s.srv.URL, Policy: s.policy, MinBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}}})
	if err != nil {
		return nil, err
	}
	s.stores[name] = store
	s.wg.Go(func() { ob.Run(s.ctx) })
	return ob.Kick, nil
}

// close stops the outboxes and the log.
func (s *logSession) close(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.cancel = nil
	return s.srv.Stop(ctx)
}

// waitProofs waits, up to wait, until every report of every attached
// store has a proof from the log. A report the log refused ends the wait
// at once.
func (s *logSession) waitProofs(ctx context.Context, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		var pending []string
		total := 0
		for _, name := range slices.Sorted(maps.Keys(s.stores)) {
			store := s.stores[name]
			es, err := store.List(ctx, host.Query{})
			if err != nil {
				return err
			}
			for _, e := range es {
				total++
				st, err := store.LogState(e, LogLabel)
				if err != nil {
					return err
				}
				switch st.State {
				case host.LogRefused:
					return fmt.Errorf("the log refused %s's %s report (host seq %d) with status %d: see %s", name, e.Event, e.Seq, st.Status, store.RefusedPath(e, LogLabel))
				case host.LogPending:
					pending = append(pending, fmt.Sprintf("%s %s (host seq %d)", name, e.Event, e.Seq))
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %s for the log's proofs: %d of %d stored reports have none: %s (the hosts' log lines say why)",
				wait, len(pending), total, strings.Join(pending, ", "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// finish waits for every proof, stops the outboxes and the log, verifies
// each report's proof, attaches it to the report, and runs the log
// monitor over the log's directory with the hosts' stores.
func (s *logSession) finish(ctx context.Context, wait time.Duration, reports []Report, verify attest.VerifyOptions) (*LogResult, error) {
	if err := s.waitProofs(ctx, wait); err != nil {
		return nil, err
	}
	if err := s.close(ctx); err != nil {
		return nil, fmt.Errorf("stopping the log: %w", err)
	}
	out := &LogResult{Dir: s.dir, VKey: s.srv.VKey}
	r := tlogclient.DirReader{Root: s.dir}
	signed, err := r.ReadCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if out.Checkpoint, err = s.policy.Open(signed); err != nil {
		return nil, fmt.Errorf("the log's checkpoint: %w", err)
	}
	for i := range reports {
		rep := &reports[i]
		store := s.stores[rep.Host]
		if store == nil {
			return nil, fmt.Errorf("report %d: no store for host %s", i+1, rep.Host)
		}
		proof, err := store.Proof(rep.Entry, LogLabel)
		if err != nil {
			return nil, fmt.Errorf("%s's %s report (host seq %d): %w", rep.Host, rep.Entry.Event, rep.Entry.Seq, err)
		}
		cp, idx, err := tlog.VerifyProof(s.policy, rep.Signed, proof)
		if err != nil {
			return nil, fmt.Errorf("%s's %s report (host seq %d): its proof: %w", rep.Host, rep.Entry.Event, rep.Entry.Seq, err)
		}
		if cp.Size > out.Checkpoint.Size {
			return nil, fmt.Errorf("%s's %s report: proven in a checkpoint of size %d, larger than the log's %d", rep.Host, rep.Entry.Event, cp.Size, out.Checkpoint.Size)
		}
		rep.Proof, rep.LogIndex = proof, idx
		out.Proofs++
	}
	o := logmon.Options{Reader: r, Policy: s.policy, Verify: verify}
	for _, name := range slices.Sorted(maps.Keys(s.stores)) {
		o.Stores = append(o.Stores, storeView{name: name, s: s.stores[name]})
	}
	out.Audit, out.AuditErr = logmon.Audit(ctx, &logmon.State{}, o)
	if out.AuditErr != nil && !errors.Is(out.AuditErr, logmon.ErrLog) {
		return nil, fmt.Errorf("the log monitor: %w", out.AuditErr)
	}
	return out, nil
}

// storeView is a host's store as the log monitor reads it: its reports
// and the proofs it received from the demo log.
type storeView struct {
	name string
	s    *host.FileStore
}

func (v storeView) Name() string { return v.name }

func (v storeView) Reports(ctx context.Context) ([][]byte, error) {
	es, err := v.s.List(ctx, host.Query{})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(es))
	for _, e := range es {
		b, err := boundedfile.Read(e.Path, attest.MaxReportSize)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (v storeView) Proofs(ctx context.Context) (map[string][]byte, error) {
	es, err := v.s.List(ctx, host.Query{})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range es {
		b, err := v.s.Proof(e, LogLabel)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[filepath.Base(v.s.ProofPath(e, LogLabel))] = b
	}
	return out, nil
}
