package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/proc"
)

// processSource measures a process mapping, by pid or by process name, and
// re-measures it incrementally (soft-dirty bits) while the process lives.
// A process found by name that exits is looked up again at the next
// attestation.
type processSource struct {
	cfg     ProcessConfig
	region  *proc.Region
	tracker *measure.Tracker
}

func (p *processSource) describe() string {
	if p.cfg.PID > 0 {
		return fmt.Sprintf("process:pid:%d:%s", p.cfg.PID, p.cfg.Mapping)
	}
	return fmt.Sprintf("process:name:%s:%s", p.cfg.Name, p.cfg.Mapping)
}

func (p *processSource) measure(ctx context.Context) (measurement, error) {
	if p.tracker == nil {
		pid := p.cfg.PID
		if pid == 0 {
			var err error
			if pid, err = findProcess(p.cfg.Name); err != nil {
				return measurement{}, err
			}
		}
		r, err := proc.Open(proc.Selector{PID: pid, Pattern: p.cfg.Mapping})
		if err != nil {
			return measurement{}, err
		}
		p.region, p.tracker = r, measure.NewTracker(r, nil)
	}
	res, err := p.tracker.Measure(ctx)
	if err != nil {
		// The process may be gone: start over next time.
		p.region.Close()
		p.region, p.tracker = nil, nil
		return measurement{}, err
	}
	return measurement{root: res.Root, size: uint64(res.Size), mode: res.Mode, changed: res.Changed}, nil
}

// procDir is where processes are listed; a variable for tests.
var procDir = "/proc"

// findProcess returns the pid of the one process whose comm is name.
func findProcess(name string) (int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			pids = append(pids, pid)
		}
	}
	switch len(pids) {
	case 0:
		return 0, fmt.Errorf("no process named %q", name)
	case 1:
		return pids[0], nil
	}
	return 0, fmt.Errorf("%d processes named %q (%v): give a pid", len(pids), name, pids)
}
