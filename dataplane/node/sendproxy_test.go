package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// keepAlive is a client's keep-alive connection from a loopback address.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialFrom(t *testing.T, from, addr string) *keepAlive {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return &keepAlive{c, bufio.NewReader(c)}
}

// get sends one request on the connection and returns the response body.
func (k *keepAlive) get(t *testing.T, path string) string {
	t.Helper()
	fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestSendProxyPrivateConnections: through one HTTP listener, two clients'
// keep-alive requests to an endpoint with send_proxy each reach it over a
// connection whose header names that client, never the other's. Each
// client's requests reuse its own connection, which closes with the
// client's. An endpoint with send_proxy OFF under the same cluster gets
// plain pooled connections.
func TestSendProxyPrivateConnections(t *testing.T) {
	n := newNode(t)
	pe := startProxyEndpoint(t, "pp")
	plain := backend(t, "plain")
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: pp
    send_proxy: V2
    endpoints: [{ name: a, address: "%s" }]
  - name: plain
    send_proxy: V1
    endpoints: [{ name: p, address: "%s", send_proxy: OFF }]
listeners:
  - { name: l, address: "%s", protocol: HTTP, default_cluster: pp, rules: [{ match: { path: { prefix: /plain } }, route: plain }] }
`, pe.addr, plain, addr)); err != nil {
		t.Fatal(err)
	}
	a, b := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.3", addr)
	_, portA, _ := net.SplitHostPort(a.c.LocalAddr().String())
	_, portB, _ := net.SplitHostPort(b.c.LocalAddr().String())
	connOf := map[string]string{}
	for i := range 4 {
		for _, c := range []struct {
			k    *keepAlive
			want string
		}{{a, "127.0.0.2:" + portA}, {b, "127.0.0.3:" + portB}} {
			got := c.k.get(t, "/")
			name, rest, _ := strings.Cut(got, " ")
			client, conn, _ := strings.Cut(rest, " ")
			if name != "pp" || client != c.want {
				t.Fatalf("request %d of %s reached the endpoint as %q", i, c.want, got)
			}
			if prev, ok := connOf[client]; ok && prev != conn {
				t.Errorf("request %d of %s came over %s, its earlier ones over %s", i, c.want, conn, prev)
			}
			connOf[client] = conn
			// A request elsewhere in between keeps the private
			// connection parked.
			if got := c.k.get(t, "/plain"); got != "plain" {
				t.Fatalf("/plain: %q", got)
			}
		}
	}
	if connOf["127.0.0.2:"+portA] == connOf["127.0.0.3:"+portB] {
		t.Fatalf("both clients went over %s", connOf["127.0.0.2:"+portA])
	}
	// Closing client A closes its endpoint connection.
	a.c.Close()
	select {
	case closed := <-pe.closed:
		if want := connOf["127.0.0.2:"+portA]; "conn="+fmt.Sprint(closed) != want {
			t.Errorf("endpoint connection %d closed, want %s", closed, want)
		}
	case <-time.After(testTimeout):
		t.Fatalf("client A's endpoint connection still open after %v", testTimeout)
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.conns != 2 || pe.bare != 0 {
		t.Errorf("the endpoint got %d connections with a header and %d without, want 2 and 0", pe.conns, pe.bare)
	}
}

// TestSendProxyHealthChecks: checks of an endpoint that takes PROXY
// headers send one (it closes connections without), so it is UP; the
// same endpoint checked without send_proxy is DOWN.
func TestSendProxyHealthChecks(t *testing.T) {
	n := newNode(t)
	pe := startProxyEndpoint(t, "pp")
	if err := n.Apply("1", parse(t, `
clusters:
  - name: http
    send_proxy: V1
    health_check: { interval: 100ms, rise: 1, fall: 1, http: { path: / } }
    endpoints:
      - { name: v1, address: "%[1]s" }
      - { name: v2, address: "%[1]s", send_proxy: V2 }
      - { name: off, address: "%[1]s", send_proxy: OFF }
  - name: tcp
    send_proxy: V2
    health_check: { interval: 100ms, rise: 1, fall: 1 }
    endpoints: [{ name: t, address: "%[1]s" }]
`, pe.addr)); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct{ cluster, name, want string }{
		{"http", "v1", "UP"}, {"http", "v2", "UP"}, {"http", "off", "DOWN"}, {"tcp", "t", "UP"},
	} {
		waitUntil(t, e.cluster+"/"+e.name+" "+e.want, func() bool { return status(t, n, e.cluster, e.name).Health == e.want })
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.conns == 0 {
		t.Errorf("no check reached the endpoint with a header")
	}
}
