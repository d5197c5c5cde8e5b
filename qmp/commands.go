package qmp

import (
	"context"
	"errors"
	"fmt"
)

// Typed helpers for the commands hvmon needs that go-qemu's generated API
// (generated from QEMU 2.11) lacks or types loosely.

// Status is query-status's reply.
type Status struct {
	Status  string `json:"status"` // "running", "paused", "inmigrate", "postmigrate", "restore-vm", ...
	Running bool   `json:"running"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Stop pauses the VM; Cont resumes it.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes a paused VM.
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// Quit ends QEMU.
func (c *Client) Quit(ctx context.Context) error { return c.Execute(ctx, "quit", nil, nil) }

// MigrationCapability is one migrate-set-capabilities entry.
type MigrationCapability struct {
	Capability string `json:"capability"`
	State      bool   `json:"state"`
}

// MigrateSetCapabilities sets migration capabilities; hvmon needs
// "events" on to see MIGRATION events at all.
func (c *Client) MigrateSetCapabilities(ctx context.Context, caps ...MigrationCapability) error {
	return c.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil)
}

// Migrate starts an outgoing migration to uri ("unix:/path", "tcp:host:port").
func (c *Client) Migrate(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil)
}

// MigrateIncoming starts listening for a migration on a QEMU started with
// -incoming defer.
func (c *Client) MigrateIncoming(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil)
}

// MigrationInfo is query-migrate's reply (the fields hvmon records).
type MigrationInfo struct {
	Status           string `json:"status"` // "none", "setup", "active", "completed", "failed", ...
	TotalTime        int64  `json:"total-time,omitempty"`
	Downtime         int64  `json:"downtime,omitempty"`
	ExpectedDowntime int64  `json:"expected-downtime,omitempty"`
	SetupTime        int64  `json:"setup-time,omitempty"`
	RAM              *struct {
		Transferred int64 `json:"transferred"`
		Total       int64 `json:"total"`
	} `json:"ram,omitempty"`
	ErrorDesc string `json:"error-desc,omitempty"`
}

// QueryMigrate returns the state of the current or last migration.
func (c *Client) QueryMigrate(ctx context.Context) (MigrationInfo, error) {
	var m MigrationInfo
	err := c.Execute(ctx, "query-migrate", nil, &m)
	return m, err
}

// MigrationParameters are the migration parameters hvmon reads and sets
// (query-migrate-parameters, migrate-set-parameters). A nil field is left
// out of a set, so QEMU keeps its value.
type MigrationParameters struct {
	// MaxBandwidth caps the pre-copy transfer, in bytes per second. QEMU
	// spends it in 100 ms windows of MaxBandwidth/10 bytes; 0 means no
	// cap. QEMU lifts the cap for the final stop-and-copy, so it never
	// lengthens the downtime.
	MaxBandwidth *uint64 `json:"max-bandwidth,omitempty"`
}

// QueryMigrateParameters returns the migration parameters in force.
func (c *Client) QueryMigrateParameters(ctx context.Context) (MigrationParameters, error) {
	var p MigrationParameters
	err := c.Execute(ctx, "query-migrate-parameters", nil, &p)
	return p, err
}

// MigrateSetParameters sets the non-nil parameters of p. A new
// max-bandwidth applies to a migration under way from QEMU's next 100 ms
// window on.
func (c *Client) MigrateSetParameters(ctx context.Context, p MigrationParameters) error {
	return c.Execute(ctx, "migrate-set-parameters", p, nil)
}

// SnapshotSave starts the snapshot-save job (QEMU >= 6.0): the VM state
// goes to vmstate's block node, disks listed in devices are snapshotted.
// Wait for it with WaitJob, then JobDismiss.
func (c *Client) SnapshotSave(ctx context.Context, jobID, tag, vmstate string, devices []string) error {
	return c.Execute(ctx, "snapshot-save", map[string]any{"job-id": jobID, "tag": tag, "vmstate": vmstate, "devices": devices}, nil)
}

// SnapshotLoad starts the snapshot-load job. A failed load leaves the VM
// paused.
func (c *Client) SnapshotLoad(ctx context.Context, jobID, tag, vmstate string, devices []string) error {
	return c.Execute(ctx, "snapshot-load", map[string]any{"job-id": jobID, "tag": tag, "vmstate": vmstate, "devices": devices}, nil)
}

// JobDismiss removes a concluded job.
func (c *Client) JobDismiss(ctx context.Context, jobID string) error {
	return c.Execute(ctx, "job-dismiss", map[string]any{"id": jobID}, nil)
}

// JobInfo is one entry of query-jobs.
type JobInfo struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// QueryJobs lists jobs.
func (c *Client) QueryJobs(ctx context.Context) ([]JobInfo, error) {
	var j []JobInfo
	err := c.Execute(ctx, "query-jobs", nil, &j)
	return j, err
}

// ErrJobFailed is returned by RunJob when the job concluded with an error.
var ErrJobFailed = errors.New("qmp: job failed")

// RunJob starts a job with start and waits for it to conclude, watching
// JOB_STATUS_CHANGE on events (a channel from Events, subscribed before
// start is called) and checking query-jobs, then dismisses it. A job that
// concluded with an error gives ErrJobFailed with QEMU's reason.
func (c *Client) RunJob(ctx context.Context, events <-chan Event, jobID string, start func(context.Context) error) error {
	if err := start(ctx); err != nil {
		return err
	}
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return fmt.Errorf("qmp: event stream closed while waiting for job %s", jobID)
			}
			if e.Event != "JOB_STATUS_CHANGE" || e.Data["id"] != jobID || e.Data["status"] != "concluded" {
				continue
			}
		case <-ctx.Done():
			return fmt.Errorf("qmp: waiting for job %s: %w", jobID, ctx.Err())
		}
		jobs, err := c.QueryJobs(ctx)
		if err != nil {
			return err
		}
		var jobErr string
		for _, j := range jobs {
			if j.ID == jobID {
				jobErr = j.Error
			}
		}
		if err := c.JobDismiss(ctx, jobID); err != nil {
			return err
		}
		if jobErr != "" {
			return fmt.Errorf("%w: %s: %s", ErrJobFailed, jobID, jobErr)
		}
		return nil
	}
}

// Pmemsave writes size bytes of guest-physical memory from addr to a file
// on the host (the path is opened by QEMU).
func (c *Client) Pmemsave(ctx context.Context, addr, size uint64, filename string) error {
	return c.Execute(ctx, "pmemsave", map[string]any{"val": addr, "size": size, "filename": filename}, nil)
}

// SEVInfo is query-sev's reply (SEV and SEV-ES guests).
type SEVInfo struct {
	Enabled  bool   `json:"enabled"`
	APIMajor int    `json:"api-major"`
	APIMinor int    `json:"api-minor"`
	BuildID  int    `json:"build-id"`
	Policy   uint32 `json:"policy"`
	State    string `json:"state"`
	Handle   uint32 `json:"handle"`
	SEVType  string `json:"sev-type,omitempty"`
}

// QuerySEV returns the SEV state; on a QEMU or guest without SEV it is a
// *Error (GenericError), which callers record as "not present".
func (c *Client) QuerySEV(ctx context.Context) (SEVInfo, error) {
	var s SEVInfo
	err := c.Execute(ctx, "query-sev", nil, &s)
	return s, err
}

// QuerySEVLaunchMeasure returns the SEV launch measurement (base64).
func (c *Client) QuerySEVLaunchMeasure(ctx context.Context) (string, error) {
	var r struct {
		Data string `json:"data"`
	}
	err := c.Execute(ctx, "query-sev-launch-measure", nil, &r)
	return r.Data, err
}

// BlockdevAdd adds a block node; options is the blockdev-add argument object
// (e.g. {"driver": "qcow2", "node-name": "disk0", "file": {"driver": "file", "filename": "/path"}}).
func (c *Client) BlockdevAdd(ctx context.Context, options map[string]any) error {
	return c.Execute(ctx, "blockdev-add", options, nil)
}

// ChardevInfo is one entry of query-chardev.
type ChardevInfo struct {
	Label        string `json:"label"`
	Filename     string `json:"filename"`
	FrontendOpen bool   `json:"frontend-open"`
}

// QueryChardev lists character devices; FrontendOpen tells whether the
// guest side of a virtio-serial port is open.
func (c *Client) QueryChardev(ctx context.Context) ([]ChardevInfo, error) {
	var out []ChardevInfo
	err := c.Execute(ctx, "query-chardev", nil, &out)
	return out, err
}
