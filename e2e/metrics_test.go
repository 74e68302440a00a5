package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestNodeMetrics: a node's /metrics counts exactly the traffic that went
// through it, per endpoint: requests, TCP sessions and the bytes of each
// way, and says each endpoint's state.
func TestNodeMetrics(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
  - name: db
    endpoints:
      - { name: raw, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: tcp, address: %s, protocol: TCP, default_cluster: db }
`, a.addr, b.addr, raw.addr, httpAddr, tcpAddr))
	dp, err := dataplane.Start(dataplane.Options{
		ControlPlane: c.addr,
		Node:         &sluicev1.Node{Id: "node-1"},
		AdminAddr:    "127.0.0.1:0",
		Logger:       quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dp.Close)
	waitVersion(t, dp, v)

	const requests, sessions = 30, 7
	client := &http.Client{Timeout: testTimeout}
	for range requests {
		if _, err := get(client, "http://"+httpAddr+"/"); err != nil {
			t.Fatal(err)
		}
	}
	// Raw TCP sessions, so that the bytes each way are known exactly.
	const req = "GET / HTTP/1.0\r\nHost: raw\r\n\r\n"
	var received int
	for range sessions {
		conn, err := net.DialTimeout("tcp", tcpAddr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(conn, req)
		resp, err := io.ReadAll(conn) // HTTP/1.0: the backend closes
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		received += len(resp)
	}

	url := "http://" + dp.AdminAddr().String() + "/metrics"
	var m promtext.Families
	// A TCP session's bytes are counted once it ended on the node's side,
	// a moment after the client saw it end.
	waitFor(t, "the last TCP session's bytes to be counted", func() bool {
		m = promtext.Scrape(t, url)
		return m.Value("sluice_endpoint_received_bytes_total", "db", "raw") == float64(received) &&
			m.Value("sluice_endpoint_sent_bytes_total", "db", "raw") >= float64(sessions*len(req))
	})
	if got := m.Value("sluice_endpoint_requests_total", "web", "a") + m.Value("sluice_endpoint_requests_total", "web", "b"); got != requests {
		t.Errorf("requests_total of web = %v, want %d", got, requests)
	}
	if got := m.Value("sluice_endpoint_requests_total", "web", "a"); got != requests/2 {
		t.Errorf("requests_total of web/a = %v, want %d (round robin)", got, requests/2)
	}
	if got := m.Value("sluice_endpoint_requests_total", "db", "raw"); got != sessions {
		t.Errorf("requests_total of db/raw = %v, want %d sessions", got, sessions)
	}
	if got := m.Value("sluice_endpoint_sent_bytes_total", "db", "raw"); got != float64(sessions*len(req)) {
		t.Errorf("sent_bytes_total of db/raw = %v, want %d", got, sessions*len(req))
	}
	if got := m.Value("sluice_endpoint_state", "web", "a", "UP"); got != 1 {
		t.Errorf(`state{web/a, "UP"} = %v, want 1`, got)
	}
	if got := m.Value("sluice_endpoint_state", "web", "a", "DOWN"); got != 0 {
		t.Errorf(`state{web/a, "DOWN"} = %v, want 0`, got)
	}
	if got := m.Value("sluice_node_ready"); got != 1 {
		t.Errorf("sluice_node_ready = %v, want 1", got)
	}
	if got := m.Value("sluice_node_info", "node-1", fmt.Sprint(v)); got != 1 {
		t.Errorf("sluice_node_info{node-1, %d} = %v, want 1", v, got)
	}
	if got := m.Value("sluice_node_pipe_shortages_total"); got != 0 {
		t.Errorf("sluice_node_pipe_shortages_total = %v with no large body moved, want 0", got)
	}
	if got := m.Value("sluice_node_splices_total"); got != 0 {
		t.Errorf("sluice_node_splices_total = %v with no large body moved, want 0", got)
	}
	if got := m.Value("sluice_node_pipes"); got < 0 {
		t.Error("no sluice_node_pipes")
	}

	// The Grafana dashboard in examples/ asks only for metrics that exist.
	cpm := promtext.Scrape(t, "http://"+c.http+"/metrics")
	dashJSON, err := os.ReadFile("../examples/grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dashJSON, &dash); err != nil {
		t.Fatalf("examples/grafana/sluice.json: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			exprs++
			for _, name := range metricName.FindAllString(target.Expr, -1) {
				if base := strings.TrimSuffix(name, "_bucket"); m[base] == nil && cpm[base] == nil {
					t.Errorf("dashboard panel %q asks for %s, which neither the node nor the control plane exports", p.Title, name)
				}
			}
		}
	}
	if exprs < 10 {
		t.Errorf("dashboard has %d queries; did its format change?", exprs)
	}
}

var metricName = regexp.MustCompile(`\bsluice_[a-z0-9_]+`)
