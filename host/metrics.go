package host

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hvmon.dev/hvmon/attest"
)

// Metrics are the supervisor's Prometheus metrics.
type Metrics struct {
	events        *prometheus.CounterVec
	reports       *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	agentFailures *prometheus.CounterVec
	changes       *prometheus.CounterVec

	// Label values that QEMU or a guest agent chooses (event names, region
	// ids) are bounded: each distinct value is a series the daemon keeps
	// for good, and a hostile peer could invent them without end.
	eventNames labelSet
	regions    labelSet
}

// Bounds of the label values peers choose; beyond them the value is
// "other".
const (
	maxEventLabels  = 256  // distinct QMP event names (QEMU 7.2 defines about 80)
	maxRegionLabels = 4096 // distinct VM and region pairs
)

// labelSet admits up to max distinct values and maps the rest to "other".
type labelSet struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func (l *labelSet) value(v string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v == "other" || l.seen[v] {
		return v
	}
	if len(l.seen) >= l.max {
		return "other"
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.seen[v] = true
	return v
}

// qmpEventName: QEMU's event names are upper case, digits and underscores.
func qmpEventName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// NewMetrics registers hvmon's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hvmon_qmp_events_total", Help: "QMP events seen, by VM and event name.",
		}, []string{"vm", "event"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hvmon_reports_total", Help: "Reports made, by VM, hvmon event and outcome (stored, failed).",
		}, []string{"vm", "event", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hvmon_attestation_seconds", Help: "Time from a request to a stored, signed report, by hvmon event.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"event"}),
		agentFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hvmon_agent_failures_total", Help: "Reports made without guest evidence, by VM and agent status.",
		}, []string{"vm", "status"}),
		eventNames: labelSet{max: maxEventLabels},
		regions:    labelSet{max: maxRegionLabels},
	}
	m.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hvmon_region_changes_total", Help: "Reports in which the agent saw a region's pages change since its previous measurement, by VM and region (drift against reference values is a verifier's call).",
	}, []string{"vm", "region"})
	reg.MustRegister(m.events, m.reports, m.latency, m.agentFailures, m.changes)
	return m
}

func (m *Metrics) event(vm, name string) {
	if !qmpEventName(name) {
		name = "other"
	}
	m.events.WithLabelValues(vm, m.eventNames.value(name)).Inc()
}

func (m *Metrics) observe(vm string, ev attest.Event, err error, d time.Duration) {
	outcome := "stored"
	if err != nil {
		outcome = "failed"
		if errors.Is(err, attest.ErrMalformed) {
			outcome = "refused"
		}
	}
	m.reports.WithLabelValues(vm, string(ev), outcome).Inc()
	if err == nil {
		m.latency.WithLabelValues(string(ev)).Observe(d.Seconds())
	}
}

func (m *Metrics) agentFailure(vm, status string) {
	if status != "none" {
		m.agentFailures.WithLabelValues(vm, status).Inc()
	}
}

func (m *Metrics) regionChanged(vm, region string) {
	if m.regions.value(vm+"\x00"+region) == "other" {
		region = "other"
	}
	m.changes.WithLabelValues(vm, region).Inc()
}
