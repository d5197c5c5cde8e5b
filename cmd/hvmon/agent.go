package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/guest"
)

func (a *app) agentCmd() *cobra.Command {
	var (
		configPath string
		port       string
		evidenceTy string
	)
	cmd := &cobra.Command{
		Use:   "agent --config FILE [--port NAME] [--evidence TYPE]",
		Short: "Run the guest agent on a virtio-serial port",
		Long: `Run the guest agent inside a VM.

The agent serves hvmon's agent protocol (docs/AGENT-PROTOCOL.md) on the
virtio-serial port NAME (default org.hvmon.agent.0), found under
/dev/virtio-ports or, without udev, through /sys/class/virtio-ports/*/name.
It generates its ML-DSA-65 guest key in memory at start and never writes it
anywhere. For every attest request it measures the regions of --config,
binds them to hardware evidence through REPORT_DATA, and signs the result.

--evidence (or "evidence" in the config file) chooses the hardware evidence:
sev-snp, tdx, simulated-sev-snp, simulated-tdx, none, or auto (probe for
SEV-SNP or TDX; none when neither exists). Simulated evidence is labelled as
such and verifies only for verifiers told to trust the simulated roots.

The host may disconnect and reconnect at any time. Logs go to stderr (the
guest console or journal). The agent runs until SIGTERM or SIGINT.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := guest.LoadConfig(configPath)
			if err != nil {
				return configErr(err)
			}
			if port == "" {
				port = cfg.Port
			}
			if port == "" {
				port = guest.DefaultPort
			}
			if evidenceTy == "" {
				evidenceTy = cfg.Evidence
			}
			simOpts, err := cfg.SimulatedOptions()
			if err != nil {
				return configErr(err)
			}
			provider, err := a.evidenceProvider(cmd.Context(), evidenceTy, simOpts)
			if err != nil {
				return configErr(fmt.Errorf("--evidence %s: %w", evidenceTy, err))
			}
			ag, err := guest.New(cfg, guest.Options{Logger: a.log.Named("agent"), Provider: provider, Version: cmp.Or(version, "dev")})
			if err != nil {
				return configErr(err)
			}
			return ag.ServePort(cmd.Context(), port)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent configuration `FILE` (JSON; regions to measure) (required)")
	cmd.Flags().StringVar(&port, "port", "", "virtio-serial port `NAME` (default org.hvmon.agent.0)")
	cmd.Flags().StringVar(&evidenceTy, "evidence", "", "hardware evidence `TYPE`: auto, sev-snp, tdx, simulated-sev-snp, simulated-tdx or none")
	cmd.MarkFlagRequired("config")
	return cmd
}

// evidenceProvider returns the provider for a configured evidence type
// ("" means auto); nil means no hardware evidence. A simulated provider
// without a seed gets a fresh chain, whose roots it logs so that a
// verifier can be told to trust them.
func (a *app) evidenceProvider(ctx context.Context, name string, simOpts sim.Options) (evidence.Provider, error) {
	if name == "" {
		name = evidence.NameAuto
	}
	seed := simOpts.Seed
	log := a.log.Named("evidence")
	p, err := evidence.New(ctx, name, evidence.ProviderOptions{Logger: log, Simulated: simOpts})
	if name == evidence.NameAuto && errors.Is(err, evidence.ErrNoHardware) {
		log.Info("no TEE found; guest evidence will carry no hardware evidence", "probe", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sp, ok := p.(evidence.SimulatedProvider); ok {
		log.Warn("SIMULATED hardware evidence: it proves nothing about hardware", "type", p.Type(), "seeded", len(seed) > 0)
		if len(seed) == 0 {
			log.Info("simulated roots (trust them only for tests)", "pem", string(sp.RootsPEM()))
		}
	}
	return p, nil
}
