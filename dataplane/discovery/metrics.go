package discovery

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the client's counters as Prometheus metrics, for the
// node's /metrics: responses and their bytes by form (kind="snapshot" or
// "delta"), and the deltas that could not be rebuilt.
func (c *Client) Collector() prometheus.Collector {
	return &clientCollector{
		c: &c.counters,
		responses: prometheus.NewDesc("sluice_discovery_responses_total",
			"Responses received from the control plane, by form: a whole snapshot or a delta from the snapshot the node runs.", []string{"kind"}, nil),
		bytes: prometheus.NewDesc("sluice_discovery_received_bytes_total",
			"Encoded size of the responses received from the control plane, by form.", []string{"kind"}, nil),
		deltaErrors: prometheus.NewDesc("sluice_discovery_delta_errors_total",
			"Deltas the node could not rebuild a snapshot from (NACKed).", nil, nil),
	}
}

type clientCollector struct {
	c                             *Counters
	responses, bytes, deltaErrors *prometheus.Desc
}

func (cc *clientCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.responses
	ch <- cc.bytes
	ch <- cc.deltaErrors
}

func (cc *clientCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(cc.responses, cc.c.Snapshots.Load(), "snapshot")
	counter(cc.responses, cc.c.Deltas.Load(), "delta")
	counter(cc.bytes, cc.c.SnapshotBytes.Load(), "snapshot")
	counter(cc.bytes, cc.c.DeltaBytes.Load(), "delta")
	counter(cc.deltaErrors, cc.c.DeltaErrors.Load())
}
