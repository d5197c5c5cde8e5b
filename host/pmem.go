package host

import (
	"context"
	"fmt"
	"os"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
	"hvmon.dev/hvmon/qmp"
)

// measureHost measures the VM's host regions: QEMU writes each
// guest-physical range to a file in a private directory (pmemsave), the
// host measures the file and deletes it. The bytes never leave the host
// and live on disk only while they are measured.
func (v *vm) measureHost(ctx context.Context) ([]attest.Claim, error) {
	if len(v.cfg.HostRegions) == 0 {
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "hvmon-pmem")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var claims []attest.Claim
	for _, hr := range v.cfg.HostRegions {
		path := fmt.Sprintf("%s/%s.bin", dir, hr.ID)
		taken := v.s.opts.Now().Truncate(time.Second).UTC()
		// QMP's default timeout is for queries; writing the range out takes
		// its size's worth of disk time.
		pctx, cancel := context.WithTimeout(ctx, qmp.DefaultTimeout+time.Duration(hr.Size>>20)*100*time.Millisecond)
		err := v.qmp.Pmemsave(pctx, hr.Address, hr.Size, path)
		cancel()
		if err != nil {
			return claims, fmt.Errorf("region %s: %w", hr.ID, err)
		}
		root, err := measureFile(ctx, path, int64(hr.Size))
		os.Remove(path)
		if err != nil {
			return claims, fmt.Errorf("region %s: %w", hr.ID, err)
		}
		addr := hr.Address
		claims = append(claims, attest.Claim{
			Region: attest.Region{ID: hr.ID, Address: &addr, Size: hr.Size, Source: "host-measured:guest-physical",
				Description: "measured by the host through QMP pmemsave"},
			Snapshot: attest.Snapshot{RegionID: hr.ID, Root: root, Size: hr.Size, TakenAt: taken, PageSize: measure.PageSize},
			Workload: v.cfg.Name, Platform: "host",
		})
	}
	return claims, nil
}

// measureFile measures the size bytes QEMU wrote to path; a shorter file
// is an error. It must be a regular file: a FIFO made in its place would
// block the read, and the VM's worker.
func measureFile(ctx context.Context, path string, size int64) (measure.Digest, error) {
	src, err := fileregion.Open(path, 0, size)
	if err != nil {
		return measure.Digest{}, err
	}
	defer src.Close()
	return measure.Root(ctx, src, nil)
}
