package evidence

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"

	"hvmon.dev/hvmon/attest"
)

// guestOS is what providers need of the guest's operating system, so that
// tests can stand in for it.
type guestOS struct {
	// tsmProvider returns the configfs-tsm report provider ("sev_guest",
	// "tdx_guest"), or "" when configfs-tsm is absent.
	tsmProvider func() (string, error)
	// exists reports whether a device node exists.
	exists func(path string) bool
	// quote asks the driver of the real hardware evidence type t for
	// evidence carrying reportData (kind.quote).
	quote func(t attest.Platform, reportData [64]byte) ([]byte, error)
}

var hostOS = guestOS{
	tsmProvider: func() (string, error) {
		c, err := linuxtsm.MakeClient()
		if err != nil {
			return "", nil // no configfs-tsm
		}
		r, err := report.CreateOpenReport(c)
		if err != nil {
			return "", err
		}
		defer r.Destroy()
		p, err := r.ReadOption("provider")
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(p)), nil
	},
	exists: func(path string) bool {
		_, err := os.Stat(path)
		return err == nil
	},
	quote: func(t attest.Platform, rd [64]byte) ([]byte, error) {
		k, err := kindOf(t)
		if err != nil {
			return nil, err
		}
		return k.quote(rd)
	},
}

// detect names the TEE of this guest and how it was found: by the
// configfs-tsm provider name, then by the device nodes, each in the order
// of the real kinds.
func (g guestOS) detect() (attest.Platform, string, error) {
	name, err := g.tsmProvider()
	if err != nil {
		return "", "", fmt.Errorf("%w: reading the configfs-tsm provider: %v", ErrNoHardware, err)
	}
	reals := realKinds()
	for _, k := range reals {
		if tsm, _ := k.guest(); name == tsm {
			return realType(k), "configfs-tsm", nil
		}
	}
	var names, devices []string
	for _, k := range reals {
		_, dev := k.guest()
		if g.exists(dev) {
			return realType(k), dev, nil
		}
		names, devices = append(names, k.String()), append(devices, dev)
	}
	if name != "" {
		return "", "", fmt.Errorf("%w: configfs-tsm provider %q is not %s", ErrNoHardware, name, orList(names))
	}
	return "", "", fmt.Errorf("%w: no configfs-tsm, %s", ErrNoHardware, orList(devices))
}

// has checks that the guest's TEE is of kind k.
func (g guestOS) has(k kind) error {
	if t, _, err := g.detect(); err != nil || t != realType(k) {
		tsm, dev := k.guest()
		return fmt.Errorf("%w: no %s guest interface (configfs-tsm provider %s or %s)", ErrNoHardware, k, tsm, dev)
	}
	return nil
}
