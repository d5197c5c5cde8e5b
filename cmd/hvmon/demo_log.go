//go:build !nologd

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/demo"
	"hvmon.dev/hvmon/logd"
)

// demoLogStarter returns the demo's log: an in-process log server (the
// one hvmon logd runs) on the POSIX driver, listening on a free loopback
// port, signing with the demo's public fixed-seed key.
func (a *app) demoLogStarter() demo.LogStarter {
	return func(ctx context.Context, dir string, hosts []*attest.PublicKey) (*demo.LogServer, error) {
		return startDemoLog(ctx, dir, hosts, a.log.Named("logd"))
	}
}

// demoLogReadyWait bounds the wait for the log to accept submissions.
const demoLogReadyWait = 30 * time.Second

// startDemoLog starts the demo log with its tiles in dir, accepting
// reports signed by the hosts' keys, and waits until it is ready.
func startDemoLog(ctx context.Context, dir string, hosts []*attest.PublicKey, log hclog.Logger) (ls *demo.LogServer, err error) {
	key, err := demo.LogKey()
	if err != nil {
		return nil, err
	}
	// The key file and the allowlist live in a private directory for the
	// run: the log server reads them from files, as hvmon logd does.
	priv, err := os.MkdirTemp("", "hvmon-demo-log")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(priv)
		}
	}()
	pemBytes, err := key.MarshalPEM()
	if err != nil {
		return nil, err
	}
	var allow bytes.Buffer
	allow.WriteString("# the demo's host keys, one per host\n")
	for _, h := range hosts {
		p, err := attest.MarshalPublicKeyPEM(h)
		if err != nil {
			return nil, err
		}
		allow.Write(p)
	}
	keyPath, allowPath := filepath.Join(priv, "log.key"), filepath.Join(priv, "allowlist.pem")
	if err := os.WriteFile(keyPath, pemBytes, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(allowPath, allow.Bytes(), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("origin = %q\nkey = %q\nallowlist = %q\ncheckpoint_interval = %q\nposix {\n  dir = %q\n}\n",
		demo.LogOrigin, keyPath, allowPath, demo.LogCheckpointInterval.String(), dir)
	cfg, err := logd.ParseConfig([]byte(conf), "demo-logd.hcl")
	if err != nil {
		return nil, err
	}
	srv, err := logd.New(ctx, cfg, logd.Options{})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close(context.Background())
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	stop := func(ctx context.Context) error {
		defer os.RemoveAll(priv)
		if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			hs.Close()
		}
		return srv.Close(ctx)
	}
	wctx, cancel := context.WithTimeout(ctx, demoLogReadyWait)
	defer cancel()
	for !srv.Ready() {
		select {
		case <-wctx.Done():
			stop(context.Background())
			return nil, fmt.Errorf("the log server did not become ready in %s", demoLogReadyWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
	url := "http://" + ln.Addr().String()
	log.Info("demo log running", "origin", demo.LogOrigin, "url", url, "dir", dir)
	return &demo.LogServer{URL: url, VKey: srv.VerifierKey(), Stop: stop}, nil
}
