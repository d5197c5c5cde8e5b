package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// defaultConfigPath is where the daemon's configuration lives on an
// installed host (the systemd unit passes it); $HVMON_CONFIG replaces it.
func defaultConfigPath() string {
	if p := os.Getenv("HVMON_CONFIG"); p != "" {
		return p
	}
	return "/etc/hvmon/hvmon.hcl"
}

// daemonLocation finds the daemon for a client command (vm, log, hook
// install, hook events): its API socket and data directory come from
// --api-socket / --data-dir when given, else from the daemon's
// configuration (--config, default /etc/hvmon/hvmon.hcl), else from the
// built-in defaults when that default file does not exist.
type daemonLocation struct {
	configPath string
	socket     string
	dataDir    string

	loaded bool // config ran: cfg and err are its result
	cfg    *host.Config
	err    error
}

// flags registers --config and, as asked, --api-socket and --data-dir.
func (d *daemonLocation) flags(f *pflag.FlagSet, socket, dataDir bool) {
	f.StringVar(&d.configPath, "config", defaultConfigPath(), "the daemon's configuration `FILE`, for its api_socket and data_dir ($HVMON_CONFIG replaces the default)")
	if socket {
		f.StringVar(&d.socket, "api-socket", "", "the daemon's API socket `PATH` (default: api_socket of --config, else "+host.DefaultAPISocket+")")
	}
	if dataDir {
		f.StringVar(&d.dataDir, "data-dir", "", "report store `DIR` (default: data_dir of --config, else "+host.DefaultDataDir+")")
	}
}

// config loads the daemon's configuration: nil (and no error) when the
// default file does not exist; an error for a --config given that does
// not load, or a default file that exists and does not load.
func (d *daemonLocation) config(cmd *cobra.Command) (*host.Config, error) {
	if !d.loaded {
		d.cfg, d.err = d.load(cmd)
		d.loaded = true
	}
	return d.cfg, d.err
}

// load reads and parses the configuration file once for config.
func (d *daemonLocation) load(cmd *cobra.Command) (*host.Config, error) {
	src, err := boundedfile.Read(d.configPath, host.MaxConfigSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
			return nil, nil
		}
		return nil, configErr(fmt.Errorf("--config: %w", err))
	}
	cfg, err := host.ParseConfig(src, d.configPath)
	if err != nil {
		return nil, configErr(fmt.Errorf("--config: %w", err))
	}
	return cfg, nil
}

// apiSocket is the socket to use and where it was found ("--api-socket",
// the configuration file, or "the default").
func (d *daemonLocation) apiSocket(cmd *cobra.Command) (path, from string, err error) {
	if cmd.Flags().Changed("api-socket") {
		return d.socket, "--api-socket", nil
	}
	cfg, err := d.config(cmd)
	if err != nil {
		return "", "", err
	}
	if cfg == nil {
		return host.DefaultAPISocket, "the default", nil
	}
	return cfg.APISocket, d.configPath, nil
}

// storeDir is the data directory to read and where it was found.
func (d *daemonLocation) storeDir(cmd *cobra.Command) (path, from string, err error) {
	if cmd.Flags().Changed("data-dir") {
		return d.dataDir, "--data-dir", nil
	}
	cfg, err := d.config(cmd)
	if err != nil {
		return "", "", err
	}
	if cfg == nil {
		return host.DefaultDataDir, "the default", nil
	}
	return cfg.DataDir, d.configPath, nil
}

// client returns an API client of the daemon and a function that turns
// its errors into ones an admin can act on: a socket that is missing or
// refuses connections asks whether the daemon runs, naming the socket and
// where its path came from.
func (d *daemonLocation) client(cmd *cobra.Command) (*host.APIClient, func(error) error, error) {
	path, from, err := d.apiSocket(cmd)
	if err != nil {
		return nil, nil, err
	}
	explain := func(err error) error {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return configErr(fmt.Errorf("is the daemon running? (it listens on %s, from %s): %w", path, from, err))
		}
		if errors.Is(err, fs.ErrPermission) {
			return configErr(fmt.Errorf("no permission to use the daemon's socket %s (from %s; its api_group may read and write it): %w", path, from, err))
		}
		return configErr(err)
	}
	return host.NewAPIClient(path), explain, nil
}

// openStore opens the data directory for reading: one that does not
// exist or holds no store is an error, and nothing is created.
func (d *daemonLocation) openStore(cmd *cobra.Command) (*host.FileStore, error) {
	dir, from, err := d.storeDir(cmd)
	if err != nil {
		return nil, err
	}
	s, err := host.OpenFileStore(dir)
	if err != nil {
		return nil, configErr(fmt.Errorf("%w (data directory from %s)", err, from))
	}
	return s, nil
}
