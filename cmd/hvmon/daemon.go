package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/keyfile"
)

func (a *app) daemonCmd() *cobra.Command {
	var (
		configPath, dataDir, apiSocket, metrics string
		unsafeKey                               bool
	)
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Run the host supervisor in the foreground",
		Long: `Run the host supervisor in the foreground until SIGTERM or SIGINT.

It follows the VMs of the configuration file (HCL; see contrib/hvmon.hcl)
and of its watch_dir over QMP, turns their lifecycle events (boot,
migrate-out, migrate-in, snapshot, restore, shutdown, and periodic ones)
into attestation requests to each guest's agent, and signs one combined
report per event with the host key. Reports are stored durably under
data_dir; the local API (api_socket) lists VMs, triggers on-demand reports
and serves stored ones; Prometheus metrics are served on metrics_listen.

--data-dir, --api-socket and --metrics-listen override the file.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := boundedfile.Read(configPath, host.MaxConfigSize)
			if err != nil {
				return configErr(err)
			}
			cfg, err := host.ParseConfig(src, configPath)
			if err != nil {
				return configErr(err)
			}
			for _, o := range []struct {
				flag, value string
				dst         *string
			}{
				{"data-dir", dataDir, &cfg.DataDir}, {"api-socket", apiSocket, &cfg.APISocket}, {"metrics-listen", metrics, &cfg.MetricsListen},
			} {
				if cmd.Flags().Changed(o.flag) {
					*o.dst = o.value
				}
			}
			return a.runDaemon(cmd.Context(), cfg, unsafeKey)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "/etc/hvmon/hvmon.hcl", "configuration `FILE` (HCL)")
	f.StringVar(&dataDir, "data-dir", "", "report store `DIR`")
	f.StringVar(&apiSocket, "api-socket", "", "local API unix socket `PATH`")
	f.StringVar(&metrics, "metrics-listen", "", "metrics `ADDR` (host:port; \"off\" disables)")
	f.BoolVar(&unsafeKey, "unsafe-key-permissions", false, "accept a host key file that group or others can access")
	return cmd
}

func (a *app) runDaemon(ctx context.Context, cfg *host.Config, unsafeKey bool) error {
	log := a.log.Named("daemon")
	// One daemon per data directory, decided before anything else is
	// touched: a second one must not take the first's API socket, sign
	// into its chains or follow its VMs.
	lock, err := host.LockDataDir(cfg.DataDir)
	if err != nil {
		return configErr(err)
	}
	defer lock.Close()
	key, err := keyfile.LoadPrivate(cfg.Key, keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: unsafeKey})
	if err != nil {
		return configErr(fmt.Errorf("host key: %w", err))
	}
	store, err := host.NewFileStore(cfg.DataDir)
	if err != nil {
		return configErr(fmt.Errorf("data dir: %w", err))
	}
	verifier, err := evidenceVerifier(cfg.Evidence)
	if err != nil {
		return configErr(fmt.Errorf("evidence: %w", err))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ttl, agentTimeout, _ := cfg.Durations()
	hostName := cfg.HostName
	if hostName == "" {
		hostName, _ = os.Hostname()
	}
	hooks, journal, err := newHookService(cfg, key, store, verifier, reg, log.Named("hook"))
	if err != nil {
		return err
	}
	defer journal.Close()
	metrics := host.NewMetrics(reg)
	logs, err := cfg.LogConfigs()
	if err != nil {
		return configErr(err)
	}
	var stored func(host.Entry)
	if len(logs) > 0 {
		outbox, err := host.NewOutbox(host.OutboxOptions{Store: store, Dir: filepath.Join(cfg.DataDir, "outbox"), Logs: logs,
			Logger: log, Metrics: metrics})
		if err != nil {
			return configErr(err)
		}
		stored = outbox.Kick
		octx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { outbox.Run(octx); close(done) }()
		defer func() { stop(); <-done }()
	}
	sup, err := host.New(host.Options{
		Logger: log, Signer: key, HostName: hostName, Store: store, Evidence: verifier,
		TTL: ttl, AgentTimeout: agentTimeout, MigrationHold: cfg.MigrationHoldDuration(), Metrics: metrics, Hooks: journal,
		Stored: stored,
	})
	if err != nil {
		return err
	}
	defer sup.Close()
	for _, vm := range cfg.VMConfigs() {
		if err := sup.Add(ctx, vm); err != nil {
			return configErr(err)
		}
	}
	if cfg.WatchDir != "" {
		_, _, periodic := cfg.Durations()
		go sup.WatchDir(ctx, cfg.WatchDir, 2*time.Second, host.VMConfig{Periodic: periodic})
	}
	if err := startLibvirt(ctx, cfg, sup, log.Named("libvirt")); err != nil {
		return configErr(err)
	}

	ln, err := host.ListenAPI(cfg.APISocket, cfg.APIGroup)
	if err != nil {
		return configErr(fmt.Errorf("api socket: %w", err))
	}
	api := &http.Server{Handler: host.APIHandler(sup, store, log.Named("api"), hooks.Routes), ReadHeaderTimeout: 5 * time.Second}
	go api.Serve(ln)
	defer ln.Close() // removes the socket, if the path still names this one

	var msrv *http.Server
	if cfg.MetricsListen != "off" {
		if h, _, err := net.SplitHostPort(cfg.MetricsListen); err == nil {
			if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
				log.Warn("metrics are served on a non-loopback address", "listen", cfg.MetricsListen)
			}
		}
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return configErr(fmt.Errorf("metrics: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go msrv.Serve(mln)
	}
	log.Info("running", "vms", len(cfg.VMs), "logs", len(logs), "watch_dir", cfg.WatchDir, "api", cfg.APISocket, "metrics", cfg.MetricsListen,
		"data_dir", cfg.DataDir, "key_id", key.KeyID().String())

	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("api shutdown", "error", err)
	}
	if msrv != nil {
		msrv.Shutdown(sctx)
	}
	return nil
}
