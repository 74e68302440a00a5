package discovery

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the client's counters as Prometheus metrics, for the
// node's /metrics: responses and their bytes by form (kind="snapshot" or
// "delta"), the deltas that could not be rebuilt, the responses the node
// refused, and whether a subscription is open.
func (c *Client) Collector() prometheus.Collector {
	return &clientCollector{
		client: c,
		responses: prometheus.NewDesc("sluice_discovery_responses_total",
			"Responses received from the control plane, by form: a whole snapshot or a delta from the snapshot the node runs.", []string{"kind"}, nil),
		bytes: prometheus.NewDesc("sluice_discovery_received_bytes_total",
			"Encoded size of the responses received from the control plane, by form.", []string{"kind"}, nil),
		deltaErrors: prometheus.NewDesc("sluice_discovery_delta_errors_total",
			"Deltas the node could not rebuild a snapshot from (NACKed).", nil, nil),
		refused: prometheus.NewDesc("sluice_discovery_refused_total",
			"Responses the node refused (NACKed) when they came, deltas it could not rebuild included; it serves on with the version it ran.", nil, nil),
		connected: prometheus.NewDesc("sluice_discovery_connected",
			"1 while the control plane holds the node's subscription, 0 while the node is cut off from it and serves its last snapshot.", nil, nil),
	}
}

type clientCollector struct {
	client                        *Client
	responses, bytes, deltaErrors *prometheus.Desc
	refused, connected            *prometheus.Desc
}

func (cc *clientCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.responses
	ch <- cc.bytes
	ch <- cc.deltaErrors
	ch <- cc.refused
	ch <- cc.connected
}

func (cc *clientCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c := &cc.client.counters
	counter(cc.responses, c.Snapshots.Load(), "snapshot")
	counter(cc.responses, c.Deltas.Load(), "delta")
	counter(cc.bytes, c.SnapshotBytes.Load(), "snapshot")
	counter(cc.bytes, c.DeltaBytes.Load(), "delta")
	counter(cc.deltaErrors, c.DeltaErrors.Load())
	counter(cc.refused, c.Refused.Load())
	connected := 0.0
	if cc.client.Status().Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(cc.connected, prometheus.GaugeValue, connected)
}
