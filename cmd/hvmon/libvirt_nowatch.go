//go:build !cgo

package main

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/host"
)

func startLibvirt(_ context.Context, cfg *host.Config, _ *host.Supervisor, _ hclog.Logger) error {
	if cfg.Libvirt == nil {
		return nil
	}
	return errors.New("libvirt: this hvmon was built without cgo and cannot follow libvirt domains; build it with CGO_ENABLED=1 and libvirt-dev")
}
