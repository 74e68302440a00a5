// Package metrics exposes the control plane's own health in the Prometheus
// text format, on /metrics of sluice-cp's HTTP listener: the nodes it
// serves, the snapshots it pushes and how fast nodes answer them, and the
// stats records it takes in.
//
// Names follow Prometheus conventions (sluice_cp_ prefix, _total counters,
// _seconds histograms). Counters the other packages already keep (stats
// records) are read when scraped rather than counted twice; what only the
// discovery stream sees (a push, its ACK or NACK, the time between) is
// counted here through the discovery.Observer interface.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are the control plane's parts the collectors read when scraped.
// Each function must be safe to call from any goroutine.
type Sources struct {
	// Nodes returns how many nodes have a discovery stream open, and how
	// many of those run the published version.
	Nodes func() (connected, current int)
	// Version returns the published snapshot version (0: none yet).
	Version func() uint64
	// Records returns the stats records received from nodes, and those the
	// nodes reported dropping from their own full queues.
	Records func() (received, dropped uint64)
	// CertificateExpiry, when set (TLS), returns when the certificate the
	// control plane serves expires.
	CertificateExpiry func() time.Time
}

// Metrics is the control plane's registry. Its Pushed and Answered methods
// implement discovery.Observer, PushedBytes discovery.SizeObserver.
type Metrics struct {
	reg         *prometheus.Registry
	pushes      prometheus.Counter
	deltaPushes prometheus.Counter
	pushedBytes *prometheus.CounterVec
	acks        prometheus.Counter
	nacks       prometheus.Counter
	toAck       *prometheus.HistogramVec
}

// New returns a registry with the Go runtime and process collectors, the
// push counters and the gauges and counters read from src.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cp_pushes_total",
			Help: "Snapshot versions sent to nodes.",
		}),
		deltaPushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cp_delta_pushes_total",
			Help: "Pushes sent as a delta from the version the node ran; the other pushes carried whole snapshots.",
		}),
		pushedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cp_pushed_bytes_total",
			Help: "Bytes of snapshot or delta pushed to nodes, by form (kind).",
		}, []string{"kind"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cp_acks_total",
			Help: "Pushed versions that nodes applied (ACK).",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cp_nacks_total",
			Help: "Pushed versions that nodes refused (NACK).",
		}),
		toAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_cp_push_answer_seconds",
			Help: "Time from sending a version to a node to its ACK or NACK.",
			// 1 ms to ~16 s: a node applies in milliseconds; seconds mean a
			// slow apply (DNS, big snapshot) or a sick node.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.pushes, m.deltaPushes, m.pushedBytes, m.acks, m.nacks, m.toAck,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_cp_nodes_connected",
			Help: "Nodes with a discovery stream open.",
		}, func() float64 { c, _ := src.Nodes(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_cp_nodes_out_of_date",
			Help: "Connected nodes not running the version of their node group (a canary: its rollout's).",
		}, func() float64 { c, cur := src.Nodes(); return float64(c - cur) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_cp_snapshot_version",
			Help: "The published configuration version, across node groups (0: none yet).",
		}, func() float64 { return float64(src.Version()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_cp_stats_records_received_total",
			Help: "Connection records received from nodes.",
		}, func() float64 { r, _ := src.Records(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_cp_stats_records_dropped_total",
			Help: "Connection records nodes dropped because their queue to the control plane was full.",
		}, func() float64 { _, d := src.Records(); return float64(d) }),
	)
	if src.CertificateExpiry != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_cp_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate the control plane serves (--tls-cert) expires, in Unix seconds: alert well before (sluice-cp issue-server-cert renews it).",
		}, func() float64 { return float64(src.CertificateExpiry().Unix()) }))
	}
	// Both results exist from the start, so a rate over them is 0, not
	// absent, before the first answer.
	m.toAck.WithLabelValues("ack")
	m.toAck.WithLabelValues("nack")
	m.pushedBytes.WithLabelValues("snapshot")
	m.pushedBytes.WithLabelValues("delta")
	return m
}

// Pushed counts a version sent to a node.
func (m *Metrics) Pushed() { m.pushes.Inc() }

// PushedBytes counts the form and size of a push.
func (m *Metrics) PushedBytes(delta bool, n int) {
	kind := "snapshot"
	if delta {
		m.deltaPushes.Inc()
		kind = "delta"
	}
	m.pushedBytes.WithLabelValues(kind).Add(float64(n))
}

// Answered counts a node's answer to a push, which took took.
func (m *Metrics) Answered(nack bool, took time.Duration) {
	result := "ack"
	if nack {
		m.nacks.Inc()
		result = "nack"
	} else {
		m.acks.Inc()
	}
	m.toAck.WithLabelValues(result).Observe(took.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
