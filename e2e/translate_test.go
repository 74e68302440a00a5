package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/sluice-lb/sluice/dataplane"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file tests what an HTTP/1.1 client gets on a listener whose rules
// may route to an http2 cluster, where the HTTP/2 engine serves every
// connection (Translate), and what reaches endpoints through that engine.

// startTargetBackend is an HTTP server (h2c only, with h2) that answers
// with the request target and Host it got, as "name uri=... host=...".
func startTargetBackend(t *testing.T, name string, h2 bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s uri=%s host=%s", name, r.RequestURI, r.Host)
	})}
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// applyPlainAndTranslated has the node dp serve two HTTP listeners to
// cluster web (the endpoint at web), and returns their addresses: plain,
// served by the HTTP/1.1 engine, and translated, whose rule for Host
// h2.test routes to the http2 cluster grpc (the endpoint at grpc), so
// that the HTTP/2 engine serves all of its connections.
func applyPlainAndTranslated(t *testing.T, c *cp, dp *dataplane.Dataplane, web, grpc string) (plain, translated string) {
	t.Helper()
	plain, translated = freeAddr(t), freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [ { name: web, address: %s } ]
  - name: grpc
    http2: true
    endpoints: [ { name: h2, address: %s } ]
listeners:
  - { name: plain, address: %s, protocol: HTTP, default_cluster: web }
  - name: translated
    address: %s
    protocol: HTTP
    default_cluster: web
    rules:
      - { match: { host: { exact: h2.test } }, route: grpc }
`, web, grpc, plain, translated)))
	return plain, translated
}

// A path that starts with "//" is a path, not an authority: it reaches the
// endpoint as it was sent (origin-form), over HTTP/1.1 and HTTP/2, from
// HTTP/1.1 and HTTP/2 clients alike, so that the path the rules saw is the
// one the endpoint serves and the Host stays the client's.
func TestDoubleSlashPathTranslated(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web, grpc := startTargetBackend(t, "web", false), startTargetBackend(t, "h2", true)
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [ { name: web, address: %s } ]
  - name: grpc
    http2: true
    endpoints: [ { name: h2, address: %s } ]
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: web
    http: { h2c: true }
    rules:
      - { match: { path: { prefix: /admin } }, deny: {} }
      - { match: { host: { exact: h2.test } }, route: grpc }
`, web, grpc, listen)))

	for _, cl := range []struct {
		name   string
		client *http.Client
	}{
		{"HTTP/1.1 client", &http.Client{Timeout: testTimeout, Transport: &http.Transport{}}},
		{"h2c client", h2Client(true)},
	} {
		for _, tc := range []struct{ host, path, want string }{
			{"app.test", "/admin", "request denied\n"},
			{"app.test", "//x.example/admin", "web uri=//x.example/admin host=app.test"},
			{"x.example", "//x.example/admin", "web uri=//x.example/admin host=x.example"},
			{"h2.test", "//h2.test/admin", "h2 uri=//h2.test/admin host=h2.test"},
			{"h2.test", "//other.test/admin?q=1", "h2 uri=//other.test/admin?q=1 host=h2.test"},
		} {
			req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
			req.Host = tc.host
			// URL.Path, not Opaque: the client's own RequestURI would turn
			// an Opaque "//x/y" into an absolute URL too.
			p, q, _ := strings.Cut(tc.path, "?")
			req.URL.Path, req.URL.RawQuery = p, q
			resp, err := cl.client.Do(req)
			if err != nil {
				t.Fatalf("%s: GET %s (Host %s): %v", cl.name, tc.path, tc.host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tc.want {
				t.Errorf("%s: GET %s (Host %s): %d %q, want %q", cl.name, tc.path, tc.host, resp.StatusCode, body, tc.want)
			}
		}
	}
}

// A WebSocket reaches an HTTP/1.1 cluster through a listener that routes
// other paths to an http2 cluster (so the HTTP/2 engine serves its HTTP/1.1
// connections), in clear and over TLS, as on any other listener: it echoes,
// and idles out after tunnel_idle_timeout. An upgrade routed to the http2
// cluster is answered 501, not sent on as a plain request, and an upgrade
// the endpoint declines is an ordinary response on a connection that goes
// on in HTTP/1.1. Removing the listener ends its tunnels.
func TestWebSocketTranslatedListener(t *testing.T) {
	const idle = time.Second
	c := startCP(t, t.TempDir(), "")
	b, h2 := startWireBackend(t), startH2CBackend(t)
	dp := startNode(t, c.addr, "node-1")
	plain, secure := freeAddr(t), freeAddr(t)
	cert, key := selfSigned(t, "ws.example")
	listener := func(name, addr string) string {
		return fmt.Sprintf(`
  - name: %s
    address: %s
    protocol: HTTP
    default_cluster: app
    http: { tunnel_idle_timeout: 1s }
    rules:
      - { match: { path: { prefix: /grpc } }, route: grpc }
`, name, addr)
	}
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: app
    endpoints: [ { name: a, address: %s } ]
  - name: grpc
    http2: true
    endpoints: [ { name: g, address: %s } ]
listeners:`, b.addr, h2)+listener("plain", plain)+listener("secure", secure)+tlsYAML(cert, key)))

	tlsCfg := &tls.Config{ServerName: "ws.example", InsecureSkipVerify: true}
	for _, tc := range []struct {
		name, url, origin string
		tls               *tls.Config
	}{
		{"ws", "ws://" + plain + "/ws", "http://origin.test/", nil},
		{"wss", "wss://" + secure + "/ws", "https://origin.test/", tlsCfg},
	} {
		cfg, err := websocket.NewConfig(tc.url, tc.origin)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TlsConfig = tc.tls
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatalf("%s through a translated listener: %v", tc.name, err)
		}
		ws.SetDeadline(time.Now().Add(testTimeout))
		wsEcho(t, ws, "hello "+tc.name)
		// Before the last exchange, not after: the node saw its last byte
		// when it relayed the echo, before this client had read it (1.8 ms
		// before, once, over TLS on a busy machine), and its idle time
		// runs from there.
		last := time.Now()
		wsEcho(t, ws, "and again")
		var got string
		if err := websocket.Message.Receive(ws, &got); err == nil {
			t.Fatalf("%s: an idle tunnel stayed open: got %q", tc.name, got)
		}
		if d := time.Since(last); d < idle {
			t.Errorf("%s: the idle tunnel closed after %v, before tunnel_idle_timeout %v", tc.name, d, idle)
		}
		ws.Close()
	}

	conn, err := net.DialTimeout("tcp", plain, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(conn)
	upgrade := func(path string) *http.Response {
		t.Helper()
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("upgrade of %s: %v", path, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := upgrade("/grpc/ws"); resp.StatusCode != 501 {
		t.Errorf("an upgrade routed to the http2 cluster: %d, want 501", resp.StatusCode)
	}
	// The wire backend answers an upgrade elsewhere than /ws as any GET.
	if resp := upgrade("/plain"); resp.StatusCode != 200 || resp.Header.Get("Upgrade") != "" || resp.Close {
		t.Errorf("an upgrade the endpoint declined: %d, Upgrade %q, close %v; want 200, none, kept",
			resp.StatusCode, resp.Header.Get("Upgrade"), resp.Close)
	}
	if resp := upgrade("/plain"); resp.StatusCode != 200 {
		t.Errorf("the next request on the connection: %d", resp.StatusCode)
	}

	// Removing the listener closes its tunnels.
	ws, err := websocket.Dial("ws://"+plain+"/ws", "", "http://origin.test/")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(testTimeout))
	wsEcho(t, ws, "before the removal")
	c.apply(t, fmt.Sprintf("clusters:\n  - name: app\n    endpoints:\n      - { name: a, address: %q }\n", b.addr))
	var got string
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Errorf("the tunnel outlived its listener: got %q", got)
	}
}

// TestRefusedHeadTranslated: a request head the node refuses is answered
// and recorded alike whichever engine serves the listener: on a plain
// HTTP listener (the HTTP/1.1 engine) and on one that may route to an
// http2 cluster (the HTTP/2 engine, whose net/http reads it), the client
// gets 400 with the same text saying why, its connection is recorded as
// bad_request with one request, failed, and the access log has its line
// with that status and cause.
func TestRefusedHeadTranslated(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web, grpc := startTargetBackend(t, "web", false), startTargetBackend(t, "h2", true)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	plain, translated := applyPlainAndTranslated(t, c, dp, web, grpc)

	var said []string
	for i, addr := range []string{plain, translated} {
		ip := fmt.Sprintf("127.0.7.%d", i+1)
		d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(conn, "GET /refused HTTP/1.1\r\nHost: app.test\r\nno colon here\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		said = append(said, string(body))
		if resp.StatusCode != 400 {
			t.Errorf("%s: %s, want 400", addr, resp.Status)
		}
		if r := connRecord(t, c, ip); r.GetCloseReason() != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST || r.GetEndpoint() != "" ||
			r.GetRequests() != 1 || r.GetFailedRequests() != 1 {
			t.Errorf("%s: record %v, want BAD_REQUEST, no endpoint, one request, failed", addr, r)
		}
	}
	if said[0] == "" || said[1] != said[0] {
		t.Errorf("the HTTP/2 engine said %q, the HTTP/1.1 engine %q", said[1], said[0])
	}
	dp.Close() // flushes the log
	got := map[string]map[string]any{}
	for _, l := range out.lines(t) {
		got[fmt.Sprint(l["listener"])] = l
	}
	for _, name := range []string{"plain", "translated"} {
		l := got[name]
		if l["status"] != 400.0 || l["cause"] != "bad_request" || l["proto"] != "HTTP/1.1" {
			t.Errorf("listener %s: access log line %v, want status 400, cause bad_request, HTTP/1.1", name, l)
		}
	}
}

// A request the HTTP/1.1 engine forwards reaches the endpoint through a
// translating listener too, as a user of the plain one sees it: an
// HTTP/1.0 request without Host (HAProxy's default health check is
// "OPTIONS / HTTP/1.0"), which the endpoint gets with its own address as
// Host, and a request with Expect: 100-continue, whose endpoint answers
// first: an endpoint that does not read the body (these) answers before
// the client sends it, as it would behind HAProxy. The node used to
// refuse the first with 400 and answer 100 Continue to the second itself.
func TestHTTP10AndExpectTranslated(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web, grpc := startTargetBackend(t, "web", false), startTargetBackend(t, "h2", true)
	dp := startNode(t, c.addr, "node-1")
	plain, translated := applyPlainAndTranslated(t, c, dp, web, grpc)

	for _, addr := range []string{plain, translated} {
		for _, tc := range []struct{ name, sent, want string }{
			{"HTTP/1.0 without Host", "OPTIONS /check HTTP/1.0\r\n\r\n", "web uri=/check host=" + web},
			{"Expect: 100-continue", "PUT /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", "web uri=/up host=app.test"},
		} {
			conn, err := net.DialTimeout("tcp", addr, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(testTimeout))
			io.WriteString(conn, tc.sent)
			// The first answer: a 100 Continue would come first if the
			// node answered the expectation itself.
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("%s, %s: %v", addr, tc.name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			conn.Close()
			if resp.StatusCode != 200 || string(body) != tc.want {
				t.Errorf("%s, %s: first answered %s %q, want the endpoint's 200 %q", addr, tc.name, resp.Status, body, tc.want)
			}
		}
	}
	// Through the translating listener to the HTTP/2 endpoint too.
	conn, err := net.DialTimeout("tcp", translated, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(conn, "PUT /up HTTP/1.1\r\nHost: h2.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "h2 uri=/up host=h2.test" {
		t.Errorf("to the HTTP/2 endpoint: first answered %s %q, want its 200", resp.Status, body)
	}
}
