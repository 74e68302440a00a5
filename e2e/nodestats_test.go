package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// startAdminNode starts a node with its admin endpoint on a free port.
func startAdminNode(t *testing.T, cpAddr, id string, opts dataplane.Options) *dataplane.Dataplane {
	t.Helper()
	opts.ControlPlane, opts.Node, opts.AdminAddr, opts.Logger = cpAddr, &sluicev1.Node{Id: id}, "127.0.0.1:0", quietLogger()
	dp, err := dataplane.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dp.Close)
	return dp
}

// countingClient is an HTTP client that counts the bytes of its sockets.
type countingClient struct {
	*http.Client
	sent, received atomic.Uint64
}

func newCountingClient() *countingClient {
	c := &countingClient{}
	d := &net.Dialer{Timeout: testTimeout}
	c.Client = &http.Client{Timeout: testTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countedConn{Conn: conn, c: c}, nil
		},
	}}
	return c
}

type countedConn struct {
	net.Conn
	c *countingClient
}

func (cc *countedConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.received.Add(uint64(n))
	return n, err
}

func (cc *countedConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.sent.Add(uint64(n))
	return n, err
}

// TestListenerClusterMetrics: the node's /metrics counts per listener and
// per cluster exactly the traffic that went through: connections, requests
// by status class, bytes each way as the client counted them, failed
// connects and retries, and one latency observation per request; counts
// survive an apply that keeps the names and start from zero for a new
// name.
func TestListenerClusterMetrics(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, deadAddr, tcpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	snap := `
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
  - name: dead
    retries: 1
    endpoints:
      - { name: x, address: %s }
      - { name: y, address: %s }
  - name: db
    endpoints:
      - { name: raw, address: %s }
listeners:
  - { name: %s, address: %s, protocol: HTTP, default_cluster: web }
  - { name: broken, address: %s, protocol: HTTP, default_cluster: dead }
  - { name: tcp, address: %s, protocol: TCP, default_cluster: db }
`
	apply := func(public string) uint64 {
		return c.apply(t, fmt.Sprintf(snap, a.addr, b.addr, freeAddr(t), freeAddr(t), raw.addr, public, httpAddr, deadAddr, tcpAddr))
	}
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{})
	waitVersion(t, dp, apply("public"))

	const requests, failing, sessions = 30, 4, 5
	client := newCountingClient()
	for range requests {
		if body, err := get(client.Client, "http://"+httpAddr+"/"); err != nil || (body != "a" && body != "b") {
			t.Fatalf("GET: %q, %v", body, err)
		}
	}
	client.CloseIdleConnections()
	sent, received := client.sent.Load(), client.received.Load()
	for range failing {
		resp, err := client.Get("http://" + deadAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("dead cluster: status %d, want 502", resp.StatusCode)
		}
	}
	client.CloseIdleConnections()
	for range sessions {
		if body, err := tcpGet(tcpAddr); err != nil || body != "raw" {
			t.Fatalf("TCP: %q, %v", body, err)
		}
	}

	url := "http://" + dp.AdminAddr().String() + "/metrics"
	var m promtext.Families
	waitFor(t, "every connection to be counted closed", func() bool {
		m = promtext.Scrape(t, url)
		return m.Value("sluice_listener_connections", "public") == 0 && m.Value("sluice_listener_connections", "broken") == 0 &&
			m.Value("sluice_listener_connections", "tcp") == 0
	})
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sluice_listener_connections_total", []string{"public"}, 1}, // keep-alive
		{"sluice_listener_requests_total", []string{"2xx", "public"}, requests},
		{"sluice_listener_requests_total", []string{"5xx", "public"}, 0},
		{"sluice_listener_received_bytes_total", []string{"public"}, float64(sent)},
		{"sluice_listener_sent_bytes_total", []string{"public"}, float64(received)},
		{"sluice_listener_request_duration_seconds", []string{"public"}, requests},
		{"sluice_listener_requests_total", []string{"5xx", "broken"}, failing},
		{"sluice_listener_connections_total", []string{"tcp"}, sessions},
		{"sluice_listener_requests_total", []string{"other", "tcp"}, 0}, // sessions are not requests
		{"sluice_listener_request_duration_seconds", []string{"tcp"}, sessions},

		{"sluice_cluster_requests_total", []string{"2xx", "web"}, requests},
		{"sluice_cluster_first_byte_duration_seconds", []string{"web"}, requests},
		{"sluice_cluster_request_duration_seconds", []string{"web"}, requests},
		// One connection to each endpoint, pooled for the rest.
		{"sluice_cluster_connect_duration_seconds", []string{"web"}, 2},
		{"sluice_cluster_received_bytes_total", []string{"web"}, m.Value("sluice_endpoint_received_bytes_total", "web", "a") + m.Value("sluice_endpoint_received_bytes_total", "web", "b")},
		{"sluice_cluster_retries_total", []string{"web"}, 0},
		// Each request tries one endpoint, then the other: both refuse.
		{"sluice_cluster_requests_total", []string{"5xx", "dead"}, failing},
		{"sluice_cluster_connect_errors_total", []string{"dead"}, 2 * failing},
		{"sluice_cluster_retries_total", []string{"dead"}, failing},
		{"sluice_cluster_connect_duration_seconds", []string{"dead"}, 0},
		{"sluice_cluster_requests_total", []string{"other", "db"}, sessions},
		{"sluice_cluster_connect_duration_seconds", []string{"db"}, sessions},
		{"sluice_cluster_queue_length", []string{"web"}, 0},
		{"sluice_cluster_health_transitions_total", []string{"web"}, 0},
	} {
		if got := m.Value(tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if got := m.Value("sluice_cluster_received_bytes_total", "web"); got < requests {
		t.Errorf("web received %v bytes for %d responses", got, requests)
	}

	// An apply that keeps the names keeps the counts; a listener renamed
	// starts from zero, and the old name is gone.
	waitVersion(t, dp, apply("public"))
	m = promtext.Scrape(t, url)
	if got := m.Value("sluice_listener_requests_total", "2xx", "public"); got != requests {
		t.Errorf("after an apply keeping the listener: 2xx = %v, want %d", got, requests)
	}
	if got := m.Value("sluice_cluster_requests_total", "2xx", "web"); got != requests {
		t.Errorf("after an apply keeping the cluster: 2xx = %v, want %d", got, requests)
	}
	waitVersion(t, dp, apply("renamed"))
	if _, err := get(client.Client, "http://"+httpAddr+"/"); err != nil {
		t.Fatal(err)
	}
	// The node counts an exchange once its response is written, so the
	// client can read the answer a moment before the count moves.
	waitFor(t, "the request to be counted", func() bool {
		m = promtext.Scrape(t, url)
		return m.Value("sluice_listener_requests_total", "2xx", "renamed") != 0 && m.Value("sluice_cluster_requests_total", "2xx", "web") > requests
	})
	if got := m.Value("sluice_listener_requests_total", "2xx", "renamed"); got != 1 {
		t.Errorf("renamed listener: 2xx = %v, want 1 (from zero)", got)
	}
	if got := m.Value("sluice_listener_requests_total", "2xx", "public"); got != -1 {
		t.Errorf("the old listener name is still exported: %v", got)
	}
	if got := m.Value("sluice_cluster_requests_total", "2xx", "web"); got != requests+1 {
		t.Errorf("web after the rename: 2xx = %v, want %d", got, requests+1)
	}
}

// TestHealthTransitions: an endpoint that health checks mark down (its
// first result) and then up counts two transitions, for itself and its
// cluster; one that came up and stayed counts none.
func TestHealthTransitions(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a := startBackend(t, "a")
	flaky := freeAddr(t)
	listen := freeAddr(t)
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{})
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 2, rise: 1 }
    endpoints:
      - { name: a, address: %s }
      - { name: flaky, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, flaky, listen)))
	url := "http://" + dp.AdminAddr().String() + "/metrics"
	waitFor(t, "flaky to be marked down", func() bool {
		return promtext.Scrape(t, url).Value("sluice_endpoint_state", "web", "flaky", "DOWN") == 1
	})
	ln, err := net.Listen("tcp", flaky)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	waitFor(t, "flaky to come back up", func() bool {
		return promtext.Scrape(t, url).Value("sluice_endpoint_state", "web", "flaky", "UP") == 1
	})
	time.Sleep(300 * time.Millisecond) // a few more checks: no more transitions
	m := promtext.Scrape(t, url)
	if got := m.Value("sluice_endpoint_health_transitions_total", "web", "flaky"); got != 2 {
		t.Errorf("flaky transitions = %v, want 2 (down, up)", got)
	}
	if got := m.Value("sluice_endpoint_health_transitions_total", "web", "a"); got != 0 {
		t.Errorf("a transitions = %v, want 0", got)
	}
	if got := m.Value("sluice_cluster_health_transitions_total", "web"); got != 2 {
		t.Errorf("web transitions = %v, want 2", got)
	}
}
