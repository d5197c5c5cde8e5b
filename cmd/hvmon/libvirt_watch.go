//go:build cgo

package main

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/host/libvirt"
)

// startLibvirt follows the domains of the configuration's libvirt block.
// A first connection that fails is an error, unless libvirtd is only not
// running yet: then the watcher connects when it comes up. Later losses
// reconnect.
func startLibvirt(ctx context.Context, cfg *host.Config, sup *host.Supervisor, log hclog.Logger) error {
	if cfg.Libvirt == nil {
		return nil
	}
	_, _, periodic := cfg.Durations()
	w, err := libvirt.New(libvirt.Options{URI: cfg.Libvirt.URI, Logger: log, Supervisor: sup, Domains: cfg.Libvirt.Domains,
		Base: host.VMConfig{Periodic: periodic, Regions: cfg.Libvirt.Regions}})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	// Run returns at once only when the first connection fails for a
	// reason other than libvirtd not running.
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	case <-w.Attempted():
		return nil
	}
}
