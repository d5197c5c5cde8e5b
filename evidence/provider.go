package evidence

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

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

// ProviderNames returns the names New accepts, in a new slice: the
// evidence types (attest.HardwarePlatforms), then NameAuto and NameNone.
func ProviderNames() []string {
	var out []string
	for _, p := range attest.HardwarePlatforms() {
		out = append(out, string(p))
	}
	return append(out, NameAuto, NameNone)
}

// New returns the provider a configuration names (ProviderNames): an
// evidence type, "auto" (Probe), or "none" (a nil Provider and no error:
// guest evidence without hardware evidence). Real providers check that
// their guest interface is present.
func New(ctx context.Context, name string, opts ProviderOptions) (Provider, error) {
	switch name {
	case NameNone:
		return nil, nil
	case NameAuto:
		return Probe(ctx, opts)
	}
	t := attest.Platform(name)
	k, ok := kinds[t]
	if !ok {
		return nil, fmt.Errorf("evidence provider %q: want %s", name, orList(ProviderNames()))
	}
	if t.Simulated() {
		return k.simulated(opts.Simulated)
	}
	return k.provider(hostOS, opts)
}

// Probe returns the provider for the TEE this guest runs in, found by the
// provider name of configfs-tsm (Linux 6.7 and later), then by the guest
// device nodes (/dev/sev-guest, /dev/tdx_guest). It never returns a
// simulated provider; with no TEE it fails with ErrNoHardware.
func Probe(ctx context.Context, opts ProviderOptions) (Provider, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return probe(hostOS, opts)
}

func probe(g guestOS, opts ProviderOptions) (Provider, error) {
	t, how, err := g.detect()
	if err != nil {
		return nil, err
	}
	opts.logger().Info("TEE detected", "type", t, "by", how)
	return kinds[t].provider(g, opts)
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

// SimulatedRoots derives from a seed the roots of every simulated provider,
// for a verifier whose agents were configured with the same
// sim.Options.Seed. (It generates the chains, which takes a moment.)
func SimulatedRoots(seed []byte) ([]*x509.Certificate, error) {
	if len(seed) == 0 {
		return nil, errors.New("SimulatedRoots: empty seed")
	}
	var roots []*x509.Certificate
	for _, t := range attest.HardwarePlatforms() {
		if !t.Simulated() {
			continue
		}
		p, err := kinds[t].simulated(sim.Options{Seed: seed})
		if err != nil {
			return nil, err
		}
		roots = append(roots, p.Roots()...)
	}
	return roots, nil
}
