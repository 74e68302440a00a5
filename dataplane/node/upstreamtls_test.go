package node

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-lb/sluice/internal/testcert"
)

// TestUpstreamTLSApply: a cluster's ca_file is read at apply; a missing
// or broken file refuses the snapshot (a NACK) naming the cluster and the
// field, and the running one stays. The endpoint's configuration is kept
// while the tls block and the file are unchanged, and renewed when the
// file changes.
func TestUpstreamTLSApply(t *testing.T) {
	n := newNode(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	const tmpl = `
clusters:
  - name: web
    tls: { ca_file: %q }
    endpoints: [{ name: a, address: "127.0.0.1:1" }]
listeners:
  - { name: l, address: %q, protocol: HTTP, default_cluster: web }
`
	addr := freeAddr(t)
	snap := parse(t, tmpl, caFile, addr)

	err := n.Apply("1", snap)
	if err == nil || !strings.Contains(err.Error(), "cluster web: tls.ca_file: open "+caFile) {
		t.Fatalf("missing ca_file: Apply = %v", err)
	}
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("1", snap); err == nil || !strings.Contains(err.Error(), "no PEM CERTIFICATE block found") {
		t.Fatalf("broken ca_file: Apply = %v", err)
	}
	if n.Version() != "" {
		t.Fatalf("a refused snapshot was applied: version %q", n.Version())
	}

	if err := os.WriteFile(caFile, []byte(testcert.NewCA(t).PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	ep := n.clusters["web"].members[0].Endpoint
	first := ep.TLSConfig()
	if first == nil || first.RootCAs == nil || first.ServerName != "127.0.0.1" {
		t.Fatalf("endpoint TLS config = %v, want the CA and server name 127.0.0.1", first)
	}
	if err := n.Apply("2", parse(t, tmpl, caFile, addr)); err != nil {
		t.Fatal(err)
	}
	if ep.TLSConfig() != first {
		t.Error("an apply that changed nothing made a new TLS configuration")
	}
	if err := os.WriteFile(caFile, []byte(testcert.NewCA(t).PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("3", parse(t, tmpl, caFile, addr)); err != nil {
		t.Fatal(err)
	}
	if ep.TLSConfig() == first {
		t.Error("a renewed ca_file did not take effect")
	}
}

// TestHTTP2ClusterNeedsH2InALPN: a cluster with http2 and tls is spoken
// to in HTTP/2 or not at all. An endpoint whose TLS does not choose h2 in
// ALPN gets no request in HTTP/1.1 instead: the client gets the node's
// 502, and the endpoint counts the connect failure, as its health check
// would mark it down for the same reason.
func TestHTTP2ClusterNeedsH2InALPN(t *testing.T) {
	ca := testcert.NewCA(t)
	var served atomic.Int64
	// No ALPN at all, as many TLS servers of HTTP/1.1 (openssl s_server
	// -www): the handshake succeeds, choosing no protocol.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	h1only := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "h1 "+r.Proto)
	})}
	go h1only.Serve(ln)
	t.Cleanup(func() { h1only.Close() })

	n := newNode(t)
	web := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: h2tls
    http2: true
    tls: { ca_pem: %q }
    endpoints: [{ name: e, address: "%s" }]
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: h2tls }
`, ca.PEM, ln.Addr(), web)); err != nil {
		t.Fatal(err)
	}
	if got := <-getAsync("http://" + web + "/"); got != "502 Bad Gateway could not connect to the endpoint\n" {
		t.Errorf("GET to an endpoint without h2 in ALPN: %q, want the node's 502", got)
	}
	if got := served.Load(); got != 0 {
		t.Errorf("the endpoint served %d requests, want none: the cluster speaks HTTP/2", got)
	}
	if got := n.clusters["h2tls"].members[0].Endpoint.Stats().ConnectErrors; got == 0 {
		t.Error("the endpoint counted no connect failure")
	}
	if got := detailOf(n, "h2tls", "e"); got != "last connect failed: TLS: the endpoint did not choose h2 in ALPN" {
		t.Errorf("stats detail %q, want why the connect failed", got)
	}
}

// detailOf is the stats DETAIL of endpoint name of cluster c.
func detailOf(n *Node, c, name string) string {
	for _, st := range n.Endpoints() {
		if st.Cluster == c && st.Name == name {
			return st.Detail
		}
	}
	return "no endpoint " + c + "/" + name
}

// TestUncheckedEndpointSaysWhyConnectsFail: an endpoint no health check
// watches shows in its stats detail why its last connect failed, in the
// words a check would use, until a connect succeeds.
func TestUncheckedEndpointSaysWhyConnectsFail(t *testing.T) {
	other := testcert.NewCA(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{other.Server(t, "127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	later := freeAddr(t) // refuses until a backend listens there

	n := newNode(t)
	web := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - { name: tls, tls: { ca_pem: %q }, endpoints: [{ name: e, address: "%s" }] }
  - { name: plain, endpoints: [{ name: e, address: "%s" }] }
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: tls, rules: [{ match: { path: { prefix: /plain } }, route: plain }] }
`, testcert.NewCA(t).PEM, ln.Addr(), later, web)); err != nil {
		t.Fatal(err)
	}
	if got := detailOf(n, "tls", "e"); got != "no health check" {
		t.Errorf("before any connect: detail %q, want %q", got, "no health check")
	}
	for _, path := range []string{"/", "/plain"} {
		if got := <-getAsync("http://" + web + path); got != "502 Bad Gateway could not connect to the endpoint\n" {
			t.Fatalf("GET %s: %q, want the node's 502", path, got)
		}
	}
	// Both test CAs are named alike, and crypto/x509 says so after this.
	if got := detailOf(n, "tls", "e"); !strings.HasPrefix(got, "last connect failed: TLS: x509: certificate signed by unknown authority") {
		t.Errorf("endpoint of another CA: detail %q", got)
	}
	if got := detailOf(n, "plain", "e"); got != "last connect failed: connection refused" {
		t.Errorf("endpoint refusing: detail %q", got)
	}
	up, err := net.Listen("tcp", later)
	if err != nil {
		t.Fatal(err)
	}
	back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "back") })}
	go back.Serve(up)
	t.Cleanup(func() { back.Close() })
	if got := <-getAsync("http://" + web + "/plain"); got != "200 OK back" {
		t.Fatalf("GET /plain with the endpoint back: %q", got)
	}
	if got := detailOf(n, "plain", "e"); got != "no health check" {
		t.Errorf("after a connect that succeeded: detail %q, want %q", got, "no health check")
	}
}
