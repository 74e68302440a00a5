package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/node"
)

// trafficCollector exports the node's listener and cluster meters
// (package meter) when scraped: reading them is a few atomic loads per
// counter, so serving /metrics costs the traffic nothing.
type trafficCollector struct {
	n *node.Node

	lConns, lConnsTotal, lRequests, lBytesIn, lBytesOut *prometheus.Desc
	lFull                                               *prometheus.Desc
	lLatency                                            latencyDescs

	cRequests, cBytesIn, cBytesOut, cConnectErrs, cRetries *prometheus.Desc
	cHealth, cQueue                                        *prometheus.Desc
	cLatency                                               latencyDescs

	logDropped *prometheus.Desc
}

// latencyDescs are the three histograms of a meter.Latency.
type latencyDescs struct{ connect, firstByte, total *prometheus.Desc }

func newLatencyDescs(prefix, label string) latencyDescs {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+name, help, []string{label}, nil)
	}
	return latencyDescs{
		connect:   d("_connect_duration_seconds", "Time to open a new connection to an endpoint: TCP connect, PROXY header and TLS handshake. Pooled connections are not counted."),
		firstByte: d("_first_byte_duration_seconds", "Time from a request's head read to its response head read from the endpoint (HTTP)."),
		total:     d("_request_duration_seconds", "Time from a request's head read to its response sent (HTTP), or the whole session (TCP)."),
	}
}

func newTrafficCollector(n *node.Node) *trafficCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &trafficCollector{
		n:           n,
		lConns:      d("sluice_listener_connections", "Client connections open now.", "listener"),
		lConnsTotal: d("sluice_listener_connections_total", "Client connections accepted.", "listener"),
		lRequests:   d("sluice_listener_requests_total", "HTTP requests by the class of the status the client got; other: no response.", "listener", "class"),
		lBytesIn:    d("sluice_listener_received_bytes_total", "Bytes received from clients, per request or session as it ended.", "listener"),
		lBytesOut:   d("sluice_listener_sent_bytes_total", "Bytes sent to clients, per request or session as it ended.", "listener"),
		lFull:       d("sluice_listener_full_total", "Times the listener held max_connections and left new connections waiting in the kernel's accept queue until one closed.", "listener"),
		lLatency:    newLatencyDescs("sluice_listener", "listener"),

		cRequests:    d("sluice_cluster_requests_total", "HTTP requests and TCP sessions routed to the cluster, by the class of the status the client got; other: no response (and every TCP session).", "cluster", "class"),
		cBytesIn:     d("sluice_cluster_received_bytes_total", "Bytes received from the cluster's endpoints.", "cluster"),
		cBytesOut:    d("sluice_cluster_sent_bytes_total", "Bytes sent to the cluster's endpoints.", "cluster"),
		cConnectErrs: d("sluice_cluster_connect_errors_total", "Connects to the cluster's endpoints that failed (not those given up because their listener closed).", "cluster"),
		cRetries:     d("sluice_cluster_retries_total", "Failed connects tried again on another pick (the listener's retries).", "cluster"),
		cHealth:      d("sluice_cluster_health_transitions_total", "Times health checks marked an endpoint of the cluster down or back up.", "cluster"),
		cQueue:       d("sluice_cluster_queue_length", "Requests and sessions waiting for an endpoint below its max_conn.", "cluster"),
		cLatency:     newLatencyDescs("sluice_cluster", "cluster"),

		logDropped: d("sluice_access_log_dropped_total", "Access log lines dropped because the writer fell behind, or because writing them failed (a full disk)."),
	}
}

func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lConns, c.lConnsTotal, c.lRequests, c.lBytesIn, c.lBytesOut, c.lFull,
		c.lLatency.connect, c.lLatency.firstByte, c.lLatency.total,
		c.cRequests, c.cBytesIn, c.cBytesOut, c.cConnectErrs, c.cRetries, c.cHealth, c.cQueue,
		c.cLatency.connect, c.cLatency.firstByte, c.cLatency.total, c.logDropped} {
		ch <- d
	}
}

func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, l := range c.n.ListenerMeters() {
		name := l.Name()
		k := l.Counts()
		ch <- prometheus.MustNewConstMetric(c.lConns, prometheus.GaugeValue, float64(k.Active), name)
		counter(c.lConnsTotal, k.Connections, name)
		for class, v := range k.Requests {
			counter(c.lRequests, v, name, meter.Class(class).String())
		}
		counter(c.lBytesIn, k.BytesIn, name)
		counter(c.lBytesOut, k.BytesOut, name)
		counter(c.lFull, l.FullCount().Load(), name)
		c.lLatency.collect(ch, &l.Latency, name)
	}
	for _, cl := range c.n.ClusterMeters() {
		name := cl.Name()
		k := cl.Counts()
		for class, v := range k.Requests {
			counter(c.cRequests, v, name, meter.Class(class).String())
		}
		counter(c.cBytesIn, k.BytesIn, name)
		counter(c.cBytesOut, k.BytesOut, name)
		counter(c.cConnectErrs, k.ConnectErrors, name)
		counter(c.cRetries, k.Retries, name)
		counter(c.cHealth, k.HealthTransitions, name)
		ch <- prometheus.MustNewConstMetric(c.cQueue, prometheus.GaugeValue, float64(cl.Queued), name)
		c.cLatency.collect(ch, &cl.Latency, name)
	}
	// 0 without an access log, so that dashboards need no absent().
	var dropped uint64
	if d, ok := c.n.AccessLog().(interface{ Dropped() uint64 }); ok {
		dropped = d.Dropped()
	}
	counter(c.logDropped, dropped)
}

// collect sends the three histograms of lat.
func (d latencyDescs) collect(ch chan<- prometheus.Metric, lat *meter.Latency, label string) {
	for _, x := range []struct {
		desc *prometheus.Desc
		h    *meter.Histogram
	}{{d.connect, &lat.Connect}, {d.firstByte, &lat.FirstByte}, {d.total, &lat.Total}} {
		cum, count, sum := x.h.Read()
		buckets := make(map[float64]uint64, len(cum))
		for i, b := range meter.Buckets {
			buckets[b.Seconds()] = cum[i]
		}
		ch <- prometheus.MustNewConstHistogram(x.desc, count, sum, buckets, label)
	}
}
