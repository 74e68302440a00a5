package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// healthBackend answers its name, and /health with the status in status.
type healthBackend struct {
	addr   string
	status atomic.Int32
	checks atomic.Int32
	host   atomic.Value // Host of the last check
}

func startHealthBackend(t *testing.T, name string) *healthBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &healthBackend{addr: ln.Addr().String()}
	b.status.Store(200)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			b.checks.Add(1)
			b.host.Store(r.Host + " " + r.Method)
			w.WriteHeader(int(b.status.Load()))
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// TestHTTPHealthCheck: an endpoint whose /health answers 503 is taken out
// of rotation after fall checks, and comes back after rise; the check is
// sent as configured.
func TestHTTPHealthCheck(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startHealthBackend(t, "a"), startHealthBackend(t, "b")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    health_check:
      interval: 100ms
      fall: 2
      rise: 2
      http: { method: HEAD, path: /health, host: health.example, expected_status: "200-299" }
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, b.addr, listen)))
	url := "http://" + listen + "/"
	waitFor(t, "checks to reach a", func() bool { return a.checks.Load() >= 2 })
	if got := a.host.Load(); got != "health.example HEAD" {
		t.Errorf("check arrived as %q, want Host health.example, method HEAD", got)
	}
	if got := count(t, url, 20, nil); got["a"] != 10 || got["b"] != 10 {
		t.Fatalf("both up: %v, want 10/10", got)
	}

	a.status.Store(503)
	waitFor(t, "a to be marked down", func() bool {
		for _, e := range dp.Node.Endpoints() {
			if e.Name == "a" {
				return e.Health == "DOWN"
			}
		}
		return false
	})
	// Picks go around it once the node has been told, a moment after the
	// checker's state (which Endpoints shows) changed.
	waitFor(t, "a out of traffic", func() bool { return count(t, url, 2, nil)["a"] == 0 })
	if got := count(t, url, 20, nil); got["b"] != 20 {
		t.Errorf("a answering 503 to checks: %v, want all 20 from b", got)
	}

	a.status.Store(204)
	start := time.Now()
	waitFor(t, "a to come back", func() bool {
		got := count(t, url, 2, nil)
		return got["a"] == 1
	})
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("a came back after %v, before rise=2 checks could pass", took)
	}
}

// TestHTTP2HealthCheck: the HTTP checks of a cluster with http2 speak
// HTTP/2 (h2c with prior knowledge here), so an endpoint that speaks
// nothing else is checked by its status: up while /health answers 200,
// down when it answers 503, and proxied to while up.
func TestHTTP2HealthCheck(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var status, checks atomic.Int64
	status.Store(200)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true) // and no HTTP/1.1
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if r.ProtoMajor == 2 {
				checks.Add(1)
			}
			w.WriteHeader(int(status.Load()))
			return
		}
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: grpc
    http2: true
    health_check: { interval: 100ms, fall: 2, rise: 1, http: { path: /health } }
    endpoints: [ { name: g, address: %s } ]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: grpc }
`, ln.Addr(), listen)))
	health := func() string {
		for _, e := range dp.Node.Endpoints() {
			if e.Name == "g" {
				return e.Health
			}
		}
		return ""
	}
	waitFor(t, "g to be checked up over HTTP/2", func() bool { return health() == "UP" && checks.Load() > 0 })
	if body, err := get(&http.Client{Timeout: testTimeout}, "http://"+listen+"/"); err != nil || body != "HTTP/2.0" {
		t.Errorf("through the node: %q %v, want the endpoint's answer over HTTP/2", body, err)
	}
	status.Store(503)
	waitFor(t, "g to be marked down by its 503", func() bool { return health() == "DOWN" })
	status.Store(200)
	waitFor(t, "g to come back", func() bool { return health() == "UP" })
}
