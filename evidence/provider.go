package evidence

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
)

// ProviderOptions configure the providers New and Probe return.
type ProviderOptions struct {
	// Logger receives the providers' logs; nil discards them.
	Logger hclog.Logger
	// SNPCertificate is the VCEK or VLEK certificate (DER or PEM) to ship
	// with SEV-SNP reports when the platform hands out none (a host that
	// sets no certificate table). Without either, SEV-SNP evidence fails
	// with ErrNoCertificate, since nobody could verify it offline.
	SNPCertificate []byte
	// Simulated configures the simulated providers. With a Seed, a
	// verifier derives the same roots (SimulatedRoots).
	Simulated sim.Options
}

func (o ProviderOptions) logger() hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger
}

// Names New accepts besides the evidence types.
const (
	NameNone = "none" // no hardware evidence: New returns a nil Provider
	NameAuto = "auto" // Probe
)

// New returns the provider a configuration names: "sev-snp", "tdx",
// "simulated-sev-snp", "simulated-tdx", "auto" (Probe), or "none" (a nil
// Provider and no error: guest evidence without hardware evidence). Real
// providers check that their guest interface is present.
func New(ctx context.Context, name string, opts ProviderOptions) (Provider, error) {
	switch attest.Platform(name) {
	case NameNone:
		return nil, nil
	case NameAuto:
		return Probe(ctx, opts)
	case TypeSEVSNP:
		return newSNPProvider(hostPlatform, opts)
	case TypeTDX:
		return newTDXProvider(hostPlatform, opts)
	case TypeSimulatedSEVSNP:
		return NewSimulatedSNP(opts.Simulated)
	case TypeSimulatedTDX:
		return NewSimulatedTDX(opts.Simulated)
	}
	return nil, fmt.Errorf("evidence provider %q: want sev-snp, tdx, simulated-sev-snp, simulated-tdx, auto or none", name)
}

// Probe returns the provider for the TEE this guest runs in: SEV-SNP or
// TDX, found by the provider name of configfs-tsm (Linux 6.7 and later),
// then by /dev/sev-guest and /dev/tdx_guest. It never returns a simulated
// provider; with no TEE it fails with ErrNoHardware.
func Probe(ctx context.Context, opts ProviderOptions) (Provider, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return probe(hostPlatform, opts)
}

func probe(p platform, opts ProviderOptions) (Provider, error) {
	t, how, err := p.detect()
	if err != nil {
		return nil, err
	}
	opts.logger().Info("TEE detected", "type", t, "by", how)
	if t == TypeSEVSNP {
		return newSNPProvider(p, opts)
	}
	return newTDXProvider(p, opts)
}

// SimulatedProvider is a Provider whose evidence chains to generated roots.
// A verifier accepts its evidence only with Options.AllowSimulated and
// these roots in Options.SimulatedRoots.
type SimulatedProvider interface {
	Provider
	// Roots returns the simulated roots to pin.
	Roots() []*x509.Certificate
	// RootsPEM returns Roots as PEM.
	RootsPEM() []byte
}

// SimulatedSNP is the simulated-sev-snp provider.
type SimulatedSNP struct{ s *sim.SNP }

// NewSimulatedSNP returns a provider of simulated SEV-SNP evidence: real
// report structures (non-debug policy unless opts.Debug) signed by a
// generated AMD-style chain, shipped with its VCEK, ASK and ARK.
func NewSimulatedSNP(opts sim.Options) (*SimulatedSNP, error) {
	s, err := sim.NewSNP(opts)
	if err != nil {
		return nil, err
	}
	return &SimulatedSNP{s}, nil
}

// Type implements Provider.
func (p *SimulatedSNP) Type() attest.Platform { return TypeSimulatedSEVSNP }

// Evidence implements Provider.
func (p *SimulatedSNP) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := p.s.Report(reportData)
	if err != nil {
		return nil, err
	}
	hw := &attest.HardwareEvidence{Type: TypeSimulatedSEVSNP, Report: r}
	for _, c := range p.s.Chain() {
		hw.Certs = append(hw.Certs, c)
	}
	return hw, nil
}

// Roots implements SimulatedProvider.
func (p *SimulatedSNP) Roots() []*x509.Certificate { return p.s.Roots() }

// RootsPEM implements SimulatedProvider.
func (p *SimulatedSNP) RootsPEM() []byte { return p.s.RootsPEM() }

// SimulatedTDX is the simulated-tdx provider.
type SimulatedTDX struct{ t *sim.TDX }

// NewSimulatedTDX returns a provider of simulated TDX evidence: quote v4
// structures (TD_ATTRIBUTES without DEBUG unless opts.Debug) whose PCK
// chain ends in a generated Intel-style root.
func NewSimulatedTDX(opts sim.Options) (*SimulatedTDX, error) {
	t, err := sim.NewTDX(opts)
	if err != nil {
		return nil, err
	}
	return &SimulatedTDX{t}, nil
}

// Type implements Provider.
func (p *SimulatedTDX) Type() attest.Platform { return TypeSimulatedTDX }

// Evidence implements Provider.
func (p *SimulatedTDX) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := p.t.Quote(reportData)
	if err != nil {
		return nil, err
	}
	return &attest.HardwareEvidence{Type: TypeSimulatedTDX, Report: q}, nil
}

// Roots implements SimulatedProvider.
func (p *SimulatedTDX) Roots() []*x509.Certificate { return []*x509.Certificate{p.t.Root()} }

// RootsPEM implements SimulatedProvider.
func (p *SimulatedTDX) RootsPEM() []byte { return p.t.RootPEM() }

// SimulatedRoots derives the roots of both simulated providers from a
// seed, for a verifier whose agents were configured with the same
// sim.Options.Seed. (It generates the chains, which takes a moment.)
func SimulatedRoots(seed []byte) ([]*x509.Certificate, error) {
	if len(seed) == 0 {
		return nil, errors.New("SimulatedRoots: empty seed")
	}
	s, err := NewSimulatedSNP(sim.Options{Seed: seed})
	if err != nil {
		return nil, err
	}
	t, err := NewSimulatedTDX(sim.Options{Seed: seed})
	if err != nil {
		return nil, err
	}
	return slices.Concat(s.Roots(), t.Roots()), nil
}
