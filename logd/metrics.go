package logd

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a submission, the values of the outcome label.
const (
	outcomeLogged    = "logged"
	outcomeDuplicate = "duplicate"
	outcomeMalformed = "malformed"
	outcomeForbidden = "forbidden"
	outcomeTooLarge  = "too_large"
	outcomePushback  = "pushback"
	outcomeTimeout   = "timeout"
	outcomeError     = "error"
)

// Metrics are the log server's Prometheus metrics.
type Metrics struct {
	submissions    *prometheus.CounterVec
	submitSeconds  prometheus.Histogram
	treeSize       prometheus.Gauge
	inflight       prometheus.Gauge
	ready          prometheus.Gauge
	reloadFailures prometheus.Counter
}

// NewMetrics registers the log server's metrics with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hvmon_logd_submissions_total", Help: "Report submissions by outcome.",
		}, []string{"outcome"}),
		submitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hvmon_logd_submit_seconds", Help: "Time from a submission's arrival to its proof.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hvmon_logd_tree_size", Help: "Size of the log's latest published checkpoint.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hvmon_logd_inflight", Help: "Submissions waiting for their proof.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hvmon_logd_ready", Help: "1 when the server accepts submissions.",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hvmon_logd_allowlist_reload_failures_total", Help: "Allowlist reloads that failed (the previous list stays in force).",
		}),
	}
	for _, o := range []string{outcomeLogged, outcomeDuplicate, outcomeMalformed, outcomeForbidden, outcomeTooLarge, outcomePushback, outcomeTimeout, outcomeError} {
		m.submissions.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.submissions, m.submitSeconds, m.treeSize, m.inflight, m.ready, m.reloadFailures)
	}
	return m
}
