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

	// The outbox's, by log label (bounded by the configuration).
	logBacklog      *prometheus.GaugeVec
	logSubmit       *prometheus.HistogramVec
	logFailures     *prometheus.CounterVec
	logTreeSize     *prometheus.GaugeVec
	logInconsistent *prometheus.GaugeVec

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
	m.logBacklog = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hvmon_log_backlog", Help: "Stored reports not yet logged nor refused, by log.",
	}, []string{"log"})
	m.logSubmit = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hvmon_log_submit_seconds", Help: "Time from a report's first submission to its verified proof stored, by log.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"log"})
	m.logFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hvmon_log_submit_failures_total", Help: "Failed submissions, by log and reason (unreachable, pushback, timeout, forbidden, malformed, too_large, bad_proof, inconsistent).",
	}, []string{"log", "reason"})
	m.logTreeSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hvmon_log_tree_size", Help: "Size of the largest verified checkpoint of each log.",
	}, []string{"log"})
	m.logInconsistent = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hvmon_log_inconsistent", Help: "1 when a log showed checkpoints that are not consistent (a split view or rewritten history); its submissions stop.",
	}, []string{"log"})
	reg.MustRegister(m.events, m.reports, m.latency, m.agentFailures, m.changes,
		m.logBacklog, m.logSubmit, m.logFailures, m.logTreeSize, m.logInconsistent)
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

// The outbox's metrics; a nil *Metrics records nothing.

func (m *Metrics) logBacklogSet(log string, n int) {
	if m != nil {
		m.logBacklog.WithLabelValues(log).Set(float64(n))
	}
}

func (m *Metrics) logBacklogAdd(log string, n int) {
	if m != nil {
		m.logBacklog.WithLabelValues(log).Add(float64(n))
	}
}

func (m *Metrics) logSubmitted(log string, d time.Duration) {
	if m != nil {
		m.logSubmit.WithLabelValues(log).Observe(d.Seconds())
	}
}

func (m *Metrics) logFailure(log, reason string) {
	if m != nil {
		m.logFailures.WithLabelValues(log, reason).Inc()
	}
}

func (m *Metrics) logTree(log string, size uint64) {
	if m != nil {
		m.logTreeSize.WithLabelValues(log).Set(float64(size))
	}
}

func (m *Metrics) logAlarm(log string) {
	if m != nil {
		m.logInconsistent.WithLabelValues(log).Set(1)
	}
}

// Per-VM gauges, read from the supervisor at each scrape: a followed VM
// has its series from the moment it is followed, before any event.
var (
	vmConnectedDesc = prometheus.NewDesc("hvmon_vm_connected",
		"1 when hvmon reaches the VM's running QEMU over QMP, else 0 (a shut-off domain is 0).", []string{"vm"}, nil)
	vmAgentUpDesc = prometheus.NewDesc("hvmon_vm_agent_up",
		"1 when the VM's last report carried guest evidence (agent ok), else 0 (also before its first report since the daemon started).", []string{"vm"}, nil)
	vmSinceDesc = prometheus.NewDesc("hvmon_vm_seconds_since_last_report",
		"Seconds since the VM's last stored report (its host chain's head across restarts); since the daemon started following it when it has none.", []string{"vm"}, nil)
	vmPeriodicDesc = prometheus.NewDesc("hvmon_vm_periodic_seconds",
		"The VM's interval of periodic attestations, 0 when it has none: an alert compares hvmon_vm_seconds_since_last_report with it.", []string{"vm"}, nil)
	vmsDesc = prometheus.NewDesc("hvmon_vms", "VMs the daemon follows.", nil, nil)
)

// vmCollector exports the per-VM gauges of a supervisor.
type vmCollector struct{ s *Supervisor }

// Collector returns a Prometheus collector of the supervisor's per-VM
// gauges (hvmon_vm_connected, hvmon_vm_agent_up,
// hvmon_vm_seconds_since_last_report, hvmon_vm_periodic_seconds) and
// hvmon_vms. Register it once.
func (s *Supervisor) Collector() prometheus.Collector { return vmCollector{s} }

func (c vmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- vmConnectedDesc
	ch <- vmAgentUpDesc
	ch <- vmSinceDesc
	ch <- vmPeriodicDesc
	ch <- vmsDesc
}

func (c vmCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.s.opts.Now()
	vms := c.s.VMs()
	ch <- prometheus.MustNewConstMetric(vmsDesc, prometheus.GaugeValue, float64(len(vms)))
	for _, v := range vms {
		ch <- prometheus.MustNewConstMetric(vmConnectedDesc, prometheus.GaugeValue, boolGauge(v.Connected), v.Name)
		ch <- prometheus.MustNewConstMetric(vmAgentUpDesc, prometheus.GaugeValue, boolGauge(v.Agent == attest.AgentOK), v.Name)
		last := v.LastAt
		if last.IsZero() {
			last = v.Followed
		}
		ch <- prometheus.MustNewConstMetric(vmSinceDesc, prometheus.GaugeValue, max(now.Sub(last).Seconds(), 0), v.Name)
		ch <- prometheus.MustNewConstMetric(vmPeriodicDesc, prometheus.GaugeValue, v.Periodic.Seconds(), v.Name)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
