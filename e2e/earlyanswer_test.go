package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestEarlyAnswerEndToEnd: an endpoint of Go's net/http that refuses a
// large upload without reading it (a 413, then it closes the connection)
// has its answer reach a client of Go's net/http through a node, and the
// node logs the request with the endpoint's status; the next upload, on a
// new connection, is refused alike.
func TestEarlyAnswerEndToEnd(t *testing.T) {
	endpoint := errorBackend(t, http.StatusRequestEntityTooLarge, "too large")

	c := startCP(t, t.TempDir(), "")
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	lst := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: app
    endpoints:
      - { name: refuser, address: "%s" }
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: app }
`, endpoint, lst)))

	client := &http.Client{Timeout: testTimeout}
	body := make([]byte, 8<<20)
	for i := range 2 {
		resp, err := client.Post(fmt.Sprintf("http://%s/up?i=%d", lst, i), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || string(got) != "too large\n" {
			t.Fatalf("upload %d: %d %q, want the endpoint's 413 \"too large\"", i, resp.StatusCode, got)
		}
		if !resp.Close {
			t.Errorf("upload %d: the response does not close the connection, whose body was not read", i)
		}
	}
	client.CloseIdleConnections()
	waitFor(t, "the connections to end on the node", func() bool {
		m := promtext.Scrape(t, "http://"+dp.AdminAddr().String()+"/metrics")
		return m.Value("sluice_listener_connections", "web") == 0
	})
	dp.Close() // flushes the log
	var requests []map[string]any
	for _, l := range out.lines(t) {
		if l["msg"] == "request" {
			requests = append(requests, l)
		}
	}
	if len(requests) != 2 {
		t.Fatalf("%d request lines for 2 uploads", len(requests))
	}
	for _, l := range requests {
		for k, v := range map[string]any{"listener": "web", "method": "POST", "status": 413.0, "cluster": "app", "endpoint": "refuser"} {
			if l[k] != v {
				t.Errorf("%v: %s = %v, want %v", l["path"], k, l[k], v)
			}
		}
	}
}
