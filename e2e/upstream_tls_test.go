package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// tlsBackend is an HTTPS server that answers with its name; /big answers
// 300000 bytes, a POST the length of its body. conns counts the TLS
// connections it accepted.
type tlsBackend struct {
	addr  string
	conns atomic.Int32
}

func startTLSBackend(t *testing.T, name string, cert tls.Certificate) *tlsBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tlsBackend{addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPost:
				n, _ := io.Copy(io.Discard, r.Body)
				io.WriteString(w, strconv.FormatInt(n, 10))
			case r.URL.Path == "/big":
				io.WriteString(w, strings.Repeat("x", 300000))
			default:
				io.WriteString(w, name)
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0), // the handshakes the node refuses
	}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { srv.Close() })
	return b
}

// fetch makes one request and returns the status and body.
func fetch(t *testing.T, client *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestTLSToEndpoints: clusters with tls speak HTTPS to their endpoints,
// from an HTTP listener (over pooled connections, large bodies copied
// both ways) and a TCP listener, and verify them: a certificate of an
// unknown authority marks the endpoint DOWN with the reason shown by the
// control plane and sluicectl stats, and gets no traffic; a server_name
// the certificate does not name fails like a refused connect;
// insecure_skip_verify accepts any certificate.
func TestTLSToEndpoints(t *testing.T) {
	ca := testcert.NewCA(t)
	good := startTLSBackend(t, "good", ca.Server(t, "127.0.0.1"))
	other := startTLSBackend(t, "other", testcert.NewCA(t).Server(t, "127.0.0.1"))
	web, tcpGood, tcpWrong := freeAddr(t), freeAddr(t), freeAddr(t)
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	caPEM := indent(ca.PEM, "        ")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: good
    tls:
      ca_pem: |
%[1]s
    endpoints: [{ name: g1, address: %[2]s }]
  - name: wrongca
    tls:
      ca_pem: |
%[1]s
    health_check: { interval: 100ms, fall: 1, rise: 1 }
    endpoints: [{ name: w1, address: %[3]s }]
  - name: skip
    tls: { insecure_skip_verify: true }
    endpoints: [{ name: s1, address: %[3]s }]
  - name: misnamed
    tls:
      server_name: b.example
      ca_pem: |
%[1]s
    endpoints: [{ name: m1, address: %[2]s }]
listeners:
  - name: web
    address: %[4]s
    protocol: HTTP
    default_cluster: good
    rules:
      - { match: { path: { prefix: /wrongca } }, route: wrongca }
      - { match: { path: { prefix: /skip } }, route: skip }
      - { match: { path: { prefix: /misnamed } }, route: misnamed }
  - { name: tcp-good, address: %[5]s, protocol: TCP, default_cluster: good }
  - { name: tcp-wrongca, address: %[6]s, protocol: TCP, default_cluster: wrongca }
`, caPEM, good.addr, other.addr, web, tcpGood, tcpWrong)))

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := range 5 {
		if code, body := fetch(t, client, "GET", "http://"+web+"/", ""); code != 200 || body != "good" {
			t.Fatalf("request %d: %d %q, want 200 from good", i, code, body)
		}
	}
	// One after the other, they shared one pooled TLS connection: one
	// handshake.
	if n := good.conns.Load(); n != 1 {
		t.Errorf("5 requests in a row opened %d TLS connections to the endpoint, want 1", n)
	}
	if code, body := fetch(t, client, "GET", "http://"+web+"/big", ""); code != 200 || len(body) != 300000 {
		t.Errorf("large response: %d, %d bytes; want 200 and 300000", code, len(body))
	}
	if code, body := fetch(t, client, "POST", "http://"+web+"/", strings.Repeat("y", 200000)); code != 200 || body != "200000" {
		t.Errorf("large request: %d %q; want 200 and the endpoint counting 200000 bytes", code, body)
	}
	if body, err := tcpGet(tcpGood); err != nil || body != "good" {
		t.Errorf("through the TCP listener: %q %v, want good", body, err)
	}
	if code, body := fetch(t, client, "GET", "http://"+web+"/skip", ""); code != 200 || body != "other" {
		t.Errorf("insecure_skip_verify: %d %q, want 200 from other", code, body)
	}
	if code, _ := fetch(t, client, "GET", "http://"+web+"/misnamed", ""); code != 502 {
		t.Errorf("server_name b.example on a certificate for 127.0.0.1: %d, want 502", code)
	}

	waitFor(t, "w1 DOWN for its certificate", func() bool {
		_, ep := c.endpointStats(t, "node-1", "wrongca", "w1")
		return ep.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN
	})
	if _, ep := c.endpointStats(t, "node-1", "wrongca", "w1"); !strings.Contains(ep.GetDetail(), "certificate signed by unknown authority") {
		t.Errorf("w1 detail %q, want the verification error", ep.GetDetail())
	}
	if code, _ := fetch(t, client, "GET", "http://"+web+"/wrongca", ""); code != 503 {
		t.Errorf("wrong CA, endpoint down: %d, want 503", code)
	}
	if body, err := tcpGet(tcpWrong); err == nil {
		t.Errorf("wrong CA through the TCP listener answered %q, want the connection closed", body)
	}
	out, _, code := ctl(t, c.addr, "stats", "--cluster", "wrongca")
	if row := strings.Join(fields(out, "wrongca/w1"), " "); code != 0 || !strings.Contains(row, "DOWN") || !strings.Contains(row, "certificate") {
		t.Errorf("sluicectl stats: exit %d, row of w1 %q, want DOWN and the certificate error\n%s", code, row, out)
	}
}
