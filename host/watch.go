package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
)

// WatchDir follows the VMs whose sockets appear in dir: NAME.qmp (a QMP
// socket for hvmon) and, when present, NAME.agent (the agent's chardev).
// A VM is added when its QMP socket appears and removed when it goes. It
// polls every interval until ctx ends. VMs from the configuration file
// keep precedence: a name already followed is left alone.
func (s *Supervisor) WatchDir(ctx context.Context, dir string, interval time.Duration, base VMConfig) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	mine := map[string]bool{}
	refused := map[string]bool{} // names outside the rule, logged once
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		seen := map[string]bool{}
		paths, _ := filepath.Glob(filepath.Join(dir, "*.qmp"))
		for _, p := range paths {
			st, err := os.Stat(p)
			if err != nil || st.Mode()&os.ModeSocket == 0 {
				continue
			}
			name := strings.TrimSuffix(filepath.Base(p), ".qmp")
			seen[name] = true
			if mine[name] || refused[name] {
				continue
			}
			if err := attest.CheckVMName(name); err != nil {
				refused[name] = true
				s.log.Error("not following a VM of the watched directory: its name breaks the VM name rule", "socket", p, "error", err)
				continue
			}
			cfg := base
			cfg.Name, cfg.QMP = name, p
			if st, err := os.Stat(filepath.Join(dir, name+".agent")); err == nil && st.Mode()&os.ModeSocket != 0 {
				cfg.Agent = filepath.Join(dir, name+".agent")
			}
			err = s.Add(ctx, cfg)
			switch {
			case err == nil:
				mine[name] = true
				delete(refused, name)
				s.log.Info("following VM from the watched directory", "vm", name, "qmp", p, "agent", cfg.Agent)
			case errors.Is(err, ErrBadIdentifier) && !refused[name]:
				refused[name] = true // said once, not at every poll
				s.log.Error("not following a socket in the watched directory", "qmp", p, "error", err)
			}
		}
		for name := range refused {
			if !seen[name] {
				delete(refused, name)
			}
		}
		for name := range mine {
			if !seen[name] {
				s.Remove(name)
				delete(mine, name)
				s.log.Info("VM socket gone; no longer following", "vm", name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
