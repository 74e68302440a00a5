package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/health"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const testTimeout = 5 * time.Second

func newNode(t *testing.T) *Node {
	t.Helper()
	n := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(n.Close)
	return n
}

func parse(t *testing.T, format string, args ...any) *sluicev1.Snapshot {
	t.Helper()
	s, err := snapshot.Parse([]byte(fmt.Sprintf(format, args...)), "")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

// freeAddr returns a loopback address nothing listens on and no other
// call returned.
func freeAddr(t *testing.T) string { return loopback.FreeAddr(t) }

func backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// holdingBackend is backend(t, "a") but for the path /hold: it holds
// those requests unanswered until their connection closes. held waits for
// the next one to arrive.
func holdingBackend(t *testing.T) (addr string, held func()) {
	t.Helper()
	return namedHoldingBackend(t, "a")
}

// namedHoldingBackend is holdingBackend answering name.
func namedHoldingBackend(t *testing.T, name string) (addr string, held func()) {
	t.Helper()
	arrived := make(chan struct{}, 8)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-r.Context().Done()
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() {
		t.Helper()
		select {
		case <-arrived:
		case <-time.After(testTimeout):
			t.Fatal("no request reached the backend")
		}
	}
}

// h2cClient is an HTTP/2 client with prior knowledge (h2c), bounded by
// testTimeout, whose connections close when the test ends. It counts its
// dials in dials, if not nil.
func h2cClient(t *testing.T, dials *atomic.Int32) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials != nil {
			dials.Add(1)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: testTimeout, Transport: tr}
}

func TestCompileDefaults(t *testing.T) {
	s := parse(t, `
clusters:
  - name: web
    health_check: {}
    endpoints:
      - { name: a, address: 127.0.0.1:1 }
      - { name: b, address: 127.0.0.1:2, weight: 0 }
      - { name: s, address: 127.0.0.1:3, backup: true }
`)
	c := compileCluster(s.GetClusters()[0], nil)
	if c.connectTimeout != defaultConnectTimeout || c.drainTimeout != 0 {
		t.Errorf("timeouts connect %v drain %v, want %v and 0", c.connectTimeout, c.drainTimeout, defaultConnectTimeout)
	}
	if got := []uint32{c.members[0].Weight, c.members[1].Weight}; got[0] != 1 || got[1] != 0 {
		t.Errorf("weights %v, want unset -> 1 and explicit 0 kept", got)
	}
	if !c.members[2].Backup {
		t.Errorf("backup flag lost")
	}
	want := health.Spec{Interval: health.DefaultInterval, Timeout: health.DefaultInterval, Fall: defaultFall, Rise: defaultRise, Jitter: defaultJitter}
	if len(c.checks) != 3 {
		t.Fatalf("%d checks, want one per endpoint", len(c.checks))
	}
	got := c.checks[0]
	got.Key, got.Addr = "", ""
	if got != want {
		t.Errorf("check defaults %+v, want %+v", got, want)
	}
}

// TestListenerSurvivesApply: a connection open on a listener whose address
// and protocol did not change goes on across an apply, and its next request
// follows the new snapshot.
func TestListenerSurvivesApply(t *testing.T) {
	n := newNode(t)
	a, b := backend(t, "a"), backend(t, "b")
	addr := freeAddr(t)
	const tmpl = `
clusters:
  - name: web
    endpoints: [{ name: e, address: "%s" }]
listeners:
  - { name: %s, address: "%s", protocol: HTTP, default_cluster: web }
`
	if err := n.Apply("1", parse(t, tmpl, a, "one", addr)); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	do := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := do(); got != "a" {
		t.Fatalf("before apply: %q, want a", got)
	}
	// Renaming the listener keeps its socket; the endpoint moves to b.
	if err := n.Apply("2", parse(t, tmpl, b, "renamed", addr)); err != nil {
		t.Fatal(err)
	}
	if got := do(); got != "b" || !reused {
		t.Errorf("after apply: %q, connection reused %v; want b over the same connection", got, reused)
	}
	if n.Version() != "2" {
		t.Errorf("version %q, want 2", n.Version())
	}
}

// TestFailedApplyChangesNothing: a snapshot whose listener cannot be bound
// is refused whole; the running one keeps serving and new sockets of the
// refused snapshot are released.
func TestFailedApplyChangesNothing(t *testing.T) {
	n := newNode(t)
	a := backend(t, "a")
	addr, fresh := freeAddr(t), freeAddr(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ok := parse(t, `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web }]
`, a, addr)
	if err := n.Apply("1", ok); err != nil {
		t.Fatal(err)
	}
	bad := parse(t, `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners:
  - { name: l, address: "%s", protocol: HTTP, default_cluster: web }
  - { name: new, address: "%s", protocol: TCP, default_cluster: web }
  - { name: clash, address: "%s", protocol: TCP, default_cluster: web }
`, a, addr, fresh, taken.Addr())
	err = n.Apply("2", bad)
	if err == nil || !strings.Contains(err.Error(), "listener clash") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Apply = %v, want listener clash: address already in use", err)
	}
	if n.Version() != "1" {
		t.Errorf("version %q after refused apply, want 1", n.Version())
	}
	// The socket bound for listener "new" was released.
	if ln, err := net.Listen("tcp", fresh); err != nil {
		t.Errorf("address of the refused snapshot's listener still bound: %v", err)
	} else {
		ln.Close()
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("running config after refused apply: %v", err)
	}
	resp.Body.Close()
}

// TestInvalidSnapshotRefused: the node checks what it is given even though
// the control plane validated it.
func TestInvalidSnapshotRefused(t *testing.T) {
	n := newNode(t)
	s := &sluicev1.Snapshot{Listeners: []*sluicev1.Listener{{Name: "l", Address: "127.0.0.1:1", Protocol: sluicev1.Protocol_PROTOCOL_TCP, DefaultCluster: "missing"}}}
	if err := n.Apply("1", s); err == nil || !strings.Contains(err.Error(), "listeners[0].default_cluster") {
		t.Errorf("Apply = %v, want a fault at listeners[0].default_cluster", err)
	}
}

// TestProtocolChangeOnSameAddress: changing a listener from HTTP to TCP in
// one apply keeps the socket, and new connections are proxied as TCP at
// once. The connections that spoke HTTP end as the listener's removal
// would end them: an idle keep-alive connection closes at once, and a
// request in flight gets its answer, with Connection: close, the
// connection closing after it. Changing back to HTTP leaves an open TCP
// session relaying until the listener's grace (2s here) ends, and then
// closes it, as removal does. Each of those ends is recorded as
// listener_closed. Before, the request in flight was cut, and the
// session closed at once.
func TestProtocolChangeOnSameAddress(t *testing.T) {
	shortGrace(t, 2*time.Second)
	n, rec := newRecordingNode(t)
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "a "+r.URL.Path)
	})}
	go srv.Serve(be)
	t.Cleanup(func() { srv.Close() })
	addr := freeAddr(t)
	const tmpl = `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners: [{ name: l, address: "%s", protocol: %s, default_cluster: web }]
`
	if err := n.Apply("1", parse(t, tmpl, be.Addr(), addr, "HTTP")); err != nil {
		t.Fatal(err)
	}
	idle, idleR := secondRequest(t, addr, "/")
	if resp, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatalf("HTTP before the change: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	busy := sendGet(t, addr, "/slow")
	<-arrived

	if err := n.Apply("2", parse(t, tmpl, be.Addr(), addr, "TCP")); err != nil {
		t.Fatalf("protocol change refused: %v", err)
	}
	idle.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if b, err := io.ReadAll(idleR); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the idle HTTP connection: read %q, %v; want it closed at once", b, err)
	}
	// The request in flight is the one connection open, and the status
	// page counts it under the listener, now TCP, as draining.
	waitUntil(t, "the status to count the draining connection", func() bool {
		ls := n.Listeners()
		return len(ls) == 1 && ls[0].Conns == 1 && ls[0].DrainingConns == 1 && !ls[0].GraceEnds.IsZero() &&
			!ls[0].Draining && ls[0].Protocol == "TCP" && n.Connections().Open == 1
	})
	// A TCP listener relays bytes verbatim: an HTTP/1.0 request with
	// Connection: close comes back with the backend's own framing.
	if got := exchange(t, "", addr, "GET /new HTTP/1.0\r\n\r\n"); !strings.HasSuffix(got, "\r\n\r\na /new") {
		t.Errorf("through the TCP listener: %q, want the backend's answer a /new", got)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the HTTP request in flight: %v, want its answer", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "a /slow" || !resp.Close {
		t.Errorf("the HTTP request in flight: %s %q (close %v), want 200 \"a /slow\" with Connection: close", resp.Status, b, resp.Close)
	}
	if _, err := busy.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the HTTP connection after its answer: %v, want it closed", err)
	}

	session, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	session.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(session, "GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
	sr := bufio.NewReader(session)
	if resp, err := http.ReadResponse(sr, nil); err != nil {
		t.Fatalf("a TCP session: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	if err := n.Apply("3", parse(t, tmpl, be.Addr(), addr, "HTTP")); err != nil {
		t.Fatalf("protocol change back refused: %v", err)
	}
	changed := time.Now()
	io.WriteString(session, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(sr, nil); err != nil {
		t.Fatalf("the TCP session after the change: %v, want it relaying on", err)
	} else if b, _ := io.ReadAll(resp.Body); string(b) != "a /after" {
		t.Errorf("the TCP session after the change: %q, want a /after", b)
	}
	session.SetDeadline(changed.Add(testTimeout))
	if b, err := io.ReadAll(sr); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the TCP session: read %q, %v; want it closed when the grace ends", b, err)
	}
	if took := time.Since(changed); took < 1500*time.Millisecond {
		t.Errorf("the TCP session closed %v after the change, before the 2s grace", took)
	}

	for what, c := range map[string]net.Conn{"the idle HTTP connection": idle, "the HTTP request in flight": busy, "the TCP session": session} {
		client := c.LocalAddr().String()
		ci := rec.wait(t, "l", "the record of "+what, func(ci conntrack.ConnInfo) bool { return ci.Client == client })
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
			t.Errorf("%s: reason %v, want LISTENER_CLOSED", what, ci.Reason)
		}
	}
}

// secondRequest opens an HTTP connection to addr and sends a GET of path
// on it once a first GET was answered, so that the node serves it from
// inside the connection's idle wait. The connection closes with the test;
// its deadline is testTimeout away.
func secondRequest(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := sendGet(t, addr, "/")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	return c, br
}

// sendGet opens a connection to addr, closed when the test ends, with
// testTimeout as its deadline, and sends a GET of path on it.
func sendGet(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	return c
}

// TestRemoveListenerWithRequestsInFlight: an apply that removes an HTTP
// listener while keep-alive requests wait for their endpoint returns at
// once, and the requests' connections close when the listener's grace
// ends (removedGrace, 300 ms here). Each request is served from inside
// its connection's idle read, which keeps the socket from closing until
// the request ends: an apply that waited for the closes would wait until
// the requests notice that their server closed (the endpoint holds them
// until the test ends).
func TestRemoveListenerWithRequestsInFlight(t *testing.T) {
	shortGrace(t, 300*time.Millisecond)
	n := newNode(t)
	be, held := holdingBackend(t)
	addr := freeAddr(t)
	const cluster = `clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
`
	if err := n.Apply("1", parse(t, cluster+`listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web }]`, be, addr)); err != nil {
		t.Fatal(err)
	}
	var clients []*bufio.Reader
	for range 3 {
		_, br := secondRequest(t, addr, "/hold")
		held()
		clients = append(clients, br)
	}

	start := time.Now()
	if err := n.Apply("2", parse(t, cluster, be)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 800*time.Millisecond {
		t.Errorf("the apply took %v: it waited for the requests in flight", took)
	}
	for i, br := range clients {
		if _, err := io.ReadAll(br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: %v, want its connection closed", i, err)
		}
	}
}

// TestListenerGrace: Options.ListenerGrace, not the 10s default, bounds
// how long a removed listener's request in flight keeps its connection
// (sluice-dp's --drain-grace); negative closes it at once. The endpoint
// holds the request until the test ends.
func TestListenerGrace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		// open is how long the connection must stay open after the
		// apply; within, the most it may take to close.
		open, within time.Duration
	}{
		{"1s", time.Second, 300 * time.Millisecond, 5 * time.Second},
		{"at once", -1, 0, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := New(Options{Logger: slog.New(slog.DiscardHandler), ListenerGrace: tc.grace})
			t.Cleanup(n.Close)
			be, held := holdingBackend(t)
			addr := freeAddr(t)
			const cluster = `clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
`
			if err := n.Apply("1", parse(t, cluster+`listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web }]`, be, addr)); err != nil {
				t.Fatal(err)
			}
			c := sendGet(t, addr, "/hold")
			held()
			if err := n.Apply("2", parse(t, cluster, be)); err != nil {
				t.Fatal(err)
			}
			removed := time.Now()
			if tc.open > 0 {
				c.SetReadDeadline(removed.Add(tc.open))
				if got, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read %d bytes, %v before the grace ended; want the connection still open", got, err)
				}
				if open := n.Connections().Open; open != 1 {
					t.Errorf("the node counts %d connections open, want the draining one", open)
				}
			}
			c.SetReadDeadline(removed.Add(tc.within))
			if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read %q, %v; want the connection closed without an answer within %v", b, err, tc.within)
			}
		})
	}
}

// TestCloseEndsRequestsInFlightWithoutAnswer: Close (a node's hard stop,
// after its drain grace) closes the connections of requests that wait for
// their endpoint without an answer, as it closes idle ones, and not with a
// 502: Close also shuts the endpoints' connections, and that error is not
// the endpoint's. A client may send again an idempotent request whose
// connection closed before any answer; a 502 it takes as final. The
// requests are a new connection's first, connections' second, which is
// served from inside its idle wait (Close of that socket waits until the
// request ends, so a 502 would reach the client), and an HTTP/2 stream.
// sluice-dp drains before it closes, which the second run does as well;
// the records say LISTENER_CLOSED either way.
func TestCloseEndsRequestsInFlightWithoutAnswer(t *testing.T) {
	for _, drain := range []bool{false, true} {
		name := "Close"
		if drain {
			name = "DrainThenClose"
		}
		t.Run(name, func(t *testing.T) { testCloseInFlight(t, drain) })
	}
}

func testCloseInFlight(t *testing.T, drain bool) {
	n, rec := newRecordingNode(t)
	be, held := holdingBackend(t)
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web, http: { h2c: true } }]
`, be, addr)); err != nil {
		t.Fatal(err)
	}
	h2 := h2cClient(t, nil)
	type answer struct {
		resp *http.Response
		err  error
	}
	h2got := make(chan answer, 1)
	go func() {
		resp, err := h2.Get("http://" + addr + "/hold")
		h2got <- answer{resp, err}
	}()
	held()
	var clients []*bufio.Reader
	for range 2 {
		_, br := secondRequest(t, addr, "/hold")
		held()
		clients = append(clients, br)
	}
	c := sendGet(t, addr, "/hold")
	held()
	clients = append(clients, bufio.NewReader(c))

	if drain {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if err := n.Drain(ctx); err == nil {
			t.Error("Drain returned nil with requests in flight")
		}
		cancel()
	}
	n.Close()
	for i, br := range clients {
		b, err := io.ReadAll(br)
		if len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: read %q, %v; want its connection closed without an answer", i, b, err)
		}
	}
	if a := <-h2got; a.err == nil {
		a.resp.Body.Close()
		t.Errorf("HTTP/2 client: got %s, want its connection closed without an answer", a.resp.Status)
	}
	for _, ci := range rec.waitAll(t, 4) {
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
			t.Errorf("reason %v, want LISTENER_CLOSED", ci.Reason)
		}
	}
}

// TestRemoveListenerEndsConnectsAndQueues: removing a listener ends its
// requests and sessions that connect to an endpoint that does not answer,
// or wait in their cluster's queue, when the listener's grace ends
// (removedGrace, 300 ms here), instead of when their connect or queue
// timeout (a minute here) runs out. The clients see their connections
// closed without an answer, and the endpoints get their slots back. No
// connect is retried on the other endpoint, and work queued after a
// failed connect gets no 502 either: the records say LISTENER_CLOSED,
// with no retries, and the connects given up count as no endpoint's
// errors, an HTTP/2 stream's too. The HTTP/1.1 requests are each a
// connection's second, served from inside its idle wait, which holds its
// socket open until they end. The queue's one slot is held by a session
// of a listener that stays.
func TestRemoveListenerEndsConnectsAndQueues(t *testing.T) {
	shortGrace(t, 300*time.Millisecond)
	n, rec := newRecordingNode(t)
	live, silent, silent2 := backend(t, "a"), loopback.UnresponsiveAddr(t), loopback.UnresponsiveAddr(t)
	hold, web, tcpSilent, tcpFull := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	holdRetry, refused := freeAddr(t), freeAddr(t)
	const kept = `
clusters:
  - { name: live, endpoints: [{ name: live, address: "%[1]s" }] }
  - { name: silent, connect_timeout: 60s,
      endpoints: [{ name: s, address: "%[2]s" }, { name: s2, address: "%[3]s" }] }
  - { name: full, queue_timeout: 60s, endpoints: [{ name: f, address: "%[1]s", max_conn: 1 }] }
  - { name: retry, queue_timeout: 60s, lb_policy: FIRST,
      endpoints: [{ name: refused, address: "%[4]s" }, { name: f, address: "%[1]s", max_conn: 1 }] }
listeners:
  - { name: hold, address: "%[5]s", protocol: TCP, default_cluster: full }
  - { name: hold-retry, address: "%[6]s", protocol: TCP, default_cluster: retry }
`
	if err := n.Apply("1", parse(t, kept+`
  - { name: web, address: "%[7]s", protocol: HTTP, default_cluster: live, http: { h2c: true },
      rules: [{ match: { path: { prefix: /silent } }, route: silent },
              { match: { path: { prefix: /full } }, route: full },
              { match: { path: { prefix: /retry } }, route: retry }] }
  - { name: tcp-silent, address: "%[8]s", protocol: TCP, default_cluster: silent }
  - { name: tcp-full, address: "%[9]s", protocol: TCP, default_cluster: full }
`, live, silent, silent2, refused, hold, holdRetry, web, tcpSilent, tcpFull)); err != nil {
		t.Fatal(err)
	}
	cur := *n.current.Load()
	slow, full, retry := cur["silent"].members, cur["full"], cur["retry"]
	// connecting counts the work picked for the silent endpoints, none of
	// which got a connection.
	connecting := func() int64 {
		if slow[0].Endpoint.Conns()+slow[1].Endpoint.Conns() != 0 {
			t.Fatal("a silent endpoint accepted a connection")
		}
		return slow[0].Endpoint.Inflight() + slow[1].Endpoint.Inflight()
	}
	type client struct {
		c net.Conn
		r io.Reader
	}
	dial := func(addr string) client {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return client{c, c}
	}
	second := func(path string) client {
		c, br := secondRequest(t, web, path)
		return client{c, br}
	}
	dial(hold)
	dial(holdRetry)
	waitUntil(t, "the held slots", func() bool {
		return full.members[0].Endpoint.Inflight() == 1 && retry.members[1].Endpoint.Inflight() == 1
	})
	clients := map[string]client{
		"HTTP, in the queue":                        second("/full"),
		"HTTP, in the queue after a failed connect": second("/retry"),
		"HTTP, connecting":                          second("/silent"),
		"TCP, connecting":                           dial(tcpSilent),
		"TCP, in the queue":                         dial(tcpFull),
	}
	// An HTTP/2 stream dials on a context of its own, which the close of
	// its connection ends with a plain cancel.
	h2Answer, h2 := make(chan error, 1), h2cClient(t, nil)
	go func() {
		resp, err := h2.Get("http://" + web + "/silent")
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %s", resp.Status)
		}
		h2Answer <- err
	}()
	waitUntil(t, "three connects and three waiters", func() bool {
		return connecting() == 3 && full.queue.len() == 2 && retry.queue.len() == 1
	})

	if err := n.Apply("2", parse(t, kept, live, silent, silent2, refused, hold, holdRetry)); err != nil {
		t.Fatal(err)
	}
	for name, cl := range clients {
		cl.c.SetDeadline(time.Now().Add(testTimeout))
		b, err := io.ReadAll(cl.r)
		if len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read %q, %v; want the connection closed without an answer", name, b, err)
		}
	}
	if err := <-h2Answer; err == nil || strings.HasPrefix(err.Error(), "answered") {
		t.Errorf("HTTP/2, connecting: %v; want the connection closed without an answer", err)
	}
	waitUntil(t, "the endpoints' slots back", func() bool {
		return connecting() == 0 && full.queue.len() == 0 && retry.queue.len() == 0 &&
			full.members[0].Endpoint.Inflight() == 1 && retry.members[1].Endpoint.Inflight() == 1
	})
	for _, ci := range rec.waitAll(t, 6) {
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED || ci.Retries != 0 {
			t.Errorf("%s: reason %v, %d retries; want LISTENER_CLOSED and none", ci.Listener, ci.Reason, ci.Retries)
		}
	}
	// The node gave those connects up, HTTP/2's too: no error of the
	// silent endpoints.
	for _, m := range slow {
		if n := m.Endpoint.Stats().ConnectErrors; n != 0 {
			t.Errorf("silent endpoint %s: %d connect errors, want none", m.Endpoint.Name, n)
		}
	}
}

// shortGrace sets removedGrace to d until the test ends.
func shortGrace(t *testing.T, d time.Duration) {
	old := removedGrace
	removedGrace = d
	t.Cleanup(func() { removedGrace = old })
}

// TestRemoveListenerDrains: removing an HTTP listener closes its socket at
// once, so new connections are refused, and drains its connections as
// Envoy drains a listener it removes: an idle keep-alive connection
// closes at once, a request in flight gets its answer (with Connection:
// close, the connection closing after it), and an HTTP/2 stream in
// flight completes after a GOAWAY. Each is recorded as listener_closed.
// Before, every one of them was cut at once.
func TestRemoveListenerDrains(t *testing.T) {
	n, rec := newRecordingNode(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{}, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			time.Sleep(500 * time.Millisecond)
		}
		io.WriteString(w, "done "+r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := freeAddr(t)
	const cluster = `clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
`
	if err := n.Apply("1", parse(t, cluster+`listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web, http: { h2c: true } }]`, ln.Addr().String(), addr)); err != nil {
		t.Fatal(err)
	}
	idle, idleR := secondRequest(t, addr, "/")
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	busy := sendGet(t, addr, "/slow")
	<-arrived
	h2Got := make(chan string, 1)
	go func() {
		resp, err := h2cClient(t, nil).Get("http://" + addr + "/slow")
		if err != nil {
			h2Got <- err.Error()
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		h2Got <- fmt.Sprintf("%d %s %v", resp.StatusCode, b, err)
	}()
	<-arrived

	if err := n.Apply("2", parse(t, cluster, ln.Addr().String())); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, testTimeout); err == nil {
		c.Close()
		t.Error("a new connection to the removed listener was accepted")
	}
	idle.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if b, err := io.ReadAll(idleR); len(b) > 0 || err != nil {
		t.Errorf("the idle connection: read %q, %v; want it closed at once", b, err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in flight: %v, want its answer", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "done /slow" || !resp.Close {
		t.Errorf("the request in flight: %s %q (close %v), want 200 \"done /slow\" with Connection: close", resp.Status, b, resp.Close)
	}
	if got := <-h2Got; got != "200 done /slow <nil>" {
		t.Errorf("the HTTP/2 stream in flight: %s, want 200 \"done /slow\"", got)
	}
	for _, ci := range rec.waitAll(t, 3) {
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
			t.Errorf("%s: reason %v, want LISTENER_CLOSED", ci.Client, ci.Reason)
		}
	}
}

// TestAbortOnCloseLeavesQueue: with abort_on_close, an HTTP/1.1 request
// queued for a full cluster leaves the queue as soon as its client closes
// the connection (over TLS too), resets it, or shuts its sending side
// after a next request, and is never sent: queue_timeout is a minute. So
// does a connection's second request, served from inside its idle read. A
// client that only sent its next request ahead stays, and gets both
// answers. Without abort_on_close, as in HAProxy, a closed client's
// request waits on and goes to the endpoint once the slot frees. A
// listener served by the HTTP/2 engine does the same.
func TestAbortOnCloseLeavesQueue(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	closed := func(c net.Conn) { c.Close() }
	shut := func(c net.Conn) {
		io.WriteString(c, next)
		c.(*net.TCPConn).CloseWrite()
	}
	for _, tc := range []struct {
		name  string
		abort bool
		gone  bool // the request leaves the queue
		tls   bool
		h2    bool // the listener may route to an http2 cluster
		// second: the queued request is the connection's second;
		// readable: the client can still read after end; refused: the
		// cluster's first endpoint refuses connections, so the request
		// queues after a failed connect.
		second, readable, refused bool
		end                       func(c net.Conn)
	}{
		{name: "closed", abort: true, gone: true, end: closed},
		{name: "closed, over TLS", abort: true, gone: true, tls: true, end: closed},
		{name: "reset", abort: true, gone: true, end: func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}},
		{name: "closed, the second request", abort: true, gone: true, second: true, end: closed},
		{name: "shut after a next request", abort: true, gone: true, readable: true, end: shut},
		{name: "shut, queued after a failed connect", abort: true, gone: true, readable: true, refused: true, end: shut},
		{name: "a next request sent ahead", abort: true, readable: true, end: func(c net.Conn) { io.WriteString(c, next) }},
		{name: "off", end: closed},
		{name: "closed, HTTP/2 engine", abort: true, gone: true, h2: true, end: closed},
		{name: "off, HTTP/2 engine", h2: true, end: closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, rec := newRecordingNode(t)
			be, hold, web := backend(t, "a"), freeAddr(t), freeAddr(t)
			extra := ""
			if tc.tls {
				extra = ", " + listenerTLS(t)
			}
			if tc.h2 {
				extra = ", rules: [{ match: { path: { prefix: /grpc/ } }, route: h2 }]"
			}
			refused := ""
			if tc.refused {
				refused = fmt.Sprintf(`{ name: r, address: "%s" }, `, freeAddr(t))
			}
			if err := n.Apply("1", parse(t, `
clusters:
  - { name: full, queue_timeout: 60s, abort_on_close: %t, lb_policy: FIRST,
      endpoints: [%s{ name: f, address: "%s", max_conn: 1 }] }
  - { name: h2, http2: true, endpoints: [{ name: g, address: "%[3]s" }] }
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: full }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: full%s }
`, tc.abort, refused, be, hold, web, extra)); err != nil {
				t.Fatal(err)
			}
			full := (*n.current.Load())["full"]
			ep := full.members[len(full.members)-1].Endpoint // f
			c := dialListener(t, web, tc.tls)
			c.SetDeadline(time.Now().Add(testTimeout))
			br := bufio.NewReader(c)
			answered := func(path string) {
				t.Helper()
				wantAnswer(t, br, path, "a")
			}
			sent := uint64(0) // requests and sessions given to the endpoint
			if tc.second {
				io.WriteString(c, "GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
				answered("/before")
				sent++
			}
			holder, err := net.Dial("tcp", hold)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close()
			waitUntil(t, "the session holding the slot", func() bool { return ep.Inflight() == 1 })
			sent++

			io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
			waitUntil(t, "the request queued", func() bool { return full.queue.len() == 1 })
			tc.end(c)
			if !tc.gone {
				time.Sleep(100 * time.Millisecond)
				if full.queue.len() != 1 {
					t.Fatalf("the queue holds %d requests, want the request still there", full.queue.len())
				}
				holder.Close()
				waitUntil(t, "the queued request sent", func() bool { return ep.Stats().Requests > sent })
				if tc.readable {
					answered("/first")
					answered(next)
				}
				return
			}
			waitUntil(t, "the request out of the queue", func() bool { return full.queue.len() == 0 })
			if ep.Inflight() != 1 {
				t.Fatalf("%d in flight at the endpoint, want the holder's only", ep.Inflight())
			}
			if !tc.h2 {
				ci := rec.wait(t, "web", "the record of the web client", func(conntrack.ConnInfo) bool { return true })
				if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
					t.Errorf("record: reason %v, want CLIENT_CLOSED", ci.Reason)
				}
			}
			if tc.readable {
				if b, err := io.ReadAll(br); len(b) > 0 {
					t.Errorf("the client read %q, %v; want no answer", b, err)
				}
			}
			holder.Close()
			rec.wait(t, "hold", "the holder's record", func(conntrack.ConnInfo) bool { return true })
			if got := ep.Stats().Requests; got != sent {
				t.Errorf("the endpoint was given %d requests and sessions, want %d: none of the client's since the slot was held", got, sent)
			}
		})
	}
}

// listenerTLS is the tls option of an HTTPS listener (certificate files
// of a self-signed a.example), to put in a listener's flow mapping.
func listenerTLS(t *testing.T) string {
	t.Helper()
	cert, key := testcert.SelfSigned(t, "a.example")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	os.WriteFile(certFile, []byte(cert), 0o644)
	os.WriteFile(keyFile, []byte(key), 0o600)
	return fmt.Sprintf("tls: { certificates: [{ cert_file: %q, key_file: %q }] }", certFile, keyFile)
}

// dialListener connects to the listener at addr, over TLS (with any
// certificate) when secure says so; the connection closes when the test
// ends.
func dialListener(t *testing.T, addr string, secure bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if secure {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantAnswer reads the next response from br and checks that it is a 200
// with body want, the answer to the request for path.
func wantAnswer(t *testing.T, br *bufio.Reader, path, want string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the answer to %q: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != want || err != nil {
		t.Errorf("the answer to %q: %s %q (%v), want 200 %q", path, resp.Status, b, err, want)
	}
}

// TestResetStreamLeavesQueue: an HTTP/2 request queued for a full cluster
// leaves the queue as soon as its client resets the stream (RST_STREAM:
// Go's client sends it when the request's context ends), not when
// queue_timeout (a minute here) runs out, and its connection goes on: the
// next request on it is served once the slot is free.
func TestResetStreamLeavesQueue(t *testing.T) {
	n := newNode(t)
	be, hold, web := backend(t, "a"), freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters: [{ name: full, queue_timeout: 60s, endpoints: [{ name: f, address: "%s", max_conn: 1 }] }]
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: full }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: full, http: { h2c: true } }
`, be, hold, web)); err != nil {
		t.Fatal(err)
	}
	full := (*n.current.Load())["full"]
	holder, err := net.Dial("tcp", hold)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	waitUntil(t, "the session holding the slot", func() bool { return full.members[0].Endpoint.Inflight() == 1 })

	var dials atomic.Int32
	cl := h2cClient(t, &dials)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+web+"/first", nil)
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gaveUp <- err
	}()
	waitUntil(t, "the first request queued", func() bool { return full.queue.len() == 1 })
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("the first request was answered; want it given up")
	}
	waitUntil(t, "the reset request out of the queue", func() bool { return full.queue.len() == 0 })

	answered := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+web+"/second", nil)
		resp, err := cl.Do(req)
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- fmt.Sprintf("%s %s %s", resp.Proto, resp.Status, b)
	}()
	waitUntil(t, "the second request queued", func() bool { return full.queue.len() == 1 })
	holder.Close()
	if got, want := <-answered, "HTTP/2.0 200 OK a"; got != want {
		t.Errorf("second request: %q, want %q", got, want)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("the client dialed %d times, want once: the reset must not close the connection", d)
	}
}

// TestAppliesUnderLoadFailNothing: 300 applies that alternately remove and
// re-add an endpoint, under 16 busy keep-alive clients, fail no request:
// a request whose endpoint is retired under it picks again.
func TestAppliesUnderLoadFailNothing(t *testing.T) {
	n := newNode(t)
	a, b := backend(t, "a"), backend(t, "b")
	addr := freeAddr(t)
	const two = `
clusters: [{ name: web, endpoints: [{ name: a, address: "%s" }, { name: b, address: "%s" }] }]
listeners: [{ name: pub, address: "%s", protocol: HTTP, default_cluster: web }]
`
	const one = `
clusters: [{ name: web, endpoints: [{ name: b, address: "%s" }] }]
listeners: [{ name: pub, address: "%s", protocol: HTTP, default_cluster: web }]
`
	snaps := []*sluicev1.Snapshot{parse(t, two, a, b, addr), parse(t, one, b, addr)}
	if err := n.Apply("0", snaps[0]); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var failed, total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: testTimeout}
			defer client.CloseIdleConnections()
			for i := 0; i < 100000 && !stop.Load(); i++ { // bounded
				total.Add(1)
				resp, err := client.Get("http://" + addr + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	for i := range 300 {
		if err := n.Apply(fmt.Sprint(i+1), snaps[(i+1)%2]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let requests run between applies
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during 300 applies; first: %v", failed.Load(), total.Load(), firstErr.Load())
	}
	if total.Load() < 300 {
		t.Errorf("only %d requests ran during the applies; the load did not overlap them", total.Load())
	}
}

// TestListenerRespelledOnSamePort: a listener moved to another spelling of
// the port it holds (localhost:P after 127.0.0.1:P, as from 127.0.0.1:P to
// 0.0.0.0:P) binds while the old socket still listens, and then serves;
// the old socket is closed.
func TestListenerRespelledOnSamePort(t *testing.T) {
	n := newNode(t)
	a := backend(t, "a")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	const tmpl = `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web }]
`
	if err := n.Apply("1", parse(t, tmpl, a, addr)); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("2", parse(t, tmpl, a, "localhost:"+port)); err != nil {
		t.Fatalf("Apply of localhost:%s after %s = %v, want it bound", port, addr, err)
	}
	if got := len(n.listeners); got != 1 {
		t.Errorf("%d listeners after the move, want 1: the old socket is retired", got)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("after the move: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "a" {
		t.Errorf("after the move: %q, want a", body)
	}
	// A port another program holds is still refused.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := n.Apply("3", parse(t, tmpl, a, taken.Addr().String())); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Apply on a port another program holds = %v, want address already in use", err)
	}
}
