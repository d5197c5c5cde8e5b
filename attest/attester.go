package attest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"hvmon.dev/hvmon/measure"
)

// pageSize is the only page size of format version 1.
const pageSize = measure.PageSize

// Backend enumerates and snapshots the regions of a workload. Package
// backend has in-memory and file backends, package guest the agent's.
type Backend interface {
	// Name is the platform token recorded in every claim.
	Name() Platform
	// Regions lists the regions of a workload, in a stable order.
	Regions(ctx context.Context, workload string) ([]Region, error)
	// Snapshot measures one region now.
	Snapshot(ctx context.Context, workload string, r Region) (Snapshot, error)
}

// DefaultTTL is the lifetime an Attester gives reports unless told otherwise.
const DefaultTTL = 5 * time.Minute

// NonceSize is the size of the nonces hvmon draws itself.
const NonceSize = 32

// Attester signs reports over the regions a Backend measures.
type Attester struct {
	Signer Signer
	// Name labels the attester identity in reports (optional).
	Name string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of nonces; nil means crypto/rand.
	Rand io.Reader
	// SignOptions are passed to Sign.
	SignOptions *SignOptions
}

// Request is one attestation to make.
type Request struct {
	Workload string
	Event    Event
	Nonce    []byte        // nil: a fresh NonceSize-byte nonce
	TTL      time.Duration // zero: DefaultTTL
	Seq      uint64
	Prev     *Digest
}

// Signed is a signed report with its decoded payload and hash.
type Signed struct {
	Report *Report
	Bytes  []byte // the COSE_Sign1
	Hash   Digest // ReportHash(Bytes)
}

func (a *Attester) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Attest lists the workload's regions, snapshots each, and signs one report.
// A backend failure is returned as a *BackendError; a region the backend
// describes badly as an *InvalidRegionError.
func (a *Attester) Attest(ctx context.Context, b Backend, req Request) (*Signed, error) {
	if a.Signer == nil {
		return nil, fmt.Errorf("attester has no signer")
	}
	if !req.Event.Valid() {
		return nil, fmt.Errorf("unknown event %q", req.Event)
	}
	nonce := req.Nonce
	if nonce == nil {
		nonce = make([]byte, NonceSize)
		r := a.Rand
		if r == nil {
			r = rand.Reader
		}
		if _, err := io.ReadFull(r, nonce); err != nil {
			return nil, fmt.Errorf("drawing nonce: %w", err)
		}
	}
	regions, err := b.Regions(ctx, req.Workload)
	if err != nil {
		return nil, &BackendError{Backend: string(b.Name()), Op: "regions", Err: err}
	}
	claims := make([]Claim, 0, len(regions))
	for _, r := range regions {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		s, err := b.Snapshot(ctx, req.Workload, r)
		if err != nil {
			return nil, &BackendError{Backend: string(b.Name()), Op: "snapshot", Region: r.ID, Err: err}
		}
		s.TakenAt = s.TakenAt.Truncate(time.Second).UTC()
		if r.Size == 0 {
			r.Size = s.Size
		}
		claims = append(claims, Claim{Region: r, Snapshot: s, Workload: req.Workload, Platform: b.Name()})
	}
	now := a.now().Truncate(time.Second).UTC()
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	rep := &Report{
		IssuedAt: now, ExpiresAt: now.Add(ttl).Truncate(time.Second), Nonce: nonce,
		Event: req.Event, Workload: req.Workload, Platform: b.Name(),
		Attester: Identity{Name: a.Name}, Seq: req.Seq, Prev: req.Prev, Claims: claims,
	}
	out, err := Sign(a.Signer, rep, a.SignOptions)
	if err != nil {
		return nil, err
	}
	return &Signed{Report: rep, Bytes: out, Hash: ReportHash(out)}, nil
}

// ContinuousAttester attests a workload at a fixed interval and chains its
// reports: seq counts up from 0 and prev is the hash of the previous report.
// Expected values belong to verifiers, so it has none.
type ContinuousAttester struct {
	Attester *Attester
	Backend  Backend
	Workload string
	Interval time.Duration
	// Event of each report; zero means EventPeriodic.
	Event Event
	// TTL of each report; zero means DefaultTTL.
	TTL time.Duration
	// OnReport receives every report; an error from it stops Run.
	OnReport func(*Signed) error
	// OnError receives every attestation failure; returning nil keeps Run
	// going, returning an error stops it. Nil stops Run at the first failure.
	OnError func(error) error

	seq  uint64
	prev *Digest
}

// AttestOnce makes one report and advances the chain.
func (c *ContinuousAttester) AttestOnce(ctx context.Context) (*Signed, error) {
	ev := c.Event
	if ev == "" {
		ev = EventPeriodic
	}
	s, err := c.Attester.Attest(ctx, c.Backend, Request{Workload: c.Workload, Event: ev, TTL: c.TTL, Seq: c.seq, Prev: c.prev})
	if err != nil {
		return nil, err
	}
	c.seq++
	h := s.Hash
	c.prev = &h
	return s, nil
}

// Run attests at once and then every Interval until ctx ends, when it
// returns nil. It returns early with the error of OnReport, or of a failed
// attestation that OnError does not absorb.
func (c *ContinuousAttester) Run(ctx context.Context) error {
	if c.Interval <= 0 {
		return fmt.Errorf("continuous attester: interval must be positive, got %s", c.Interval)
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		s, err := c.AttestOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && c.OnError == nil:
			return err
		case err != nil:
			if err := c.OnError(err); err != nil {
				return err
			}
		case c.OnReport != nil:
			if err := c.OnReport(s); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
