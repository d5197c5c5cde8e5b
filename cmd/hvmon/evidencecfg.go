package main

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/spf13/pflag"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// evidenceSettings are the hardware-evidence trust settings that the
// daemon's configuration and the verify commands share.
type evidenceSettings struct {
	allowSimulated bool
	simulatedRoots []string // PEM files
	simulatedSeed  string   // hex
	allowDebug     bool
	amdRoots       string // PEM file
	intelRoots     string // PEM file
}

func settingsFromConfig(c *host.Evidence) evidenceSettings {
	if c == nil {
		return evidenceSettings{}
	}
	return evidenceSettings{allowSimulated: c.AllowSimulated, simulatedRoots: c.SimulatedRoots, simulatedSeed: c.SimulatedSeed,
		allowDebug: c.AllowDebug, amdRoots: c.AMDRoots, intelRoots: c.IntelRoots}
}

// verifier builds the hardware evidence verifier: AMD's and Intel's
// built-in roots unless files replace them; simulated evidence only when
// explicitly allowed, and then only for the given roots.
func (s evidenceSettings) verifier() (attest.EvidenceVerifier, error) {
	opts := evidence.Options{AllowSimulated: s.allowSimulated, AllowDebugUnsafe: s.allowDebug}
	load := func(path string) ([]*x509.Certificate, error) {
		b, err := boundedfile.Read(path, evidence.MaxCertificatesSize)
		if err != nil {
			return nil, err
		}
		return evidence.ParseCertificates(b)
	}
	for _, p := range s.simulatedRoots {
		certs, err := load(p)
		if err != nil {
			return nil, fmt.Errorf("simulated roots %s: %w", p, err)
		}
		opts.SimulatedRoots = append(opts.SimulatedRoots, certs...)
	}
	if s.simulatedSeed != "" {
		seed, err := hex.DecodeString(s.simulatedSeed)
		if err != nil || len(seed) < 16 {
			return nil, fmt.Errorf("simulated seed: want at least 16 bytes of hex")
		}
		roots, err := evidence.SimulatedRoots(seed)
		if err != nil {
			return nil, err
		}
		opts.SimulatedRoots = append(opts.SimulatedRoots, roots...)
	}
	if len(opts.SimulatedRoots) > 0 && !s.allowSimulated {
		return nil, fmt.Errorf("simulated roots given without allowing simulated evidence")
	}
	if s.allowSimulated && len(opts.SimulatedRoots) == 0 {
		return nil, fmt.Errorf("simulated evidence allowed but no simulated roots or seed given")
	}
	var err error
	if s.amdRoots != "" {
		if opts.AMDRoots, err = load(s.amdRoots); err != nil {
			return nil, fmt.Errorf("AMD roots %s: %w", s.amdRoots, err)
		}
	}
	if s.intelRoots != "" {
		if opts.IntelRoots, err = load(s.intelRoots); err != nil {
			return nil, fmt.Errorf("roots for TDX (Intel) %s: %w", s.intelRoots, err)
		}
	}
	return evidence.NewVerifier(opts)
}

// evidenceVerifier builds the daemon's verifier from its configuration.
func evidenceVerifier(c *host.Evidence) (attest.EvidenceVerifier, error) {
	return settingsFromConfig(c).verifier()
}

// flags registers the evidence trust flags of the verify commands.
func (s *evidenceSettings) flags(f *pflag.FlagSet) {
	f.BoolVar(&s.allowSimulated, "allow-simulated", false, "accept SIMULATED hardware evidence chaining to --simulated-roots or --simulated-seed (tests and demos only)")
	f.StringArrayVar(&s.simulatedRoots, "simulated-roots", nil, "PEM `FILE` of simulated roots to trust with --allow-simulated")
	f.StringVar(&s.simulatedSeed, "simulated-seed", "", "`HEX` seed of the simulated chains to trust with --allow-simulated")
	f.BoolVar(&s.allowDebug, "allow-debug", false, "accept hardware evidence of debug guests, whose memory the host can read")
	f.StringVar(&s.amdRoots, "amd-roots", "", "PEM `FILE` of AMD ARK/ASK certificates to pin instead of the built-in ones")
	f.StringVar(&s.intelRoots, "intel-roots", "", "PEM `FILE` of Intel roots to pin instead of the built-in one")
}
