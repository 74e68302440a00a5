package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// This file tests the HTTP/1.1 engine through a real node: refused
// requests (smuggling, limits), forwarding headers, WebSocket tunnels.

// wireBackend is an HTTP server that counts every byte that reaches it, so
// that a test can tell that a refused request got nowhere. It answers with
// the forwarding headers (and X-Request-ID) it got, one "Name: value |
// value" line each, and serves a WebSocket echo at /ws.
type wireBackend struct {
	addr  string
	bytes atomic.Int64
}

func startWireBackend(t *testing.T) *wireBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &wireBackend{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Request-Id"} {
			if v := r.Header.Values(k); v != nil {
				fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, " | "))
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(countingListener{ln, &b.bytes})
	t.Cleanup(func() { srv.Close() })
	return b
}

// countingListener counts what its connections read.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// http1Node starts a control plane and a node with one HTTP listener in
// front of b, with the given http options block (and any more listener
// keys, indented as such), and returns the listener's address.
func http1Node(t *testing.T, b *wireBackend, httpOptions string) (string, *cp) {
	t.Helper()
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	lst := freeAddr(t)
	v := c.apply(t, fmt.Sprintf(`
clusters:
  - name: app
    endpoints:
      - { name: a, address: "%s" }
listeners:
  - name: web
    address: "%s"
    protocol: HTTP
    default_cluster: app
    http: %s
`, b.addr, lst, httpOptions))
	waitVersion(t, dp, v)
	return lst, c
}

// Requests that smuggle (ambiguous framing, malformed fields) or pass the
// listener's limits are answered by the node with the status, the
// connection closes, and not one byte reaches the endpoint.
func TestRefusedRequestsEndToEnd(t *testing.T) {
	b := startWireBackend(t)
	lst, _ := http1Node(t, b, "{max_header_bytes: 2048, max_header_count: 20, max_uri_length: 256, max_request_body_bytes: 16}")
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,2\r\n\r\nab", 400},
		{"CL with sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab", 400},
		{"CL with space inside", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\nab", 400},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nab", 400},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"bare LF in chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n", 400},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nab\r\n0\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400},
		{"NUL in name", "GET / HTTP/1.1\r\nHost: x\r\nX-\x00: 1\r\n\r\n", 400},
		{"non-token name", "GET / HTTP/1.1\r\nHost: x\r\nX[A]: 1\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tmore\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n", 400},
		{"Host port not digits", "GET / HTTP/1.1\r\nHost: x:8o\r\n\r\n", 400},
		{"absolute-form userinfo", "GET http://evil@x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment in target", "GET /index.html#.png HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 2048) + "\r\n\r\n", 431},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 20) + "\r\n", 431},
		{"target too long", "GET /" + strings.Repeat("u", 256) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"declared body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n" + strings.Repeat("b", 17), 413},
		{"chunked body too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + strings.Repeat("b", 16) + "\r\n1\r\nb\r\n0\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", lst, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			// The whole answer, up to the close: a read that ends in EOF
			// before the deadline says the node closed the socket.
			raw, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading until the close: %v (got %q)", err, raw)
			}
			want := fmt.Sprintf("HTTP/1.1 %d ", tc.status)
			if !strings.HasPrefix(string(raw), want) || !strings.Contains(string(raw), "\r\nConnection: close\r\n") {
				t.Fatalf("got %q, want %s... with Connection: close", raw, want)
			}
		})
	}
	if n := b.bytes.Load(); n != 0 {
		t.Errorf("the endpoint received %d bytes of refused requests", n)
	}
	// What is within the limits goes through.
	resp, err := http.Post("http://"+lst+"/", "text/plain", strings.NewReader(strings.Repeat("b", 16)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a request within the limits: %v %v", resp, err)
	}
	resp.Body.Close()
}

// forwardedFrom sends a request with spoofed forwarding headers from the
// loopback address ip and returns what the endpoint got, one line per
// header.
func forwardedFrom(t *testing.T, lst, ip string, h2c bool) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+lst+"/", nil)
	req.Host = "app.test"
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.test")
	req.Header.Set("Forwarded", "for=1.2.3.4;proto=https")
	client := ruleClient(ip)
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		client.Transport.(*http.Transport).Protocols = &p
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if h2c && resp.ProtoMajor != 2 {
		t.Fatalf("h2c client answered in HTTP/%d", resp.ProtoMajor)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// A client cannot spoof its address: from an untrusted peer, the endpoint
// sees only the real one; a trusted proxy's headers are extended. HTTP/2
// clients get the same as HTTP/1.1 ones.
func TestForwardingEndToEnd(t *testing.T) {
	b := startWireBackend(t)
	lst, _ := http1Node(t, b, "{h2c: true, forwarding: {style: BOTH, trusted_peers: [127.0.0.2]}}")
	for _, h2c := range []bool{false, true} {
		if got, want := forwardedFrom(t, lst, "127.0.0.3", h2c), "X-Forwarded-For: 127.0.0.3\nX-Forwarded-Proto: http\nX-Forwarded-Host: app.test\n"+
			"Forwarded: for=127.0.0.3;proto=http;host=app.test\n"; got != want {
			t.Errorf("h2c %v: from an untrusted client the endpoint got\n%s\nwant\n%s", h2c, got, want)
		}
		if got, want := forwardedFrom(t, lst, "127.0.0.2", h2c), "X-Forwarded-For: 1.2.3.4, 127.0.0.2\nX-Forwarded-Proto: https\nX-Forwarded-Host: evil.test\n"+
			"Forwarded: for=1.2.3.4;proto=https, for=127.0.0.2;proto=http;host=app.test\n"; got != want {
			t.Errorf("h2c %v: from a trusted proxy the endpoint got\n%s\nwant\n%s", h2c, got, want)
		}
	}
}

// wsEcho sends msg on ws and checks that it comes back.
func wsEcho(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// A WebSocket goes through the node; the tunnel closes when idle for
// tunnel_idle_timeout, and when its listener is removed.
func TestWebSocketEndToEnd(t *testing.T) {
	const idle = time.Second
	b := startWireBackend(t)
	lst, c := http1Node(t, b, "{tunnel_idle_timeout: 1s}")
	dial := func() *websocket.Conn {
		t.Helper()
		ws, err := websocket.Dial("ws://"+lst+"/ws", "", "http://origin.test/")
		if err != nil {
			t.Fatalf("WebSocket through the node: %v", err)
		}
		ws.SetDeadline(time.Now().Add(testTimeout))
		return ws
	}

	ws := dial()
	last := time.Now() // before, as the node may see the echo before we read it
	wsEcho(t, ws, "hello")
	var got string
	if err := websocket.Message.Receive(ws, &got); err != io.EOF {
		t.Fatalf("an idle tunnel: got %q, %v; want EOF", got, err)
	}
	if d := time.Since(last); d < idle {
		t.Errorf("the idle tunnel closed after %v, before tunnel_idle_timeout %v", d, idle)
	}
	ws.Close()

	ws = dial()
	wsEcho(t, ws, "still there")
	c.apply(t, fmt.Sprintf("clusters:\n  - name: app\n    endpoints:\n      - { name: a, address: %q }\n", b.addr))
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatalf("the tunnel outlived its listener: got %q", got)
	}
	ws.Close()
}

// A chunked body passing max_request_body_bytes while it streams is cut:
// the endpoint never gets more than the limit.
func TestStreamingBodyLimitEndToEnd(t *testing.T) {
	b := startWireBackend(t)
	lst, _ := http1Node(t, b, "{max_request_body_bytes: 1024}")
	conn, err := net.DialTimeout("tcp", lst, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n"+strings.Repeat("a", 512)+"\r\n")
	waitFor(t, "the first chunk at the endpoint", func() bool { return b.bytes.Load() >= 512 })
	io.WriteString(conn, "201\r\n"+strings.Repeat("a", 513)+"\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 413 || !resp.Close {
		t.Fatalf("got %v, %v; want 413 and close", resp, err)
	}
	if n := b.bytes.Load(); n >= 1024 {
		t.Errorf("the endpoint received %d bytes", n)
	}
}

// Over an HTTPS listener the endpoint is told the client came with https,
// and a WebSocket (wss) tunnels through the TLS connection.
func TestSecureWebSocketEndToEnd(t *testing.T) {
	b := startWireBackend(t)
	cert, key := selfSigned(t, "ws.example")
	lst, _ := http1Node(t, b, fmt.Sprintf("{tunnel_idle_timeout: 1s}\n    tls:\n      certificates:\n        - cert_pem: |\n%s\n          key_pem: |\n%s\n",
		indent(cert, "            "), indent(key, "            ")))
	tlsCfg := &tls.Config{ServerName: "ws.example", InsecureSkipVerify: true}
	client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	if body, err := get(client, "https://"+lst+"/"); err != nil || !strings.Contains(body, "X-Forwarded-Proto: https\n") {
		t.Fatalf("over HTTPS the endpoint got %q (%v)", body, err)
	}
	cfg, err := websocket.NewConfig("wss://"+lst+"/ws", "https://origin.test/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TlsConfig = tlsCfg
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("wss through the node: %v", err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(testTimeout))
	wsEcho(t, ws, "over")
	wsEcho(t, ws, "tls")
	// Idle: the node ends the tunnel (a TLS close, then the socket).
	var got string
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatalf("an idle wss tunnel stayed open: got %q", got)
	}
}
