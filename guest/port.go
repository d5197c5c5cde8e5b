package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultPort is the virtio-serial port name the agent listens on.
const DefaultPort = "org.hvmon.agent.0"

// sysVirtioPorts is where the kernel lists virtio-serial ports; a variable
// so tests can point it at a fake tree.
var (
	sysVirtioPorts = "/sys/class/virtio-ports"
	devDir         = "/dev"
)

// FindPort returns the device path of the virtio-serial port with the
// given name: /dev/virtio-ports/NAME when udev made it, else the /dev/vportNpM
// whose /sys/class/virtio-ports/vportNpM/name holds NAME.
func FindPort(name string) (string, error) {
	link := filepath.Join(devDir, "virtio-ports", name)
	if _, err := os.Stat(link); err == nil {
		return link, nil
	}
	entries, err := os.ReadDir(sysVirtioPorts)
	if err != nil {
		return "", fmt.Errorf("no virtio-serial ports (%w): is the virtio_console module loaded?", err)
	}
	var seen []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysVirtioPorts, e.Name(), "name"))
		if err != nil {
			continue
		}
		n := strings.TrimSpace(string(b))
		if n == name {
			return filepath.Join(devDir, e.Name()), nil
		}
		seen = append(seen, n)
	}
	return "", fmt.Errorf("no virtio-serial port named %q (found %q)", name, seen)
}

// ServePort serves the agent on the named virtio-serial port until ctx
// ends. The host may disconnect and reconnect at any time: a read of a
// port whose host side is closed returns end-of-file, which is not fatal;
// the agent waits and reads again. Only a port that cannot be found or
// opened is an error.
func (a *Agent) ServePort(ctx context.Context, name string) error {
	path, err := FindPort(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	a.log.Info("serving", "port", name, "device", path, "key_id", a.KeyID().String(), "platform", a.platform())
	for ctx.Err() == nil {
		err := a.Serve(ctx, f)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			a.log.Trace("end of file on the port: host side closed; waiting")
		case err != nil:
			a.log.Warn("port error; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
