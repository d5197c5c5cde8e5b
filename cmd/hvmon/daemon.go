package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/keyfile"
)

func (a *app) daemonCmd() *cobra.Command {
	var (
		configPath, dataDir, apiSocket, metrics string
		unsafeKey, check                        bool
	)
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Run the host supervisor in the foreground",
		Long: `Run the host supervisor in the foreground until SIGTERM or SIGINT.
SIGHUP reloads the configuration file (see below).

It follows the VMs of the configuration file (HCL; see contrib/hvmon.hcl)
and of its watch_dir over QMP, turns their lifecycle events (boot,
migrate-out, migrate-in, snapshot, restore, shutdown, and periodic ones)
into attestation requests to each guest's agent, and signs one combined
report per event with the host key. Reports are stored durably under
data_dir; the local API (api_socket) lists VMs, triggers on-demand reports
and serves stored ones; Prometheus metrics are served on metrics_listen.

--data-dir, --api-socket and --metrics-listen override the file.

On SIGHUP the daemon reads the file again. A file that does not parse
changes nothing (the error is logged). Otherwise vm blocks take effect at
once: VMs no longer named are no longer followed, new ones are followed,
changed ones are followed anew. A change of any other setting is logged as
taking effect at the next restart. One data directory has one daemon: a
second start on it fails at once and names the first's PID.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			load := func() (*host.Config, error) {
				src, err := boundedfile.Read(configPath, host.MaxConfigSize)
				if err != nil {
					return nil, err
				}
				cfg, err := host.ParseConfig(src, configPath)
				if err != nil {
					return nil, err
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
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return configErr(err)
			}
			if check {
				return a.checkDaemonConfig(configPath, cfg, unsafeKey)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return a.runDaemon(cmd.Context(), cfg, unsafeKey, reloader{load: load, hup: hup})
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", defaultConfigPath(), "configuration `FILE` (HCL; $HVMON_CONFIG replaces the default)")
	f.StringVar(&dataDir, "data-dir", "", "report store `DIR`")
	f.StringVar(&apiSocket, "api-socket", "", "local API unix socket `PATH`")
	f.StringVar(&metrics, "metrics-listen", "", "metrics `ADDR` (host:port; \"off\" disables)")
	f.BoolVar(&unsafeKey, "unsafe-key-permissions", false, "accept a host key file that group or others can access")
	f.BoolVar(&check, "check", false, "check the configuration (the file, the host key, the evidence roots, the logs' keys) and exit: 0 when the daemon would start with it")
	return cmd
}

// reloader gives runDaemon the configuration again on each signal on hup
// (SIGHUP). A zero reloader never reloads.
type reloader struct {
	load func() (*host.Config, error)
	hup  <-chan os.Signal
}

func (a *app) runDaemon(ctx context.Context, cfg *host.Config, unsafeKey bool, rl reloader) error {
	log := a.log.Named("daemon")
	// One daemon per data directory, decided before anything else is
	// touched: a second one must not take the first's API socket, sign
	// into its chains or follow its VMs.
	lock, err := host.LockDataDir(cfg.DataDir)
	if err != nil {
		return configErr(err)
	}
	defer lock.Close()
	in, err := loadDaemonInputs(cfg, unsafeKey)
	if err != nil {
		return err
	}
	key, verifier, logs := in.key, in.verifier, in.logs
	store, err := host.NewFileStore(cfg.DataDir)
	if err != nil {
		return configErr(fmt.Errorf("data dir: %w", err))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ttl, agentTimeout, _ := cfg.Durations()
	hostName := cfg.HostName
	if hostName == "" {
		hostName, _ = os.Hostname()
	}
	hooks, journal, err := newHookService(cfg, append([]*attest.PublicKey{key.PublicKey()}, in.peers...), store, verifier, reg, log.Named("hook"))
	if err != nil {
		return err
	}
	defer journal.Close()
	metrics := host.NewMetrics(reg)
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
	bi := readBuildInfo()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hvmon_build_info",
		Help: "1, labelled with the daemon's version, commit and Go version."}, []string{"version", "commit", "go_version"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	reg.MustRegister(build, sup.Collector())
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
	var names []string
	for _, v := range cfg.VMs {
		names = append(names, v.Name)
	}
	log.Info("running: following the configured VMs, the watched directory's and libvirt's domains", "vms", strings.Join(names, ","),
		"watch_dir", cmp.Or(cfg.WatchDir, "off"), "libvirt", libvirtFollowed(cfg), "logs", len(logs), "api", cfg.APISocket, "metrics", cfg.MetricsListen,
		"data_dir", cfg.DataDir, "key_id", key.KeyID().String(), "version", bi.String())

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-rl.hup:
			cfg = a.reload(ctx, log, sup, cfg, rl.load)
		}
	}
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

// reload applies a SIGHUP: it reads the configuration again and applies
// its vm blocks (a VM no longer named is removed, a new one added, a
// changed one removed and added again); other settings take effect at
// the next restart, which it logs. A file that does not load changes
// nothing. It returns the configuration now in effect.
func (a *app) reload(ctx context.Context, log hclog.Logger, sup *host.Supervisor, cur *host.Config, load func() (*host.Config, error)) *host.Config {
	log.Info("SIGHUP: reloading the configuration")
	if load == nil {
		log.Warn("SIGHUP: no configuration file to reload; nothing changed")
		return cur
	}
	next, err := load()
	if err != nil {
		log.Error("SIGHUP: the configuration does not load; nothing changed", "error", err)
		return cur
	}
	if restart := restartOnlyChanges(cur, next); len(restart) > 0 {
		log.Warn("SIGHUP: these settings changed and take effect at the next restart", "settings", strings.Join(restart, ", "))
	}
	old := map[string]host.VMConfig{}
	for _, v := range cur.VMConfigs() {
		old[v.Name] = v
	}
	var added, removed, changed []string
	applied := *cur
	applied.VMs = nil
	newBlocks := map[string]host.VMBlock{}
	for _, b := range next.VMs {
		newBlocks[b.Name] = b
	}
	for _, v := range next.VMConfigs() {
		prev, ok := old[v.Name]
		delete(old, v.Name)
		switch {
		case !ok:
			if err := sup.Add(ctx, v); err != nil {
				log.Error("SIGHUP: cannot follow a new VM", "vm", v.Name, "error", err)
				continue
			}
			added = append(added, v.Name)
		case !reflect.DeepEqual(prev, v):
			sup.Remove(v.Name)
			if err := sup.Add(ctx, v); err != nil {
				log.Error("SIGHUP: cannot follow a changed VM; it is no longer followed", "vm", v.Name, "error", err)
				continue
			}
			changed = append(changed, v.Name)
		}
		applied.VMs = append(applied.VMs, newBlocks[v.Name])
	}
	for name := range old {
		if err := sup.Remove(name); err != nil {
			log.Warn("SIGHUP: removing a VM", "vm", name, "error", err)
		}
		removed = append(removed, name)
	}
	sort.Strings(removed)
	log.Info("SIGHUP: configuration reloaded", "vms", len(applied.VMs), "added", strings.Join(added, ","),
		"removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
	return &applied
}

// restartOnlyChanges names the settings other than vm blocks that differ
// between two configurations: they take effect at the next restart.
func restartOnlyChanges(a, b *host.Config) []string {
	x, y := *a, *b
	x.VMs, y.VMs = nil, nil
	if reflect.DeepEqual(x, y) {
		return nil
	}
	var out []string
	xv, yv := reflect.ValueOf(x), reflect.ValueOf(y)
	for i := range xv.NumField() {
		f := xv.Type().Field(i)
		if !reflect.DeepEqual(xv.Field(i).Interface(), yv.Field(i).Interface()) {
			name := strings.Split(f.Tag.Get("hcl"), ",")[0]
			if name == "" {
				name = f.Name
			}
			out = append(out, name)
		}
	}
	return out
}

// daemonInputs is what the daemon loads from the files its configuration
// names before it starts: the host key, the evidence verifier, the logs'
// configurations with their keys, and the trusted peers' keys.
type daemonInputs struct {
	key      *attest.PrivateKey
	verifier attest.EvidenceVerifier
	logs     []host.LogConfig
	peers    []*attest.PublicKey
}

// loadDaemonInputs loads them, the first problem a configuration error
// naming the setting. runDaemon and daemon --check share it, so --check
// passes exactly when the daemon would get past it.
func loadDaemonInputs(cfg *host.Config, unsafeKey bool) (*daemonInputs, error) {
	var in daemonInputs
	var err error
	if in.key, err = keyfile.LoadPrivate(cfg.Key, keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: unsafeKey}); err != nil {
		return nil, configErr(fmt.Errorf("host key: %w", err))
	}
	if in.verifier, err = evidenceVerifier(cfg.Evidence); err != nil {
		return nil, configErr(fmt.Errorf("evidence: %w", err))
	}
	if in.logs, err = cfg.LogConfigs(); err != nil {
		return nil, configErr(err)
	}
	for _, p := range cfg.TrustPeers {
		k, err := keyfile.LoadPublic(p)
		if err != nil {
			return nil, configErr(fmt.Errorf("trust_peers: %w", err))
		}
		in.peers = append(in.peers, k)
	}
	return &in, nil
}

// libvirtFollowed names the libvirt connection the configuration follows,
// "off" without a libvirt block.
func libvirtFollowed(cfg *host.Config) string {
	if cfg.Libvirt == nil {
		return "off"
	}
	return cmp.Or(cfg.Libvirt.URI, "qemu:///system")
}

// checkDaemonConfig is daemon --check: it loads what the daemon loads
// before it starts following VMs (the host key, the evidence roots, the
// logs' keys, the trusted peers' keys) and reports the first problem, or
// prints a summary. It starts nothing and changes nothing.
func (a *app) checkDaemonConfig(path string, cfg *host.Config, unsafeKey bool) error {
	in, err := loadDaemonInputs(cfg, unsafeKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s: OK: host key %s, %d vm block(s), watch_dir %s, libvirt %s, %d log(s), data_dir %s, api_socket %s, metrics %s\n",
		path, in.key.KeyID(), len(cfg.VMs), cmp.Or(cfg.WatchDir, "off"), libvirtFollowed(cfg), len(in.logs), cfg.DataDir, cfg.APISocket, cfg.MetricsListen)
	return nil
}
