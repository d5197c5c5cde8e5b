//go:build !nologd

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/logd"
	"hvmon.dev/hvmon/tlog"
)

func (a *app) logdCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "logd --config FILE",
		Short: "Run the transparency log server",
		Long: `Run the transparency log server in the foreground until SIGTERM or SIGINT.

It accepts reports (POST /v1/add) signed by the host keys of its allowlist,
logs them and answers each with a tlog-proof once the entry is in a
published checkpoint; it serves the checkpoint and tiles (GET /checkpoint,
/tile/...) and /healthz. SIGHUP, or a change of the file, reloads the
allowlist; a file that fails to load keeps the previous list.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := boundedfile.Read(configPath, logd.MaxConfigSize)
			if err != nil {
				return configErr(err)
			}
			cfg, err := logd.ParseConfig(src, configPath)
			if err != nil {
				return configErr(err)
			}
			return a.runLogd(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration `FILE` (HCL; required)")
	cmd.MarkFlagRequired("config")
	cmd.AddCommand(a.logdKeygenCmd())
	return cmd
}

func (a *app) logdKeygenCmd() *cobra.Command {
	var origin, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen --origin ORIGIN --out PREFIX",
		Short: "Generate the log's ML-DSA-44 key",
		Long: `Generate the log's ML-DSA-44 checkpoint key.

The private key goes to PREFIX.key (PEM PKCS#8, mode 0600) and the verifier
key, which hosts and verifiers pin, to PREFIX.vkey; the verifier key is also
printed. ORIGIN is the log's name, the first line of its checkpoints.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			k, err := tlog.GenerateKey(origin, rand.Reader)
			if err != nil {
				return configErr(fmt.Errorf("logd keygen: %w", err))
			}
			pemBytes, err := k.MarshalPEM()
			if err != nil {
				return err
			}
			opts := atomicfile.Options{Replace: force}
			if err := atomicfile.Write(out+".key", pemBytes, 0o600, opts); err != nil {
				return configErr(fmt.Errorf("logd keygen: %w", err))
			}
			if err := atomicfile.Write(out+".vkey", []byte(k.VerifierKey()+"\n"), 0o644, opts); err != nil {
				return configErr(fmt.Errorf("logd keygen: %w", err))
			}
			_, err = fmt.Fprintln(a.stdout, k.VerifierKey())
			return err
		},
	}
	cmd.Flags().StringVar(&origin, "origin", "", "the log's `ORIGIN` (required)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "`PREFIX` of the key files (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing key files")
	cmd.MarkFlagRequired("origin")
	cmd.MarkFlagRequired("out")
	return cmd
}

func (a *app) runLogd(ctx context.Context, cfg *logd.Config) error {
	log := a.log.Named("logd")
	reg := prometheus.NewRegistry()
	srv, err := logd.New(ctx, cfg, logd.Options{Logger: log, Registerer: reg})
	if err != nil {
		return configErr(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close(context.Background())
		return configErr(fmt.Errorf("listen: %w", err))
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go hs.Serve(ln)
	var ms *http.Server
	if cfg.MetricsListen != "" && cfg.MetricsListen != "off" { // "off" as in the daemon's configuration
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			hs.Close()
			srv.Close(context.Background())
			return configErr(fmt.Errorf("metrics: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go ms.Serve(mln)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go srv.Run(ctx, hup)
	log.Info("running", "origin", cfg.Origin, "listen", cfg.Listen, "metrics", cfg.MetricsListen, "vkey", srv.VerifierKey())

	<-ctx.Done()
	log.Info("shutting down")
	// Stop taking submissions, then let the log publish what it sequenced.
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "error", err)
	}
	if ms != nil {
		ms.Shutdown(sctx)
	}
	return srv.Close(sctx)
}
