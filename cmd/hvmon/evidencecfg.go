package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tee"
)

// evidenceSettings are the hardware-evidence trust settings that the
// daemon's configuration (its evidence block) and the verify commands'
// flags share, as they write them: file paths and a hex seed. trust reads
// them into the tee.Trust that a policy's hardware_roots block fills too.
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

// trust reads the files the settings name (regular files of at most
// evidence.MaxCertificatesSize bytes) and decodes the seed.
func (s evidenceSettings) trust() (tee.Trust, error) {
	t := tee.Trust{AllowSimulated: s.allowSimulated, AllowDebugUnsafe: s.allowDebug}
	var err error
	if t.SimulatedRoots, err = readTrustFiles("simulated roots", s.simulatedRoots...); err != nil {
		return t, err
	}
	if s.simulatedSeed != "" {
		if t.SimulatedSeed, err = tee.ParseSimulatedSeed(s.simulatedSeed); err != nil {
			return t, fmt.Errorf("simulated seed: %w", err)
		}
	}
	if s.amdRoots != "" {
		if t.AMDRoots, err = readTrustFiles("AMD roots", s.amdRoots); err != nil {
			return t, err
		}
	}
	if s.intelRoots != "" {
		if t.IntelRoots, err = readTrustFiles("Intel roots", s.intelRoots); err != nil {
			return t, err
		}
	}
	return t, nil
}

// readTrustFiles reads certificate files for a tee.Trust.
func readTrustFiles(what string, paths ...string) ([]tee.File, error) {
	var out []tee.File
	for _, p := range paths {
		b, err := boundedfile.Read(p, evidence.MaxCertificatesSize)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, p, err)
		}
		out = append(out, tee.File{Name: p, Data: b})
	}
	return out, nil
}

// verifier builds the hardware evidence verifier: AMD's and Intel's
// built-in roots unless files replace them; simulated evidence only when
// explicitly allowed, and then only for the given roots.
func (s evidenceSettings) verifier() (attest.EvidenceVerifier, error) {
	t, err := s.trust()
	if err != nil {
		return nil, err
	}
	opts, err := evidence.TrustOptions(t)
	if err != nil {
		return nil, err
	}
	v, err := evidence.NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v, nil
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
