// Package backend holds the attest.Backend implementations that need no VM:
// Memory, for tests and tutorials, and File, where a region is a file or a
// byte range of one.
package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

// ErrNoRegion reports a snapshot of a region the backend does not hold.
var ErrNoRegion = errors.New("no such region")

// Memory holds region contents in memory, per workload.
type Memory struct {
	mu        sync.Mutex
	workloads map[string][]memRegion
	// Now is the clock snapshots are stamped with; nil means time.Now.
	Now func() time.Time
}

type memRegion struct {
	r    attest.Region
	data []byte
}

// NewMemory returns an empty in-memory backend.
func NewMemory() *Memory { return &Memory{workloads: map[string][]memRegion{}} }

func clock(now func() time.Time) time.Time {
	if now == nil {
		return time.Now()
	}
	return now()
}

// Name implements attest.Backend.
func (*Memory) Name() attest.Platform { return "memory" }

// Register adds (or replaces) a region of a workload with its content. The
// region's size must be 0 (taken from content) or len(content).
func (m *Memory) Register(workload string, r attest.Region, content []byte) error {
	if r.Size == 0 {
		r.Size = uint64(len(content))
	}
	if r.Size != uint64(len(content)) {
		return &attest.InvalidRegionError{ID: r.ID, Reason: fmt.Sprintf("size %d, content %d bytes", r.Size, len(content))}
	}
	if err := r.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.workloads[workload]
	mr := memRegion{r: r, data: slices.Clone(content)}
	if i := slices.IndexFunc(rs, func(x memRegion) bool { return x.r.ID == r.ID }); i >= 0 {
		rs[i] = mr
	} else {
		rs = append(rs, mr)
	}
	m.workloads[workload] = rs
	return nil
}

// Write overwrites part of a registered region, as a tampering host would.
func (m *Memory) Write(workload, id string, off int, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mr := range m.workloads[workload] {
		if mr.r.ID == id {
			if off < 0 || off+len(b) > len(mr.data) {
				return fmt.Errorf("write [%d, %d) outside region %q of %d bytes", off, off+len(b), id, len(mr.data))
			}
			copy(mr.data[off:], b)
			return nil
		}
	}
	return fmt.Errorf("%w: %q in workload %q", ErrNoRegion, id, workload)
}

// Regions implements attest.Backend.
func (m *Memory) Regions(_ context.Context, workload string) ([]attest.Region, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.workloads[workload]
	if len(rs) == 0 {
		return nil, fmt.Errorf("workload %q has no registered regions", workload)
	}
	out := make([]attest.Region, len(rs))
	for i, mr := range rs {
		out[i] = mr.r
	}
	return out, nil
}

// Snapshot implements attest.Backend.
func (m *Memory) Snapshot(_ context.Context, workload string, r attest.Region) (attest.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mr := range m.workloads[workload] {
		if mr.r.ID == r.ID {
			return attest.Snapshot{
				RegionID: r.ID, Root: measure.Bytes(mr.data), Size: uint64(len(mr.data)),
				TakenAt: clock(m.Now), PageSize: measure.PageSize,
			}, nil
		}
	}
	return attest.Snapshot{}, fmt.Errorf("%w: %q in workload %q", ErrNoRegion, r.ID, workload)
}

// FileRegion is one region of a File backend: Length bytes of Path from
// Offset. Length 0 means "to the end of the file" (measured at snapshot).
type FileRegion struct {
	ID     string
	Path   string
	Offset int64
	Length int64
}

// File measures regions that are files or byte ranges of files, through
// fileregion: only regular files, read page batches at a time (pread),
// never whole. One File serves one workload: every workload name lists the
// same regions.
type File struct {
	regions []FileRegion
	// Now is the clock snapshots are stamped with; nil means time.Now.
	Now func() time.Time
}

// NewFile returns a backend over the given regions. Ids must be unique and
// valid region ids; offsets and lengths non-negative.
func NewFile(regions []FileRegion) (*File, error) {
	seen := map[string]bool{}
	for _, fr := range regions {
		if err := (attest.Region{ID: fr.ID}).Validate(); err != nil {
			return nil, err
		}
		switch {
		case seen[fr.ID]:
			return nil, &attest.InvalidRegionError{ID: fr.ID, Reason: "duplicate id"}
		case fr.Path == "":
			return nil, &attest.InvalidRegionError{ID: fr.ID, Reason: "no file"}
		case fr.Offset < 0 || fr.Length < 0:
			return nil, &attest.InvalidRegionError{ID: fr.ID, Reason: "negative offset or length"}
		case fr.Offset > math.MaxInt64-fr.Length:
			return nil, &attest.InvalidRegionError{ID: fr.ID, Reason: "offset + length overflows"}
		}
		seen[fr.ID] = true
	}
	return &File{regions: slices.Clone(regions)}, nil
}

// Name implements attest.Backend.
func (*File) Name() attest.Platform { return "file" }

// Regions implements attest.Backend.
func (f *File) Regions(_ context.Context, _ string) ([]attest.Region, error) {
	out := make([]attest.Region, len(f.regions))
	for i, fr := range f.regions {
		off := uint64(fr.Offset)
		out[i] = attest.Region{
			ID: fr.ID, Address: &off, Size: uint64(fr.Length), Protection: "RO",
			Source: "file:" + fr.Path,
		}
	}
	return out, nil
}

// Snapshot implements attest.Backend. A range that extends past the end of
// the file is an error, never a silently shorter measurement.
func (f *File) Snapshot(ctx context.Context, _ string, r attest.Region) (attest.Snapshot, error) {
	i := slices.IndexFunc(f.regions, func(fr FileRegion) bool { return fr.ID == r.ID })
	if i < 0 {
		return attest.Snapshot{}, fmt.Errorf("%w: %q", ErrNoRegion, r.ID)
	}
	fr := f.regions[i]
	src, err := fileregion.Open(fr.Path, fr.Offset, fr.Length)
	if err != nil {
		return attest.Snapshot{}, err
	}
	defer src.Close()
	taken := clock(f.Now)
	root, err := measure.Root(ctx, src, nil)
	if err != nil {
		return attest.Snapshot{}, err
	}
	return attest.Snapshot{RegionID: r.ID, Root: root, Size: uint64(src.Size()), TakenAt: taken, PageSize: measure.PageSize}, nil
}
