// Package guest is hvmon's guest agent: it serves the agentproto protocol on
// a virtio-serial port, measures its configured regions, binds them to
// hardware evidence through REPORT_DATA, and signs guest evidence with a key
// that it generates at start and never writes anywhere.
package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

// Options configure an Agent. The zero value is usable: a fresh key, no
// hardware evidence, time.Now, a null logger.
type Options struct {
	Logger hclog.Logger
	// Provider gets hardware evidence; nil means platform "none".
	Provider evidence.Provider
	// Key is the guest signing key; nil generates one in memory.
	Key *attest.PrivateKey
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is reported in hello.
	Version string
}

// Agent answers attestation requests. Its seq and prev live in its memory
// only, so they travel with the VM through migration and snapshots.
type Agent struct {
	log      hclog.Logger
	provider evidence.Provider
	key      *attest.PrivateKey
	now      func() time.Time
	version  string
	regions  []source

	mu   sync.Mutex // serialises attestations: seq and prev
	seq  uint64
	prev *attest.Digest
}

// source measures one configured region.
type source struct {
	region  attest.Region
	measure func(ctx context.Context) (measurement, error)
}

// measurement is one region's snapshot data.
type measurement struct {
	root    measure.Digest
	size    uint64
	mode    measure.Mode
	changed []measure.PageRange
}

// New builds an agent from a validated configuration.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{log: opts.Logger, provider: opts.Provider, key: opts.Key, now: opts.Now, version: opts.Version}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.version == "" {
		a.version = "dev"
	}
	if a.key == nil {
		k, err := attest.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		a.key = k
	}
	for _, rc := range cfg.Regions {
		s, err := newSource(rc)
		if err != nil {
			return nil, err
		}
		a.regions = append(a.regions, s)
	}
	return a, nil
}

func newSource(rc RegionConfig) (source, error) {
	r := attest.Region{ID: rc.ID, Description: rc.Description, Protection: rc.Protection}
	switch {
	case rc.File != "":
		off := uint64(rc.Offset)
		r.Address, r.Size, r.Source = &off, uint64(rc.Size), "file:"+rc.File
		var last *measure.Tree
		return source{region: r, measure: func(ctx context.Context) (measurement, error) {
			t, err := measureFile(ctx, rc.File, rc.Offset, rc.Size)
			if err != nil {
				return measurement{}, err
			}
			m := measurement{root: t.Root(), size: uint64(t.Size()), mode: measure.ModeFull}
			if last != nil {
				m.changed = measure.Diff(last.Leaves(), t.Leaves())
			}
			last = t
			return m, nil
		}}, nil
	case rc.Memory != nil:
		buf := make([]byte, rc.Memory.Size)
		for i := range buf {
			buf[i] = rc.Memory.Fill
		}
		r.Size, r.Source = uint64(len(buf)), "agent-memory"
		return source{region: r, measure: func(ctx context.Context) (measurement, error) {
			root, err := measure.Root(ctx, measure.Memory(buf), nil)
			return measurement{root: root, size: uint64(len(buf)), mode: measure.ModeFull}, err
		}}, nil
	default:
		ps := &processSource{cfg: *rc.Process}
		r.Source = ps.describe()
		return source{region: r, measure: ps.measure}, nil
	}
}

// measureFile measures size bytes of path from off (size 0: to the end).
// Only a regular file is measured: a FIFO or a device would hang the agent.
func measureFile(ctx context.Context, path string, off, size int64) (*measure.Tree, error) {
	src, err := fileregion.Open(path, off, size)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return measure.Measure(ctx, src, nil)
}

// KeyID is the id of the agent's guest key.
func (a *Agent) KeyID() attest.Digest { return a.key.KeyID() }

func (a *Agent) platform() attest.Platform {
	if a.provider == nil {
		return "none"
	}
	return a.provider.Type()
}

// Hello describes the agent.
func (a *Agent) Hello() *agentproto.HelloResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &agentproto.HelloResult{
		Protocol: agentproto.Version, Version: a.version, Platform: a.platform(), KeyID: a.key.KeyID(),
		Capabilities: []string{agentproto.OpSync, agentproto.OpHello, agentproto.OpRegions, agentproto.OpAttest},
		Seq:          a.seq,
	}
}

// Regions lists the configured regions.
func (a *Agent) Regions() []attest.Region {
	out := make([]attest.Region, len(a.regions))
	for i, s := range a.regions {
		out[i] = s.region
	}
	return out
}

// requestError is an attestation failure with its protocol error code.
type requestError struct {
	code string
	err  error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// Attest measures the selected regions, binds them to hardware evidence and
// signs guest evidence. It advances seq and prev only when it succeeds.
func (a *Agent) Attest(ctx context.Context, args agentproto.AttestArgs) (*agentproto.AttestResult, error) {
	if err := checkAttestArgs(args); err != nil {
		return nil, &requestError{agentproto.CodeBadArgs, err}
	}
	selected := a.regions
	if len(args.Regions) > 0 {
		selected = nil
		for _, id := range args.Regions {
			i := slices.IndexFunc(a.regions, func(s source) bool { return s.region.ID == id })
			if i < 0 {
				return nil, &requestError{agentproto.CodeBadArgs, fmt.Errorf("unknown region %q", id)}
			}
			if !slices.ContainsFunc(selected, func(s source) bool { return s.region.ID == id }) {
				selected = append(selected, a.regions[i])
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	platform := a.platform()
	claims := make([]attest.Claim, 0, len(selected))
	for _, s := range selected {
		taken := a.now().Truncate(time.Second).UTC()
		m, err := s.measure(ctx)
		if err != nil {
			return nil, &requestError{agentproto.CodeMeasure, fmt.Errorf("region %q: %w", s.region.ID, err)}
		}
		r := s.region
		r.Size = m.size
		changed := clip(m.changed, measure.Pages(int64(m.size)))
		if len(changed) > attest.MaxChangedRanges {
			changed = nil // too scattered to list: the root says it changed
		}
		claims = append(claims, attest.Claim{
			Region: r,
			Snapshot: attest.Snapshot{RegionID: r.ID, Root: m.root, Size: m.size, TakenAt: taken, PageSize: measure.PageSize,
				Mode: string(m.mode), Changed: changed},
			Workload: args.VM, Platform: platform,
		})
	}
	g := &attest.GuestEvidence{
		IssuedAt: a.now().Truncate(time.Second).UTC(), Nonce: args.Nonce, Event: args.Event, VM: args.VM,
		Platform: platform, Claims: claims, GuestKey: a.key.PublicKey().Bytes(), Seq: a.seq, Prev: a.prev,
	}
	measured := time.Now()
	if a.provider != nil {
		rd, err := attest.GuestReportData(g)
		if err != nil {
			return nil, &requestError{agentproto.CodeInternal, err}
		}
		hw, err := a.provider.Evidence(ctx, rd)
		if err != nil {
			return nil, &requestError{agentproto.CodeEvidence, err}
		}
		g.Hardware = hw
	}
	evidenced := time.Now()
	signed, err := attest.SignGuestEvidence(a.key, g, nil)
	if err != nil {
		return nil, &requestError{agentproto.CodeInternal, err}
	}
	signedAt := time.Now()
	h := attest.ReportHash(signed)
	res := &agentproto.AttestResult{Evidence: signed, Hash: h, Seq: a.seq}
	a.seq++
	a.prev = &h
	a.log.Info("attested", "event", args.Event, "vm", args.VM, "seq", res.Seq, "regions", len(claims), "hash", h.String(),
		"measure_us", measured.Sub(start).Microseconds(), "evidence_us", evidenced.Sub(measured).Microseconds(),
		"sign_us", signedAt.Sub(evidenced).Microseconds())
	return res, nil
}

// clip keeps the changed ranges inside a region of n pages (pages that no
// longer exist show as a smaller size).
func clip(rs []measure.PageRange, n int64) []measure.PageRange {
	var out []measure.PageRange
	for _, r := range rs {
		if r.First >= n {
			break
		}
		r.Last = min(r.Last, n-1)
		out = append(out, r)
	}
	return out
}

func checkAttestArgs(args agentproto.AttestArgs) error {
	switch {
	case len(args.Nonce) < 8 || len(args.Nonce) > 64:
		return fmt.Errorf("nonce must be 8 to 64 bytes, got %d", len(args.Nonce))
	case !args.Event.Valid():
		return fmt.Errorf("unknown event %q", args.Event)
	case !attest.ValidVMName(args.VM):
		return fmt.Errorf("vm %+q: a VM name must match %s", args.VM, attest.VMNameRule)
	case len(args.Regions) > agentproto.MaxRegionSelector:
		return fmt.Errorf("more than %d regions selected", agentproto.MaxRegionSelector)
	}
	return nil
}

// Handle answers one request line. It never fails: every problem becomes
// an error response.
func (a *Agent) Handle(ctx context.Context, line []byte) *agentproto.Response {
	req, err := agentproto.DecodeRequest(line)
	if err != nil {
		return agentproto.ErrorResponse(0, agentproto.CodeMalformed, "%v", err)
	}
	var result any
	switch req.Op {
	case agentproto.OpSync:
		var args agentproto.SyncArgs
		if err := agentproto.DecodeArgs(req.Args, &args); err != nil {
			return agentproto.ErrorResponse(req.ID, agentproto.CodeMalformed, "sync args: %v", err)
		}
		result = agentproto.SyncResult(args)
	case agentproto.OpHello, agentproto.OpRegions:
		var none struct{}
		if err := agentproto.DecodeArgs(req.Args, &none); err != nil {
			return agentproto.ErrorResponse(req.ID, agentproto.CodeMalformed, "%s takes no arguments: %v", req.Op, err)
		}
		if req.Op == agentproto.OpHello {
			result = a.Hello()
		} else {
			result = agentproto.RegionsResult{Regions: a.Regions()}
		}
	case agentproto.OpAttest:
		var args agentproto.AttestArgs
		if err := agentproto.DecodeArgs(req.Args, &args); err != nil {
			return agentproto.ErrorResponse(req.ID, agentproto.CodeMalformed, "attest args: %v", err)
		}
		res, err := a.Attest(ctx, args)
		if err != nil {
			code := agentproto.CodeInternal
			var re *requestError
			if errors.As(err, &re) {
				code = re.code
			}
			a.log.Warn("attest failed", "code", code, "error", err)
			return agentproto.ErrorResponse(req.ID, code, "%v", err)
		}
		result = res
	default:
		return agentproto.ErrorResponse(req.ID, agentproto.CodeUnknownOp, "unknown op %q", req.Op)
	}
	resp, err := agentproto.ResultResponse(req.ID, result)
	if err != nil {
		return agentproto.ErrorResponse(req.ID, agentproto.CodeInternal, "%v", err)
	}
	return resp
}

// Serve answers requests read from rw until it reports an error (io.EOF
// when the host side closed) or ctx ends. Empty lines are skipped (a host
// starts every session with one).
func (a *Agent) Serve(ctx context.Context, rw io.ReadWriter) error {
	lines := agentproto.NewLineReader(rw, agentproto.MaxLine)
	for ctx.Err() == nil {
		line, err := lines.ReadLine()
		var resp *agentproto.Response
		switch {
		case errors.Is(err, agentproto.ErrTooLarge):
			resp = agentproto.ErrorResponse(0, agentproto.CodeTooLarge, "message longer than %d bytes", agentproto.MaxLine)
		case errors.Is(err, io.ErrUnexpectedEOF):
			a.log.Debug("dropped a partial line at end of stream")
			return io.EOF
		case err != nil:
			return err
		case len(line) == 0:
			continue
		default:
			resp = a.Handle(ctx, line)
		}
		out, err := agentproto.EncodeLine(resp)
		if err != nil {
			out, _ = agentproto.EncodeLine(agentproto.ErrorResponse(resp.ID, agentproto.CodeInternal, "response too large"))
		}
		if _, err := rw.Write(out); err != nil {
			return err
		}
	}
	return ctx.Err()
}
