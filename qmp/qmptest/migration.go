package qmptest

import (
	"encoding/json"
	"sync"
	"time"
)

// DefaultMaxBandwidth is QEMU 7.2's max-bandwidth at start: 128 MiB/s.
const DefaultMaxBandwidth = 128 << 20

// MigrationOptions describe a fake outgoing migration.
type MigrationOptions struct {
	// Size is the guest state to move, in bytes; 0 means 256 MiB (two
	// seconds at DefaultMaxBandwidth, about what a real 256 MiB guest
	// takes on a loaded machine).
	Size int64
	// MaxBandwidth is the max-bandwidth in force before anyone sets it;
	// 0 means DefaultMaxBandwidth.
	MaxBandwidth uint64
	// Switchover, when set, runs when the bulk transfer is done and the
	// source's vCPUs stop, before the STOP event: a test stops its fake
	// guest agent there, as the real guest stops answering.
	Switchover func()
}

// Migration is a fake outgoing live migration on a Server, modelled on
// QEMU's pre-copy: Start begins it as someone else's "migrate" command
// would; it sends MIGRATION "setup" and "active", moves Size bytes at the
// max-bandwidth in force (0: at once), which migrate-set-parameters
// changes while it runs, then stops the source (STOP) and sends
// "completed". query-migrate, query-migrate-parameters and
// migrate-set-parameters answer as QEMU does.
type Migration struct {
	s    *Server
	opts MigrationOptions

	mu        sync.Mutex
	bandwidth uint64
	sets      []uint64 // every max-bandwidth set, in order
	status    string
	moved     float64
	started   time.Time
	total     time.Duration
	done      chan struct{}
}

// EnableMigration installs the migration commands on the server.
func (s *Server) EnableMigration(o MigrationOptions) *Migration {
	if o.Size == 0 {
		o.Size = 256 << 20
	}
	if o.MaxBandwidth == 0 {
		o.MaxBandwidth = DefaultMaxBandwidth
	}
	m := &Migration{s: s, opts: o, bandwidth: o.MaxBandwidth, status: "none", done: make(chan struct{})}
	s.Handle("query-migrate-parameters", func(json.RawMessage) (any, string, string) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return map[string]any{"max-bandwidth": m.bandwidth, "downtime-limit": 300}, "", ""
	})
	s.Handle("migrate-set-parameters", func(args json.RawMessage) (any, string, string) {
		var p struct {
			MaxBandwidth *uint64 `json:"max-bandwidth"`
		}
		if err := json.Unmarshal(args, &p); err != nil {
			return nil, "GenericError", "Parameter 'max-bandwidth' expects uint64"
		}
		if p.MaxBandwidth != nil {
			m.SetMaxBandwidth(*p.MaxBandwidth)
		}
		return nil, "", ""
	})
	s.Handle("query-migrate", func(json.RawMessage) (any, string, string) {
		m.mu.Lock()
		defer m.mu.Unlock()
		out := map[string]any{"status": m.status}
		if m.status != "none" {
			out["ram"] = map[string]any{"transferred": int64(m.moved), "total": m.opts.Size}
		}
		if m.status == "completed" {
			out["total-time"] = m.total.Milliseconds()
			out["downtime"] = 5
		}
		return out, "", ""
	})
	return m
}

// Start begins the migration.
func (m *Migration) Start() {
	m.mu.Lock()
	m.status, m.started = "setup", time.Now()
	m.mu.Unlock()
	m.s.Inject("MIGRATION", map[string]any{"status": "setup"})
	go m.run()
}

func (m *Migration) run() {
	const tick = 5 * time.Millisecond
	m.mu.Lock()
	m.status = "active"
	m.mu.Unlock()
	m.s.Inject("MIGRATION", map[string]any{"status": "active"})
	last := time.Now()
	for {
		time.Sleep(tick)
		now := time.Now()
		m.mu.Lock()
		if m.bandwidth == 0 {
			m.moved = float64(m.opts.Size)
		} else {
			m.moved += float64(m.bandwidth) * now.Sub(last).Seconds()
		}
		last = now
		left := m.moved < float64(m.opts.Size)
		m.mu.Unlock()
		if !left {
			break
		}
	}
	if m.opts.Switchover != nil {
		m.opts.Switchover()
	}
	m.s.Inject("STOP", nil)
	m.mu.Lock()
	m.status, m.total = "completed", time.Since(m.started)
	m.mu.Unlock()
	m.s.Inject("MIGRATION", map[string]any{"status": "completed"})
	close(m.done)
}

// Done is closed once the migration completed.
func (m *Migration) Done() <-chan struct{} { return m.done }

// SetMaxBandwidth sets max-bandwidth as migrate-set-parameters does (a
// test's own handler of that command uses it, to answer late or not at
// all).
func (m *Migration) SetMaxBandwidth(v uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bandwidth = v
	m.sets = append(m.sets, v)
}

// MaxBandwidth is the max-bandwidth in force.
func (m *Migration) MaxBandwidth() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bandwidth
}

// Sets returns every max-bandwidth set through migrate-set-parameters, in
// order.
func (m *Migration) Sets() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.sets...)
}
