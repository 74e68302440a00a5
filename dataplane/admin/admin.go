// Package admin serves a node's local admin endpoint: liveness, readiness,
// a JSON view of what the node runs, its metrics for Prometheus and an
// HTML status page for people.
package admin

import (
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
)

// Handler returns the admin routes for n.
//
//	/         an HTML status page: listeners, clusters, endpoints, rates
//	/stats    the same page, at HAProxy's customary address
//	/healthz  200 while the process runs
//	/readyz   200 once a snapshot is applied, 503 before and while draining
//	/status   JSON: node id, applied version, state, connections, listeners,
//	          endpoints with health and load
//	/metrics  the same, and the Go runtime's, in the Prometheus text format
//	/rate-limits  JSON: each rule with a rate_limit, and its clients with
//	          the highest rates (?listener=, ?rule=, ?top=)
//	/debug/pprof/  the Go runtime's profiles (CPU, heap, goroutines, ...),
//	          for `go tool pprof http://ADMIN/debug/pprof/profile?seconds=10`
//
// Credentials.Protect puts everything but the probes behind a password;
// without it, Guard keeps the profiles and the clients of /rate-limits to
// a loopback address.
// cp reads the node's subscription to its control plane for the page and
// /status (nil: they leave it out); extra are more collectors for
// /metrics (the discovery client's).
func Handler(nodeID string, n *node.Node, dropped func() uint64, cp func() discovery.Status, extra ...prometheus.Collector) http.Handler {
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
	mux.Handle("GET /rate-limits", rateLimitsHandler(n))
	page := statusPage(nodeID, n, dropped, cp, newRates())
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /stats", page)
	mux.Handle("GET /status", statusHandler(nodeID, n, dropped, cp))
	return mux
}

// Guard returns h for an admin address without credentials that listens
// on addr: the Go profiles and /rate-limits stay open on a loopback
// address, and elsewhere answer 403. A profile costs the node CPU while it
// runs, the command line shows the node's flags, and /rate-limits lists
// clients' addresses (HAProxy shows its tables on the local stats socket
// only): on an address the network reaches, they want --admin-auth-file.
// The status page, /status and /metrics stay open there, as HAProxy's
// stats page and Envoy's admin address do.
func Guard(h http.Handler, addr net.Addr) http.Handler {
	if tcp, ok := addr.(*net.TCPAddr); !ok || tcp.IP.IsLoopback() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/debug/pprof/"):
			http.Error(w, "the Go profiles are served on a loopback admin address, or with --admin-auth-file", http.StatusForbidden)
			return
		case r.URL.Path == "/rate-limits":
			http.Error(w, "the clients of rate limits are listed on a loopback admin address, or with --admin-auth-file", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
