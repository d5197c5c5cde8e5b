package host

import (
	"errors"
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
	}
	m.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hvmon_region_changes_total", Help: "Reports in which the agent saw a region's pages change since its previous measurement, by VM and region (drift against reference values is a verifier's call).",
	}, []string{"vm", "region"})
	reg.MustRegister(m.events, m.reports, m.latency, m.agentFailures, m.changes)
	return m
}

func (m *Metrics) event(vm, name string) { m.events.WithLabelValues(vm, name).Inc() }

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

func (m *Metrics) regionChanged(vm, region string) { m.changes.WithLabelValues(vm, region).Inc() }
