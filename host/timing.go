package host

import (
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
)

// Timing is how long each step of one report took, from the request to
// the stored report (docs/OPERATIONS.md, "Event latency"). Steps that did
// not run are zero. Options.Trace receives one per request; the daemon
// logs the same figures at debug level.
type Timing struct {
	VM    string
	Event attest.Event
	// Err is the report's error (nil: stored).
	Err error
	// Queued is the time between the request being made (the QMP event
	// read, the timer firing, the API call) and the worker taking it up.
	Queued time.Duration
	// Status is QMP query-status, which runs beside the agent's round
	// trip: it adds to Total only when it takes longer.
	Status time.Duration
	// AgentConnect is dialling the agent socket and the sync exchange; zero
	// when the connection was already open and in step.
	AgentConnect time.Duration
	// Agent is the attest request's round trip (measurement, hardware
	// evidence and signing inside the guest, and the transport).
	Agent time.Duration
	// Check is attest.CheckGuestEvidence (guest signature, binding,
	// hardware evidence chain).
	Check time.Duration
	// HostRegions is pmemsave and measurement of host_region blocks.
	HostRegions time.Duration
	// Sign is attest.Sign with the host key.
	Sign time.Duration
	// Store is Store.Put (until the report is durable).
	Store time.Duration
	// Total is the time from the request being made to the report being
	// stored (or failing).
	Total time.Duration
	// Redials counts agent connections opened for this report.
	Redials int
}

func (t *Timing) logArgs() []any {
	return []any{"event", t.Event, "total", t.Total, "queued", t.Queued, "status", t.Status,
		"agent_connect", t.AgentConnect, "agent", t.Agent, "check", t.Check, "host_regions", t.HostRegions,
		"sign", t.Sign, "store", t.Store, "redials", t.Redials}
}

// since returns the time since start and resets start to now, for timing
// consecutive steps.
func since(start *time.Time) time.Duration {
	now := time.Now()
	d := now.Sub(*start)
	*start = now
	return d
}

func logTiming(log hclog.Logger, t *Timing) {
	if log.IsDebug() {
		log.Debug("report timing", t.logArgs()...)
	}
}
