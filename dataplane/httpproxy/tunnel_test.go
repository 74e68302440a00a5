package httpproxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// wsEchoBackend is a WebSocket echo server (golang.org/x/net/websocket,
// an implementation of its own: it checks the handshake and the masking of
// client frames).
func wsEchoBackend(t testing.TB) *backend {
	return startBackend(t, "ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
}

// A WebSocket client talks to an echo endpoint through the proxy, and the
// connection's record counts it as one request with its bytes.
func TestWebSocketEcho(t *testing.T) {
	b := wsEchoBackend(t)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	cfg, err := websocket.NewConfig("ws://"+p.addr+"/echo", "http://origin.test/")
	if err != nil {
		t.Fatal(err)
	}
	// The client closes its socket without a websocket close frame, so
	// the proxy sees the client's end first: with a close frame, the
	// server's reply to it could race the client's FIN to the proxy.
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, raw)
	if err != nil {
		t.Fatalf("websocket handshake through the proxy: %v", err)
	}
	ws.SetDeadline(time.Now().Add(defaultTestTimeout))
	for _, msg := range []string{"hello", strings.Repeat("x", 100<<10), "bye"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		// The echo server writes what each read got as a frame of its own:
		// a long message may come back in several.
		var got string
		for len(got) < len(msg) {
			var part string
			if err := websocket.Message.Receive(ws, &part); err != nil {
				t.Fatal(err)
			}
			got += part
		}
		if got != msg {
			t.Fatalf("echo of %d bytes: got %d different bytes", len(msg), len(got))
		}
	}
	raw.Close()
	ci := p.info()
	if ci.Requests != 1 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("ConnInfo requests=%d reason=%v, want 1 CLIENT_CLOSED", ci.Requests, ci.Reason)
	}
	if ci.BytesIn < 100<<10 || ci.BytesOut < 100<<10 {
		t.Errorf("ConnInfo bytes in=%d out=%d, want the 100 KiB message each way", ci.BytesIn, ci.BytesOut)
	}
	waitFor(t, func() bool { return b.ep.Conns() == 0 && b.ep.Inflight() == 0 })
}

// TestTunnelBytesCountedAsTheyMove: the bytes of an open WebSocket show
// in the endpoint's and the listener's counters within a settle of
// moving, not only when the tunnel ends; once it ended, each byte is
// counted once.
func TestTunnelBytesCountedAsTheyMove(t *testing.T) {
	b := wsEchoBackend(t)
	lm := meter.NewListener("l", nil)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, Meter: lm})
	conn := p.dial()
	br := bufio.NewReader(conn)
	if resp, _ := wsHandshake(t, conn, br, ""); resp.StatusCode != 101 {
		t.Fatalf("status %s", resp.Status)
	}
	if err := wsSend(conn, "hello"); err != nil {
		t.Fatal(err)
	}
	if got, err := wsReceive(br); err != nil || got != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	// A masked frame of 5 bytes is 11 bytes up, its echo 7 down; the heads
	// are the request's and count when it ends.
	waitFor(t, func() bool {
		st, lc := b.ep.Stats(), lm.Counts()
		return st.BytesOut == 11 && st.BytesIn == 7 && lc.BytesIn == 11 && lc.BytesOut == 7
	})
	conn.Close()
	ci := p.info()
	waitFor(t, func() bool { return b.ep.Inflight() == 0 })
	if lc := lm.Counts(); lc.BytesIn != ci.BytesIn || lc.BytesOut != ci.BytesOut {
		t.Errorf("listener counted %d in, %d out; the connection's record %d, %d", lc.BytesIn, lc.BytesOut, ci.BytesIn, ci.BytesOut)
	}
}

// wsHandshake sends a WebSocket upgrade request on c and reads the
// response head.
func wsHandshake(t testing.TB, c net.Conn, br *bufio.Reader, extra string) (*http.Response, string) {
	t.Helper()
	key := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	fmt.Fprintf(c, "GET /echo HTTP/1.1\r\nHost: ws.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nOrigin: http://origin.test/\r\n%s\r\n", key, extra)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the handshake response: %v", err)
	}
	return resp, key
}

// wsAccept is the Sec-WebSocket-Accept of key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsSend writes one masked text frame of a short message (< 126 bytes).
func wsSend(c net.Conn, msg string) error {
	mask := [4]byte{1, 2, 3, 4}
	f := []byte{0x81, 0x80 | byte(len(msg)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(msg) {
		f = append(f, msg[i]^mask[i%4])
	}
	_, err := c.Write(f)
	return err
}

// wsReceive reads one unmasked short frame and returns its payload.
func wsReceive(br *bufio.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return "", err
	}
	if h[1]&0x80 != 0 || h[1]&0x7f >= 126 {
		return "", fmt.Errorf("unexpected frame header %x", h)
	}
	p := make([]byte, h[1]&0x7f)
	_, err := io.ReadFull(br, p)
	return string(p), err
}

// The 101 reaches the client with Upgrade, Connection: upgrade and the
// endpoint's Sec-WebSocket-Accept; the endpoint got the Upgrade request
// with the forwarding headers and the director's header edits; bytes then
// flow both ways.
func TestUpgradeHandshakeAndHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	echo := websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) })
	b := startBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		echo.ServeHTTP(w, r)
	}))
	d := &editDirector{ep: b.ep, req: []*HeaderEdits{mustEdits(t, nil, []Field{{"X-Rule", "on"}}, nil)}}
	p := startProxy(t, &Config{Director: d})
	conn := p.dial()
	br := bufio.NewReader(conn)
	resp, key := wsHandshake(t, conn, br, "")
	if resp.StatusCode != 101 {
		t.Fatalf("status %s", resp.Status)
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, "websocket") {
		t.Errorf("Upgrade %q", got)
	}
	if got := resp.Header.Get("Connection"); !strings.EqualFold(got, "upgrade") {
		t.Errorf("Connection %q", got)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), wsAccept(key); got != want {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if resp.Header.Get("Content-Length") != "" || resp.Header.Get("Transfer-Encoding") != "" {
		t.Errorf("101 with framing fields: %v", resp.Header)
	}
	h := <-seen
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Rule") != "on" || !strings.EqualFold(h.Get("Upgrade"), "websocket") {
		t.Errorf("endpoint saw %v", h)
	}
	for _, msg := range []string{"one", "two"} {
		if err := wsSend(conn, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := wsReceive(br); err != nil || got != msg {
			t.Fatalf("echo %q: %q, %v", msg, got, err)
		}
	}
}

// echo101 is upgradeEchoBackend's answer to an Upgrade request.
const echo101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"

// upgradeEchoBackend switches to protocol "echo" (anything but
// WebSocket), sending "hi\n" in the write of its 101, echoes what comes
// until the proxy half-closes, then says "bye" and closes. Each request
// head is sent on heads.
func upgradeEchoBackend(t testing.TB) (string, chan string) {
	heads := make(chan string, 4)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		heads <- readRequestHead(br)
		io.WriteString(c, echo101+"hi\n")
		io.Copy(c, br)
		io.WriteString(c, "bye")
	})
	return addr, heads
}

// openTunnel asks p to switch to protocol "echo" and checks the 101.
func openTunnel(t *testing.T, p *proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("response %v, %v", resp, err)
	}
	return conn, br
}

// Any Upgrade protocol tunnels; a half-close goes through each way, as on
// a TCP listener, and the bytes the endpoint sent with its 101 arrive.
// The endpoint's counters have each byte it sent and got once, those
// that came with its 101 too.
func TestUpgradeTunnelHalfClose(t *testing.T) {
	addr, heads := upgradeEchoBackend(t)
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn, br := openTunnel(t, p)
	h := <-heads
	if !strings.Contains(h, "\r\nUpgrade: echo\r\n") || !strings.Contains(h, "\r\nConnection: upgrade\r\n") {
		t.Errorf("endpoint got %q", h)
	}
	if line, _ := br.ReadString('\n'); line != "hi\n" {
		t.Fatalf("first bytes %q", line)
	}
	io.WriteString(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo %q", line)
	}
	conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	ci := p.info()
	if ci.Requests != 1 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("ConnInfo requests=%d reason=%v", ci.Requests, ci.Reason)
	}
	if ci.BytesOut < uint64(len("hi\nping\nbye")) {
		t.Errorf("ConnInfo bytes out %d", ci.BytesOut)
	}
	waitFor(t, func() bool { return ep.Conns() == 0 && ep.Inflight() == 0 })
	st := ep.Stats()
	if in, out := len(echo101+"hi\nping\nbye"), len(h+"ping\n"); st.BytesIn != uint64(in) || st.BytesOut != uint64(out) {
		t.Errorf("endpoint counted %d bytes in, %d out; it sent %d, got %d", st.BytesIn, st.BytesOut, in, out)
	}
}

// An endpoint that answers an Upgrade request with anything but 101 gives
// an ordinary response, and the connection goes on in HTTP/1.1.
func TestUpgradeRefusedStaysHTTP(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
		if h := <-heads; !strings.Contains(h, "Upgrade: websocket") {
			t.Errorf("endpoint got %q", h)
		}
		if r := readResponse(t, br, "GET"); r.code != 426 || r.body != "nope" || closes(r) {
			t.Fatalf("request %d: %s %q close=%v", i, r.status, r.body, closes(r))
		}
	}
}

// Upgrade without Connection: upgrade, in HTTP/1.0, or to h2c (left to
// the HTTP/2 side) is not a tunnel request: Upgrade is dropped and the
// request proxied as a plain one; a 101 to it is a bad response.
func TestUpgradeIsProxiedAsPlainRequest(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	for _, req := range []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
		"GET /ws HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
	} {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, req)
		if got := <-heads; strings.Contains(strings.ToLower(got), "upgrade") {
			t.Errorf("for %q, Upgrade forwarded: %q", req, got)
		}
		if r := readResponse(t, br, "GET"); r.code != 502 {
			t.Errorf("for %q, got %s", req, r.status)
		}
	}
}

// A tunnel carrying bytes stays open past TunnelIdleTimeout; one idle for
// that long is closed, both ways.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = time.Second
	addr, _ := upgradeEchoBackend(t)
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, TunnelIdleTimeout: idle, IdleTimeout: 50 * time.Millisecond})
	conn, br := openTunnel(t, p)
	br.ReadString('\n') // "hi"
	// Busy for twice the idle timeout (and far past IdleTimeout, which
	// does not apply to tunnels).
	start := time.Now()
	var last time.Time
	for time.Since(start) < 2*idle {
		last = time.Now()
		io.WriteString(conn, "ping\n")
		if line, err := br.ReadString('\n'); line != "ping\n" {
			t.Fatalf("echo after %v: %q, %v", time.Since(start), line, err)
		}
		time.Sleep(idle / 10)
	}
	expectEOF(t, br)
	if d := time.Since(last); d < idle {
		t.Errorf("closed %v after the last byte, before the idle timeout %v", d, idle)
	}
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("reason %v, want CLIENT_TIMEOUT", ci.Reason)
	}
	waitFor(t, func() bool { return ep.Conns() == 0 && ep.Inflight() == 0 })
}

// Drain leaves a tunnel open (as it does TCP sessions: there is nothing
// graceful to do); closing the client connection from outside, as a
// listener removal or the node's close does, ends it and its endpoint
// connection.
func TestTunnelEndsWithClientConnection(t *testing.T) {
	ended := make(chan struct{})
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br)
		close(ended)
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn, br := openTunnel(t, p)
	p.srv.Drain()
	io.WriteString(conn, "still\n")
	if line, err := br.ReadString('\n'); line != "still\n" {
		t.Fatalf("after Drain: %q, %v", line, err)
	}
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	expectEOF(t, br)
	select {
	case <-ended:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the endpoint connection stayed open")
	}
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
		t.Errorf("reason %v, want LISTENER_CLOSED", ci.Reason)
	}
}

// stopOnDeadline is a connection whose next SetReadDeadline runs stop
// first: the other direction of a tunnel ends it just as this one, back
// from a read, sets its next deadline.
type stopOnDeadline struct {
	net.Conn
	stop func()
}

func (c *stopOnDeadline) SetReadDeadline(d time.Time) error {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	return c.Conn.SetReadDeadline(d)
}

// TestTunnelStopBetweenReads: a direction that the other one stops while
// it is between two reads ends too, rather than read on under the fresh
// deadline it set after stop's. It did not, now and then, in
// TestUpgradeHandshakeAndHeaders: the client's close stopped the tunnel
// right after the last echo, and the endpoint's direction waited on.
func TestTunnelStopBetweenReads(t *testing.T) {
	client, clientPeer := net.Pipe()
	ep, epPeer := net.Pipe()
	for _, c := range []net.Conn{client, clientPeer, ep, epPeer} {
		defer c.Close()
	}
	ts := &tunnelState{client: client, bc: ep, idle: time.Hour}
	ts.last.Store(time.Now().UnixNano())
	src := &stopOnDeadline{Conn: ep, stop: func() { ts.stop(0) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.copy(client, src, make([]byte, 512), &ts.bytes.Down, true)
	}()
	select {
	case <-done:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the endpoint's direction read on after the tunnel was stopped")
	}
}

// TestTunnelWriteReason: a failed write of the bytes behind the heads, on
// the HTTP/2 engine's Upgrade path, is recorded as the relay records its own
// failed writes: a client that stopped reading timed out, a connection the
// node closed is the listener's or the drain's, a reset is the peer's.
func TestTunnelWriteReason(t *testing.T) {
	writeErr := func(c net.Conn) error {
		_, err := c.Write([]byte("x"))
		if err == nil {
			t.Fatal("write succeeded")
		}
		return err
	}
	ep := upstream.New("c", "e", "127.0.0.1:9") // never dialled

	timedOut, _ := loopback.Pair(t)
	timedOut.SetWriteDeadline(time.Now().Add(-time.Second))
	closed, _ := loopback.Pair(t)
	closed.Close()
	reset, peer := loopback.Pair(t)
	peer.SetLinger(0)
	peer.Close()
	if _, err := reset.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the peer's reset succeeded")
	}

	for _, tt := range []struct {
		name       string
		c          net.Conn
		toEndpoint bool
		drain      bool
		want       sluicev1.CloseReason
	}{
		{"client timed out", timedOut, false, false, sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT},
		{"client connection closed by the node", closed, false, false, sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED},
		{"endpoint reset", reset, true, false, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED},
		{"endpoint connection closed by a drain", closed, true, true, sluicev1.CloseReason_CLOSE_REASON_DRAINED},
	} {
		if tt.drain {
			ep.Drain()
		}
		if got := TunnelWriteReason(writeErr(tt.c), ep, tt.c, tt.toEndpoint); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
