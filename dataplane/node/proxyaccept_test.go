package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// proxyEndpoint is an HTTP endpoint behind "listen ... proxy_protocol":
// every connection must start with a PROXY header, or it is closed
// unanswered. Each response says "name client conn=N": the client the
// header of its connection named ("local" for one without an address)
// and the number of that connection, counted from 1; its Proxy-Dest
// header is the destination the header named.
type proxyEndpoint struct {
	addr   string
	mu     sync.Mutex
	conns  int
	bare   int // connections closed for want of a header
	closed chan int
}

type connKey struct{}

type headerConn struct {
	net.Conn
	r      io.Reader
	client string
	dest   string
	n      int
	onEnd  func(int)
	once   sync.Once
}

func (c *headerConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *headerConn) Close() error {
	c.once.Do(func() { c.onEnd(c.n) })
	return c.Conn.Close()
}

// headerListener takes a PROXY header off each accepted connection.
type headerListener struct {
	net.Listener
	pe *proxyEndpoint
}

func (l headerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(testTimeout))
		h, rest, err := proxyproto.Read(c, make([]byte, 256))
		c.SetReadDeadline(time.Time{})
		if err != nil || h == nil {
			l.pe.mu.Lock()
			l.pe.bare++
			l.pe.mu.Unlock()
			c.Close()
			continue
		}
		client, dest := "local", "local"
		if !h.Local {
			client, dest = h.Source.String(), h.Dest.String()
		}
		l.pe.mu.Lock()
		l.pe.conns++
		n := l.pe.conns
		l.pe.mu.Unlock()
		return &headerConn{Conn: c, r: io.MultiReader(strings.NewReader(string(rest)), c), client: client, dest: dest, n: n, onEnd: func(n int) {
			select {
			case l.pe.closed <- n:
			default:
			}
		}}, nil
	}
}

func startProxyEndpoint(t *testing.T, name string) *proxyEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pe := &proxyEndpoint{addr: ln.Addr().String(), closed: make(chan int, 64)}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hc := r.Context().Value(connKey{}).(*headerConn)
			w.Header().Set("Proxy-Dest", hc.dest)
			fmt.Fprintf(w, "%s %s conn=%d", name, hc.client, hc.n)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
	}
	go srv.Serve(headerListener{ln, pe})
	t.Cleanup(func() { srv.Close() })
	return pe
}

// records collects the node's connection records.
type records struct {
	mu  sync.Mutex
	all []conntrack.ConnInfo
}

func (r *records) add(ci *conntrack.ConnInfo) {
	r.mu.Lock()
	r.all = append(r.all, *ci)
	r.mu.Unlock()
}

// wait returns the first record of listener that holds, waiting for it.
func (r *records) wait(t *testing.T, listener string, what string, ok func(conntrack.ConnInfo) bool) conntrack.ConnInfo {
	t.Helper()
	var found conntrack.ConnInfo
	waitUntil(t, what, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ci := range r.all {
			if ci.Listener == listener && ok(ci) {
				found = ci
				return true
			}
		}
		return false
	})
	return found
}

// waitAll waits for n records and returns them.
func (r *records) waitAll(t *testing.T, n int) []conntrack.ConnInfo {
	t.Helper()
	var all []conntrack.ConnInfo
	waitUntil(t, fmt.Sprintf("the records of %d connections", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		all = slices.Clone(r.all)
		return len(all) == n
	})
	return all
}

func newRecordingNode(t *testing.T) (*Node, *records) {
	rec := &records{}
	n := New(Options{Logger: slog.New(slog.DiscardHandler), OnConn: rec.add})
	t.Cleanup(n.Close)
	return n, rec
}

// exchange sends raw bytes on a new connection from the loopback address
// from (with port 0: any) to addr, then reads until the node closes, and
// returns what came back.
func exchange(t *testing.T, from, addr, send string) string {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, send)
	got, _ := io.ReadAll(c)
	return string(got)
}

// body is the body of the one response in raw, or raw itself when it is
// not one.
func body(raw string) string {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		return raw
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

const get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

func v2Header(src, dst string) string {
	return string(proxyproto.AppendV2(nil, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)))
}

// TestProxyAccept: a listener with proxy_protocol takes the client's
// address from a v1 or v2 header, TCP or HTTP; the endpoint (sent a
// header of its own) sees that address, rules on source match it, and the
// record names it. The header sent on names the destination the one
// received named, as HAProxy's does. A connection without a header is
// served with its peer's address, and the header sent on names the
// listener; v2 LOCAL and v1 UNKNOWN keep the peer's too.
func TestProxyAccept(t *testing.T) {
	n, rec := newRecordingNode(t)
	pe := startProxyEndpoint(t, "pp")
	vip := startProxyEndpoint(t, "vip")
	lhttp, ltcp := freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - { name: pp, send_proxy: V1, endpoints: [{ name: a, address: "%s" }] }
  - { name: vip, endpoints: [{ name: v, address: "%s", send_proxy: V2 }] }
listeners:
  - { name: http, address: "%s", protocol: HTTP, default_cluster: pp, proxy_protocol: {},
      rules: [{ match: { source: 198.51.100.0/24 }, route: vip }] }
  - { name: tcp, address: "%s", protocol: TCP, default_cluster: pp, proxy_protocol: {},
      rules: [{ match: { source: 198.51.100.0/24 }, route: vip }] }
`, pe.addr, vip.addr, lhttp, ltcp)); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ name, addr string }{{"http", lhttp}, {"tcp", ltcp}} {
		for _, tc := range []struct {
			name, header, from, want, dest string
		}{
			{"v1", "PROXY TCP4 203.0.113.7 192.0.2.1 4242 80\r\n", "", "200 pp 203.0.113.7:4242", "192.0.2.1:80"},
			{"v2", v2Header("[2001:db8::7]:4343", "[2001:db8::1]:80"), "", "200 pp [2001:db8::7]:4343", "[2001:db8::1]:80"},
			{"v2 rule", v2Header("198.51.100.9:1000", "192.0.2.1:8080"), "", "200 vip 198.51.100.9:1000", "192.0.2.1:8080"},
			{"v2 mapped", v2Header("[::ffff:203.0.113.8]:4444", "[::ffff:192.0.2.2]:443"), "", "200 pp 203.0.113.8:4444", "192.0.2.2:443"},
			{"none", "", "127.0.0.7", "200 pp 127.0.0.7:", l.addr},
			{"v1 unknown", "PROXY UNKNOWN\r\n", "127.0.0.8", "200 pp 127.0.0.8:", l.addr},
			{"v2 local", string(proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})), "127.0.0.9", "200 pp 127.0.0.9:", l.addr},
		} {
			raw := exchange(t, tc.from, l.addr, tc.header+get)
			if got := body(raw); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%s %s: got %q, want %q...", l.name, tc.name, got, tc.want)
			}
			if !strings.Contains(raw, "\r\nProxy-Dest: "+tc.dest+"\r\n") {
				t.Errorf("%s %s: the endpoint's header did not name %s as the destination:\n%s", l.name, tc.name, tc.dest, raw)
			}
		}
		ci := rec.wait(t, l.name, "the record of the v1 client", func(ci conntrack.ConnInfo) bool { return ci.Client == "203.0.113.7:4242" })
		if ci.Endpoint != "a" {
			t.Errorf("%s: record %+v", l.name, ci)
		}
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.bare != 0 {
		t.Errorf("%d connections reached the endpoint without a header", pe.bare)
	}
}

// accessLog keeps what a node's access log is given: every exchange.
type accessLog struct {
	mu    sync.Mutex
	lines map[string][]meter.Exchange // by listener
}

func (l *accessLog) Sample() bool { return true }

func (l *accessLog) Log(listener string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lines == nil {
		l.lines = map[string][]meter.Exchange{}
	}
	l.lines[listener] = append(l.lines[listener], *x)
}

// from returns the exchanges of listener's log from the client address.
func (l *accessLog) from(listener, addr string) []meter.Exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	var xs []meter.Exchange
	for _, x := range l.lines[listener] {
		if x.Client.Addr().String() == addr {
			xs = append(xs, x)
		}
	}
	return xs
}

// TestProxyAcceptRefusals: a required header that does not come, a
// malformed one, and one that comes too slowly close the connection
// unanswered, recorded as a bad request or a client timeout, in the
// connection records and in the access log, and counted among the
// listener's connections. Nothing reaches the endpoint.
func TestProxyAcceptRefusals(t *testing.T) {
	rec, log := &records{}, &accessLog{}
	n := New(Options{Logger: slog.New(slog.DiscardHandler), OnConn: rec.add, AccessLog: log})
	t.Cleanup(n.Close)
	pe := startProxyEndpoint(t, "pp")
	strict, loose, guarded := freeAddr(t), freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - { name: pp, send_proxy: V2, endpoints: [{ name: a, address: "%s" }] }
listeners:
  - { name: strict, address: "%s", protocol: HTTP, default_cluster: pp, proxy_protocol: { required: true, timeout: 200ms } }
  - { name: loose, address: "%s", protocol: TCP, default_cluster: pp, proxy_protocol: { timeout: 200ms } }
  - { name: guarded, address: "%s", protocol: TCP, default_cluster: pp, proxy_protocol: { required: true, trusted_sources: [127.0.0.99] } }
`, pe.addr, strict, loose, guarded)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, listener, addr, from, send string
		reason                           sluicev1.CloseReason
		detail                           string // the access log's
	}{
		{"no header", "strict", strict, "127.0.0.11", get, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
			"no PROXY header, which the listener requires"},
		{"malformed v1", "strict", strict, "127.0.0.12", "PROXY TCP4 203.0.113.7 192.0.2.1 4242\r\n" + get, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
			"malformed PROXY v1 header: "},
		{"malformed v2", "loose", loose, "127.0.0.13", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00" + get, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
			"malformed PROXY v2 header: "},
		{"v2 over 2048 bytes", "loose", loose, "127.0.0.17", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x10\x00" + get, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
			"malformed PROXY v2 header: declares 4112 bytes, longer than 2048"},
		{"half a header", "strict", strict, "127.0.0.14", "PROXY TCP4 203.0.", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT,
			"no whole PROXY header within the listener's proxy_protocol.timeout (200ms)"},
		{"nothing", "loose", loose, "127.0.0.15", "", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT,
			"no whole PROXY header within the listener's proxy_protocol.timeout (200ms)"},
		{"an untrusted peer", "guarded", guarded, "127.0.0.16", "PROXY TCP4 203.0.113.7 192.0.2.1 4242 80\r\n" + get, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
			"a PROXY header is required, and 127.0.0.16 is not among the listener's trusted_sources"},
	} {
		if got := exchange(t, tc.from, tc.addr, tc.send); got != "" {
			t.Errorf("%s: got %q, want the connection closed unanswered", tc.name, got)
		}
		ci := rec.wait(t, tc.listener, "the record of "+tc.name, func(ci conntrack.ConnInfo) bool { return strings.HasPrefix(ci.Client, tc.from+":") })
		if ci.Reason != tc.reason || ci.Endpoint != "" {
			t.Errorf("%s: recorded %v (endpoint %q), want %v", tc.name, ci.Reason, ci.Endpoint, tc.reason)
		}
		xs := log.from(tc.listener, tc.from)
		if len(xs) != 1 {
			t.Errorf("%s: %d access log lines, want 1: %+v", tc.name, len(xs), xs)
			continue
		}
		if x := xs[0]; x.Proto != meter.ProtoTCP || x.Cause != tc.reason || x.Cluster != nil || x.Status != 0 {
			t.Errorf("%s: logged %s, cause %v, cluster %v, status %d; want a TCP session, %v, none, 0", tc.name, x.Proto, x.Cause, x.Cluster, x.Status, tc.reason)
		}
		if x := xs[0]; !strings.HasPrefix(x.Detail, tc.detail) {
			t.Errorf("%s: logged detail %q, want %q", tc.name, x.Detail, tc.detail)
		}
	}
	for _, m := range n.ListenerMeters() {
		want := map[string]uint64{"strict": 3, "loose": 3, "guarded": 1}[m.Name()]
		if c := m.Counts(); c.Connections != want || c.Active != 0 || c.Requests != [meter.NumClasses]uint64{} {
			t.Errorf("listener %s: %d connections, %d open, requests %v; want %d, none open, no requests", m.Name(), c.Connections, c.Active, c.Requests, want)
		}
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.conns+pe.bare != 0 {
		t.Errorf("%d connections reached the endpoint", pe.conns+pe.bare)
	}
}

// TestProxyAcceptUntrusted: from a peer outside trusted_sources no header
// is read: an HTTP listener sees one as a bad request (400), a request
// without one is served, and rules on source see the real peer. A
// required listener closes such a peer's connections.
func TestProxyAcceptUntrusted(t *testing.T) {
	n, _ := newRecordingNode(t)
	pe := startProxyEndpoint(t, "pp")
	peer := startProxyEndpoint(t, "peer")
	open, strict := freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - { name: pp, send_proxy: V1, endpoints: [{ name: a, address: "%s" }] }
  - { name: peer, send_proxy: V1, endpoints: [{ name: p, address: "%s" }] }
listeners:
  - { name: open, address: "%s", protocol: HTTP, default_cluster: pp,
      proxy_protocol: { trusted_sources: [127.0.0.2, 192.0.2.0/24] },
      rules: [{ match: { source: 127.0.0.3 }, route: peer }] }
  - { name: strict, address: "%s", protocol: HTTP, default_cluster: pp,
      proxy_protocol: { required: true, trusted_sources: [127.0.0.2] } }
`, pe.addr, peer.addr, open, strict)); err != nil {
		t.Fatal(err)
	}
	const v1 = "PROXY TCP4 127.0.0.2 192.0.2.1 4242 80\r\n"
	if got := body(exchange(t, "127.0.0.3", open, v1+get)); !strings.HasPrefix(got, "400 ") {
		t.Errorf("untrusted peer's header: %q, want a 400", got)
	}
	if got := body(exchange(t, "127.0.0.3", open, get)); !strings.HasPrefix(got, "200 peer 127.0.0.3:") {
		t.Errorf("untrusted peer: %q, want the rule on its own address to route it", got)
	}
	if got := body(exchange(t, "127.0.0.2", open, "PROXY TCP4 127.0.0.3 192.0.2.1 4242 80\r\n"+get)); got != "200 peer 127.0.0.3:4242 conn=2" {
		t.Errorf("trusted peer's header: %q", got)
	}
	if got := exchange(t, "127.0.0.3", strict, v1+get); got != "" {
		t.Errorf("untrusted peer of a required listener: %q, want closed", got)
	}
	if got := body(exchange(t, "127.0.0.2", strict, v1+get)); !strings.HasPrefix(got, "200 pp 127.0.0.2:4242") {
		t.Errorf("trusted peer of a required listener: %q", got)
	}
}

// TestProxyAcceptHTTP2: an HTTP/2 client behind a PROXY header (h2c) is
// served by the HTTP/2 engine, whose endpoint connections carry the
// client and the destination the header named.
func TestProxyAcceptHTTP2(t *testing.T) {
	n, _ := newRecordingNode(t)
	pe := startProxyEndpoint(t, "pp")
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - { name: pp, send_proxy: V2, endpoints: [{ name: a, address: "%s" }] }
listeners:
  - { name: h2, address: "%s", protocol: HTTP, default_cluster: pp, http: { h2c: true }, proxy_protocol: { required: true } }
`, pe.addr, addr)); err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err == nil {
			_, err = io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n")
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: testTimeout, Transport: tr}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(b), "pp 203.0.113.7:4242 ") {
		t.Errorf("got %s %q, want HTTP/2 and the client the header named", resp.Proto, b)
	}
	if got := resp.Header.Get("Proxy-Dest"); got != "192.0.2.1:443" {
		t.Errorf("the endpoint's header named %q as the destination, want 192.0.2.1:443", got)
	}
}
