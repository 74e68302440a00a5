// Package admin serves a node's local admin endpoint: liveness, readiness,
// a JSON view of what the node runs, its metrics for Prometheus and an
// HTML status page for people.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-lb/sluice/dataplane/node"
)

// Handler returns the admin routes for n.
//
//	/         an HTML status page: listeners, clusters, endpoints, rates
//	/stats    the same page, at HAProxy's customary address
//	/healthz  200 while the process runs
//	/readyz   200 once a snapshot is applied, 503 before and while draining
//	/status   JSON: node id, applied version, endpoints with health and load
//	/metrics  the same, and the Go runtime's, in the Prometheus text format
//	/debug/pprof/  the Go runtime's profiles (CPU, heap, goroutines, ...),
//	          for `go tool pprof http://ADMIN/debug/pprof/profile?seconds=10`
//
// Credentials.Protect puts everything but the probes behind a password.
// extra are more collectors for /metrics (the discovery client's).
func Handler(nodeID string, n *node.Node, dropped func() uint64, extra ...prometheus.Collector) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if n.Version() == "" {
			http.Error(w, "no snapshot applied yet", http.StatusServiceUnavailable)
			return
		}
		if n.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", metricsHandler(nodeID, n, dropped, extra...))
	page := statusPage(nodeID, n, dropped, newRates())
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /stats", page)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Node         string                `json:"node"`
			Version      string                `json:"version"`
			StatsDropped uint64                `json:"stats_dropped"`
			Endpoints    []node.EndpointStatus `json:"endpoints"`
		}{nodeID, n.Version(), dropped(), n.Endpoints()})
	})
	return mux
}
