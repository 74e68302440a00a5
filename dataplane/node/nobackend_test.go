package node

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/meter"
)

// TestNoEndpointIsTheClusters: a request the node answers 503 because its
// cluster has no endpoint to take it, and a TCP session closed for the
// same reason, are the cluster's all the same, as HAProxy counts a
// backend's 503s: counted in its meter, and named in their records,
// on both HTTP engines.
func TestNoEndpointIsTheClusters(t *testing.T) {
	var mu sync.Mutex
	var records []*conntrack.ConnInfo
	n := New(Options{Logger: slog.New(slog.DiscardHandler), OnConn: func(ci *conntrack.ConnInfo) {
		mu.Lock()
		records = append(records, ci)
		mu.Unlock()
	}})
	t.Cleanup(n.Close)
	h1, h2engine, tcp := freeAddr(t), freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s", weight: 0 }]
  - name: grpc
    http2: true
    endpoints: [{ name: g, address: "%s" }]
listeners:
  - { name: h1, address: "%s", protocol: HTTP, default_cluster: web }
  - { name: h2, address: "%s", protocol: HTTP, default_cluster: web, rules: [{ match: { path: { prefix: [/grpc/] } }, route: grpc }] }
  - { name: t, address: "%s", protocol: TCP, default_cluster: web }
`, backend(t, "a"), freeAddr(t), h1, h2engine, tcp)); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{h1, h2engine} {
		if got := <-getAsync("http://" + addr + "/"); got != "503 Service Unavailable no endpoint available\n" {
			t.Fatalf("GET through %s: %q, want the node's 503", addr, got)
		}
	}
	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the TCP session without an endpoint read a byte, want it closed")
	}
	c.Close()

	// The node counts an HTTP exchange once its answer is written, so
	// the client may read the second 503 just before it is counted.
	var web meter.ClusterCounts
	waitUntil(t, "the 503s and the session counted", func() bool {
		web = (*n.current.Load())["web"].meter.Counts()
		return web.Requests[meter.Class5xx] >= 2 && web.Requests[meter.ClassOther] >= 1
	})
	if got := web.Requests[meter.Class5xx]; got != 2 {
		t.Errorf("cluster web counted %d 5xx, want the 2 503s", got)
	}
	if got := web.Requests[meter.ClassOther]; got != 1 {
		t.Errorf("cluster web counted %d TCP sessions, want the 1 closed", got)
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections() // getAsync's
	waitUntil(t, "three connection records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(records) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, ci := range records {
		if ci.Cluster != "web" || ci.Endpoint != "" {
			t.Errorf("record of %s: cluster %q endpoint %q, want web and none", ci.Listener, ci.Cluster, ci.Endpoint)
		}
	}
}
