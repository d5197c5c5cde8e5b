package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/webui"
)

// defaultUIListen is hvmon ui's address: loopback only.
const defaultUIListen = "127.0.0.1:8089"

func (a *app) uiCmd() *cobra.Command {
	var (
		loc         daemonLocation
		trust       []string
		policyPath  string
		ev          evidenceSettings
		listen      string
		allowRemote bool
		logKey      string
		witnessKeys []string
		quorum      int
	)
	cmd := &cobra.Command{
		Use:   "ui [--data-dir DIR] --trust PUB ... | --policy FILE [--log-key VKEY] [--listen ADDR]",
		Short: "Serve a read-only web view of the report store",
		Long: `Serve a read-only web view of the daemon's report store: a fleet page
(every VM with its hosts, its last event and the age of its last report,
its verdict, and how many of its reports are logged), a VM page (a
timeline with one lane per host: each report a mark coloured by its
verdict, migrations as arrows between lanes, a restore linked to its
snapshot, rollbacks and forks ringed, gaps drawn; and the changed pages
each measurer reported, over the region's size), and a report page (every
field hvmon show prints, each verification check, the chain audit's
findings about it and its log proof state). /api/fleet, /api/vm/NAME
and /api/report/HASH give the same data as JSON.

The verdicts are hvmon log verify's: every stored report is verified as
of its own issued-at under the --trust keys (or the --policy's host keys,
hardware roots and rules), and all are audited as one history
(docs/FORMAT.md, "Chain audit"). Each page reads the store afresh; a
report verified once is not verified again. With --log-key, every proof
file beside a report is verified against that log (as verify --log-key).

The view only reads: it answers GET and HEAD, runs no script in the
browser, loads nothing from the network, and has no authentication. It
listens on loopback (` + defaultUIListen + `) and refuses an address that is not
loopback unless --allow-remote is given; to reach it from elsewhere, use
an SSH tunnel or an authenticating reverse proxy (docs/OPERATIONS.md,
"The web view"). It runs until SIGINT or SIGTERM.`,
		Example: `  hvmon ui --data-dir /var/lib/hvmon --trust /etc/hvmon/hv-a.pub --trust /etc/hvmon/hv-b.pub
  hvmon ui --policy /etc/hvmon/vm.policy.hcl --log-key /etc/hvmon/log.vkey
  ssh -L 8089:127.0.0.1:8089 monitor-host   # then open http://127.0.0.1:8089/`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkUIListen(listen, allowRemote); err != nil {
				return err
			}
			store, err := loc.openStore(cmd)
			if err != nil {
				return err
			}
			var opts attest.VerifyOptions
			pol, err := appraisalOptions(cmd, trust, policyPath, &ev, &opts)
			if err != nil {
				return err
			}
			var lf logFlags
			lf.logKey, lf.witnessKeys, lf.quorum = logKey, witnessKeys, quorum
			logPol, err := lf.policy(cmd)
			if err != nil {
				return err
			}
			srv, err := webui.New(webui.Options{Store: store, Verify: opts, Policy: pol, Log: logPol})
			if err != nil {
				return configErr(err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return configErr(fmt.Errorf("--listen: %w", err))
			}
			// The name resolved: check what was bound, not what was asked.
			if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !allowRemote && !tcp.IP.IsLoopback() {
				ln.Close()
				return configErr(fmt.Errorf("--listen %s bound %s, which is not loopback; give --allow-remote to serve it", listen, tcp))
			}
			return a.serveUI(cmd.Context(), srv, ln)
		},
	}
	f := cmd.Flags()
	loc.flags(f, false, true)
	f.StringArrayVar(&trust, "trust", nil, "trusted host public key `PUB`; repeat for several (required unless --policy names them)")
	f.StringVar(&policyPath, "policy", "", "appraise every report against the policy `FILE` (its host keys are trusted too, its hardware roots replace the evidence flags)")
	ev.flags(f)
	f.StringVar(&listen, "listen", defaultUIListen, "serve on `ADDR` (host:port; loopback unless --allow-remote)")
	f.BoolVar(&allowRemote, "allow-remote", false, "allow a --listen address that is not loopback (the view has no authentication: put it behind an authenticating proxy)")
	f.StringVar(&logKey, "log-key", "", "verify the proof files beside the reports against the log with this verifier key `VKEY` (text or file)")
	f.StringArrayVar(&witnessKeys, "witness-key", nil, "a witness verifier key `VKEY` whose cosignature counts toward --quorum; repeatable")
	f.IntVar(&quorum, "quorum", 0, "the number of --witness-key cosignatures a proof's checkpoint needs")
	return cmd
}

// checkUIListen refuses a --listen address whose host is not a loopback
// address (or "localhost") unless allowRemote.
func checkUIListen(addr string, allowRemote bool) error {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return configErr(fmt.Errorf("--listen %q: want host:port: %w", addr, err))
	}
	if allowRemote {
		return nil
	}
	if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
		return nil
	}
	return configErr(fmt.Errorf("--listen %q is not a loopback address: the web view has no authentication; "+
		"reach it through an SSH tunnel, or give --allow-remote behind an authenticating reverse proxy (docs/OPERATIONS.md, \"The web view\")", addr))
}

// Web view server bounds: a slow or idle client cannot hold a connection.
const (
	uiReadHeaderTimeout = 5 * time.Second
	uiReadTimeout       = 10 * time.Second
	uiWriteTimeout      = 60 * time.Second
	uiIdleTimeout       = 60 * time.Second
	uiMaxHeaderBytes    = 16 << 10
)

// serveUI serves srv on ln until ctx ends, then shuts down, giving
// requests in flight a few seconds.
func (a *app) serveUI(ctx context.Context, srv http.Handler, ln net.Listener) error {
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: uiReadHeaderTimeout, ReadTimeout: uiReadTimeout,
		WriteTimeout: uiWriteTimeout, IdleTimeout: uiIdleTimeout, MaxHeaderBytes: uiMaxHeaderBytes}
	fmt.Fprintf(a.stdout, "hvmon ui: serving http://%s/ (read-only; SIGINT or SIGTERM stops it)\n", ln.Addr())
	a.log.Info("web view listening", "addr", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return configErr(err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return configErr(err)
	}
	a.log.Info("web view stopped")
	return nil
}
