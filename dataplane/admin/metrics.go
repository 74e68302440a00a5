package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
	"github.com/sluice-lb/sluice/dataplane/node"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// endpointStates are the values of sluice_endpoint_state's state label,
// every one exported for every endpoint (1 for its state, 0 for the
// others), so that a query by state needs no absent() tricks.
var endpointStates = func() []string {
	var out []string
	for v := range len(sluicev1.EndpointHealth_name) {
		if v == 0 {
			continue // UNSPECIFIED
		}
		name := sluicev1.EndpointHealth(v).String()
		out = append(out, name[len("ENDPOINT_HEALTH_"):])
	}
	return out
}()

// nodeCollector turns what the node knows of itself into metrics when
// scraped: it reads the same counters as /status and the stats reports,
// so serving /metrics costs the traffic nothing.
type nodeCollector struct {
	nodeID  string
	n       *node.Node
	dropped func() uint64

	state, weight, active, conns                        *prometheus.Desc
	requests, bytesIn, bytesOut, connectErrs, resp5xx   *prometheus.Desc
	ejections, info, ready, draining, statsDroppedTotal *prometheus.Desc
	healthTransitions, pipes, splices, pipeShortages    *prometheus.Desc
	maxConns, nodeMaxConns, nodeFull                    *prometheus.Desc
	listenersDraining, rateLimited, rateClients         *prometheus.Desc
}

func newNodeCollector(nodeID string, n *node.Node, dropped func() uint64) *nodeCollector {
	ep := []string{"cluster", "endpoint"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		nodeID: nodeID, n: n, dropped: dropped,
		state:             d("sluice_endpoint_state", "1 for the endpoint's state (UP, DOWN, DRAINING, DISABLED, EJECTED, CHECKING), 0 for the others.", "cluster", "endpoint", "state"),
		weight:            d("sluice_endpoint_weight", "The endpoint's configured weight.", ep...),
		active:            d("sluice_endpoint_active", "Requests and TCP sessions using the endpoint now.", ep...),
		conns:             d("sluice_endpoint_connections", "Sockets open to the endpoint, idle pooled ones included.", ep...),
		requests:          d("sluice_endpoint_requests_total", "HTTP requests and TCP sessions given to the endpoint.", ep...),
		bytesIn:           d("sluice_endpoint_received_bytes_total", "Bytes received from the endpoint.", ep...),
		bytesOut:          d("sluice_endpoint_sent_bytes_total", "Bytes sent to the endpoint.", ep...),
		connectErrs:       d("sluice_endpoint_connect_errors_total", "Connects to the endpoint that failed (not those given up because their listener closed).", ep...),
		resp5xx:           d("sluice_endpoint_responses_5xx_total", "HTTP requests to the endpoint answered with a 5xx status: by the endpoint, or by the node when the endpoint failed the request.", ep...),
		ejections:         d("sluice_endpoint_ejections_total", "Outlier ejections of the endpoint.", ep...),
		healthTransitions: d("sluice_endpoint_health_transitions_total", "Times health checks marked the endpoint down or back up.", ep...),
		info:              d("sluice_node_info", "Always 1; labels say which node this is and the snapshot version it runs.", "node", "version"),
		ready:             d("sluice_node_ready", "1 once a snapshot is applied and while the node is not draining.", nil...),
		draining:          d("sluice_node_draining", "1 while the node drains (SIGTERM).", nil...),
		statsDroppedTotal: d("sluice_node_stats_records_dropped_total", "Connection records dropped because the queue to the control plane was full.", nil...),
		pipes:             d("sluice_node_pipes", "Pipes the node holds to splice large bodies through, in use and pooled (not those of Go's own splice, which close-delimited response bodies use); without CAP_SYS_RESOURCE or CAP_SYS_ADMIN each counts its size, up to 1 MiB, against /proc/sys/fs/pipe-user-pages-soft.", nil...),
		maxConns:          d("sluice_listener_max_connections", "The listener's max_connections: how many client connections it holds at once (0: no cap).", "listener"),
		nodeMaxConns:      d("sluice_node_max_connections", "The node's --max-connections: how many client connections it holds at once over all listeners (0: no cap).", nil...),
		nodeFull:          d("sluice_node_full_total", "Times the node held --max-connections and left new connections waiting in the kernel's accept queue until one closed.", nil...),
		listenersDraining: d("sluice_node_listeners_draining", "Listeners the running snapshot removed whose client connections still drain, until sluice-dp --drain-grace after the apply.", nil...),
		splices:           d("sluice_node_splices_total", "Large transfers the node spliced through a pipe of its own: a TCP burst, or an HTTP body (each 4 MiB piece of a longer one). --splice says which are spliced (by default, those from peers on other hosts); the others are copied.", nil...),
		rateLimited:       d("sluice_rule_rate_limited_total", "Requests (TCP connections) a rule with a rate_limit held for, their client over the rate; carried over snapshots with the rule's counts.", "listener", "rule"),
		rateClients:       d("sluice_rule_rate_clients", "Clients (addresses, prefixes or header values) a rule with a rate_limit tracks, up to its max_clients.", "listener", "rule"),
		pipeShortages:     d("sluice_node_pipe_shortages_total", "New pipes the kernel gave too small to splice through (past the user's pipe limit), about one per second of shortage; meanwhile large bodies that find no pooled pipe are copied.", nil...),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.weight, c.active, c.conns, c.requests, c.bytesIn, c.bytesOut,
		c.connectErrs, c.resp5xx, c.ejections, c.info, c.ready, c.draining, c.statsDroppedTotal, c.healthTransitions,
		c.pipes, c.splices, c.pipeShortages, c.maxConns, c.nodeMaxConns, c.nodeFull, c.listenersDraining,
		c.rateLimited, c.rateClients} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	version, draining := c.n.Version(), c.n.Draining()
	gauge(c.info, 1, c.nodeID, version)
	gauge(c.ready, b2f(version != "" && !draining))
	gauge(c.draining, b2f(draining))
	counter(c.statsDroppedTotal, c.dropped())
	pipes, short := splice.Stats()
	gauge(c.pipes, float64(pipes))
	counter(c.pipeShortages, short)
	counter(c.splices, splice.Gets())
	conns := c.n.Connections()
	gauge(c.nodeMaxConns, float64(conns.Max))
	counter(c.nodeFull, conns.Full)
	var removed int
	for _, s := range c.n.Listeners() {
		if s.Draining {
			// No max_connections: it accepts nothing. Its full count is
			// in its meter, which trafficCollector exports by name.
			removed++
			continue
		}
		gauge(c.maxConns, float64(s.MaxConns), s.Name)
	}
	gauge(c.listenersDraining, float64(removed))
	for _, r := range c.n.RateLimits(0) {
		counter(c.rateLimited, r.Limited, r.Listener, r.Rule)
		gauge(c.rateClients, float64(r.Clients), r.Listener, r.Rule)
	}
	for _, s := range c.n.Endpoints() {
		l := []string{s.Cluster, s.Name}
		for _, st := range endpointStates {
			gauge(c.state, b2f(st == s.Health), s.Cluster, s.Name, st)
		}
		gauge(c.weight, float64(s.Weight), l...)
		gauge(c.active, float64(s.Inflight), l...)
		gauge(c.conns, float64(s.Conns), l...)
		counter(c.requests, s.Stats.Requests, l...)
		counter(c.bytesIn, s.Stats.BytesIn, l...)
		counter(c.bytesOut, s.Stats.BytesOut, l...)
		counter(c.connectErrs, s.Stats.ConnectErrors, l...)
		counter(c.resp5xx, s.Stats.Responses5xx, l...)
		counter(c.ejections, s.Ejections, l...)
		counter(c.healthTransitions, s.Stats.HealthTransitions, l...)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves the node's metrics and the Go runtime's in the
// Prometheus text format.
func metricsHandler(nodeID string, n *node.Node, dropped func() uint64, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newNodeCollector(nodeID, n, dropped),
		newTrafficCollector(n),
	)
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
