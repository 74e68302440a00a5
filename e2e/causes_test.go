package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Termination causes the other e2e tests do not cover already (client
// closed: loop_test; rebalanced: rebalance_test; denied: rules_test;
// shutdown: stats_test), each as a user sees it in the records the
// control plane keeps.

// recordsOf waits until the control plane holds n records of listener and
// returns them.
func recordsOf(t *testing.T, c *cp, listener string, n int) []*sluicev1.ConnRecord {
	t.Helper()
	var recs []*sluicev1.ConnRecord
	waitFor(t, fmt.Sprintf("%d records of listener %s", n, listener), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := c.api.ListConns(ctx, &sluicev1.ListConnsRequest{Listener: listener})
		if err != nil {
			t.Fatal(err)
		}
		recs = resp.GetRecords()
		return len(recs) >= n
	})
	return recs
}

// wantReason checks that listener has exactly n records, all with reason.
func wantReason(t *testing.T, c *cp, listener string, n int, reason sluicev1.CloseReason) {
	t.Helper()
	recs := recordsOf(t, c, listener, n)
	if len(recs) != n {
		t.Errorf("%d records of %s, want %d", len(recs), listener, n)
	}
	for _, r := range recs {
		if r.GetCloseReason() != reason {
			t.Errorf("record of %s (%s/%s): reason %v, want %v", listener, r.GetCluster(), r.GetEndpoint(), r.GetCloseReason(), reason)
		}
	}
}

// readAll reads conn until it closes, within the test timeout.
func readAll(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading until the node closes: %v", err)
	}
	return string(b)
}

// TestCauseServerClosed: a TCP session whose endpoint closes first is
// SERVER_CLOSED.
func TestCauseServerClosed(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	bye := loopback.Serve(t, func(conn net.Conn) {
		io.WriteString(conn, "bye\n")
		conn.Close()
	})
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: bye, endpoints: [ { name: b, address: %s } ] }
listeners:
  - { name: tcp, address: %s, protocol: TCP, default_cluster: bye }
`, bye, listen)))
	conn, err := net.DialTimeout("tcp", listen, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := readAll(t, conn); got != "bye\n" {
		t.Fatalf("read %q, want bye", got)
	}
	conn.Close()
	wantReason(t, c, "tcp", 1, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED)
}

// TestCauseTimeouts: a client that sends no request within
// request_header_timeout is CLIENT_TIMEOUT; a request whose endpoint does
// not answer within response_timeout gets 504 and is SERVER_TIMEOUT.
func TestCauseTimeouts(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	slow := startBackend(t, "slow")
	defer close(slow.release)
	quiet, waiting := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: slow, endpoints: [ { name: s, address: %s } ] }
listeners:
  - { name: quiet, address: %s, protocol: HTTP, default_cluster: slow, http: { request_header_timeout: 200ms } }
  - { name: waiting, address: %s, protocol: HTTP, default_cluster: slow, http: { response_timeout: 200ms } }
`, slow.addr, quiet, waiting)))

	conn, err := net.DialTimeout("tcp", quiet, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := readAll(t, conn); got != "" {
		t.Errorf("a silent client got %q; want the connection closed quietly", got)
	}
	wantReason(t, c, "quiet", 1, sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)

	conn2, err := net.DialTimeout("tcp", waiting, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	io.WriteString(conn2, "GET /slow HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n")
	if got := readAll(t, conn2); !strings.HasPrefix(got, "HTTP/1.1 504 ") {
		t.Errorf("a request the endpoint holds got %q, want 504", got)
	}
	wantReason(t, c, "waiting", 1, sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT)
}

// TestCauseTCPIdleTimeout: a TCP session that carries nothing either way
// for the listener's idle_timeout is closed at both ends, as
// CLIENT_TIMEOUT, while one that keeps talking stays open.
func TestCauseTCPIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	c := startCP(t, t.TempDir(), "")
	echo := startEchoBackend(t)
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: echo, endpoints: [ { name: e, address: %s } ] }
listeners:
  - { name: tcp, address: %s, protocol: TCP, default_cluster: echo, tcp: { idle_timeout: %s } }
`, echo.addr, listen, idle)))
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := net.DialTimeout("tcp", listen, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, bufio.NewReader(conn)
	}
	say := func(conn net.Conn, r *bufio.Reader, line string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(testTimeout))
		if _, err := io.WriteString(conn, line); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); got != line {
			t.Fatalf("sent %q, read %q, %v", line, got, err)
		}
	}
	quiet, qr := dial()
	busy, br := dial()
	last := time.Now() // before, as the node may see the byte before we read its echo
	say(quiet, qr, "hello\n")
	for time.Since(last) < 2*idle {
		say(busy, br, "still here\n")
		time.Sleep(idle / 5)
	}
	quiet.SetReadDeadline(time.Now().Add(testTimeout))
	if b, err := qr.ReadByte(); err != io.EOF {
		t.Fatalf("the quiet session read %q, %v; want the node to close it", b, err)
	}
	if d := time.Since(last); d < idle {
		t.Errorf("the quiet session closed %v after its last byte, before idle_timeout %v", d, idle)
	}
	say(busy, br, "still here\n")
	waitFor(t, "the quiet session's endpoint connection to close", func() bool { return echo.open.Load() == 1 })
	wantReason(t, c, "tcp", 1, sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)
}

// TestCauseDrainedAndEndpointDown: a TCP session to an endpoint that an
// apply removed is DRAINED once its drain_timeout passed; one to an
// endpoint that health checks marked down, in a cluster with on_down:
// SHUTDOWN_SESSIONS, is ENDPOINT_DOWN.
func TestCauseDrainedAndEndpointDown(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	removed, down, other := startEchoBackend(t), startEchoBackend(t), startEchoBackend(t)
	rmListen, downListen := freeAddr(t), freeAddr(t)
	snap := `
clusters:
  - name: rm
    drain_timeout: 100ms
    endpoints: [ %s ]
  - name: dn
    on_down: SHUTDOWN_SESSIONS
    health_check: { interval: 100ms, fall: 1, rise: 1 }
    endpoints: [ { name: d, address: %s } ]
listeners:
  - { name: rm, address: %s, protocol: TCP, default_cluster: rm }
  - { name: dn, address: %s, protocol: TCP, default_cluster: dn }
`
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(snap, fmt.Sprintf("{ name: r, address: %s }", removed.addr), down.addr, rmListen, downListen)))
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for _, addr := range []string{rmListen, downListen} {
		var conn net.Conn
		// dn's endpoint is routed to once checks found it up.
		waitFor(t, "a session through "+addr, func() bool {
			var err error
			if conn, err = net.DialTimeout("tcp", addr, testTimeout); err != nil {
				t.Fatal(err)
			}
			if echoes(conn) {
				return true
			}
			conn.Close()
			return false
		})
		conns = append(conns, conn)
	}

	// rm's endpoint is replaced by another.
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(snap, fmt.Sprintf("{ name: o, address: %s }", other.addr), down.addr, rmListen, downListen)))
	// dn's endpoint stops taking connections: checks fail, the session
	// it has is cut.
	down.ln.Close()
	for _, conn := range conns {
		readAll(t, conn)
	}
	wantReason(t, c, "rm", 1, sluicev1.CloseReason_CLOSE_REASON_DRAINED)
	wantReason(t, c, "dn", 1, sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN)

	// What sluicectl conns shows.
	out, errOut, code := ctl(t, c.addr, "conns", "--listener", "dn")
	if code != 0 || !strings.Contains(out, "dn/d") || !strings.Contains(out, "endpoint_down") {
		t.Errorf("sluicectl conns --listener dn: exit %d, %q, %q; want dn/d ... endpoint_down", code, out, errOut)
	}
}

// TestCauseNodeDraining: a keep-alive connection idle when the node
// drains (SIGTERM) is NODE_DRAINING.
func TestCauseNodeDraining(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a := startBackend(t, "a")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: web, endpoints: [ { name: a, address: %s } ] }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, listen)))
	conn, err := net.DialTimeout("tcp", listen, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: e2e\r\n\r\n")
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := conn.Read(buf); err != nil || !strings.HasSuffix(string(buf[:n]), "\r\n\r\na") {
		t.Fatalf("first response: %q, %v", buf[:n], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := dp.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := readAll(t, conn); got != "" {
		t.Errorf("idle connection got %q while the node drained; want it closed", got)
	}
	wantReason(t, c, "public", 1, sluicev1.CloseReason_CLOSE_REASON_NODE_DRAINING)
}

// TestCauseClientLeftAtEndpoint: curl gives up (--max-time) on a request
// its endpoint is slow to answer. Through a cluster with abort_on_close
// the node gives the request up too: it closes the endpoint's connection,
// which net/http tells the handler by ending its request's context, well
// before response_timeout (a minute), and the record says CLIENT_CLOSED.
// Through a cluster without it (HAProxy's way) the same request is still
// at the endpoint after two of the node's once-a-second looks.
func TestCauseClientLeftAtEndpoint(t *testing.T) {
	var mu sync.Mutex
	held := map[string]int{}      // requests at the endpoint, by listener
	cancelled := map[string]int{} // requests whose context ended, by listener
	release := make(chan struct{})
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := r.URL.Query().Get("l")
		mu.Lock()
		held[l]++
		mu.Unlock()
		select {
		case <-r.Context().Done(): // the node closed the connection
			mu.Lock()
			cancelled[l]++
			mu.Unlock()
		case <-release:
			io.WriteString(w, "late")
		}
		mu.Lock()
		held[l]--
		mu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(ln)
	t.Cleanup(func() { slow.Close() })
	defer close(release)
	count := func(m map[string]int, l string) int {
		mu.Lock()
		defer mu.Unlock()
		return m[l]
	}

	c := startCP(t, t.TempDir(), "")
	abort, plain := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: abort, abort_on_close: true, endpoints: [ { name: e, address: %[1]s } ] }
  - { name: plain, endpoints: [ { name: e, address: %[1]s } ] }
listeners:
  - { name: abort, address: %[2]s, protocol: HTTP, default_cluster: abort }
  - { name: plain, address: %[3]s, protocol: HTTP, default_cluster: plain }
`, ln.Addr(), abort, plain)))

	curl := func(addr, l string) {
		t.Helper()
		out, err := exec.Command("curl", "-sS", "--max-time", "1", "http://"+addr+"/?l="+l).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 28 {
			t.Fatalf("curl: %v, %s; want it to give up (exit 28)", err, out)
		}
	}
	curl(plain, "plain")
	curl(abort, "abort")
	gaveUp := time.Now()
	waitFor(t, "the abort listener's request cancelled at the endpoint", func() bool { return count(cancelled, "abort") == 1 })
	t.Logf("cancelled at the endpoint %v after curl gave up", time.Since(gaveUp).Round(time.Millisecond))
	wantReason(t, c, "abort", 1, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED)
	// The plain listener's curl gave up a second before the other's.
	time.Sleep(time.Until(gaveUp.Add(1500 * time.Millisecond)))
	if count(held, "plain") != 1 || count(cancelled, "plain") != 0 {
		t.Errorf("without abort_on_close: %d held, %d cancelled; want the request still at the endpoint",
			count(held, "plain"), count(cancelled, "plain"))
	}
}

// startNoAdmin starts a control plane and a node whose HTTP listener
// public (h2c too) sends every request to one endpoint at endpoint, but
// those a rule no-admin denies: paths under /admin. It returns the control
// plane and the listener's address.
func startNoAdmin(t *testing.T, endpoint string) (*cp, string) {
	t.Helper()
	c := startCP(t, t.TempDir(), "")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: web, endpoints: [ { name: a, address: %s } ] }
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http: { h2c: true }
    rules:
      - { name: no-admin, match: { path: { prefix: [/admin] } }, deny: {} }
`, endpoint, listen)))
	return c, listen
}

// TestCauseRecordNamesTheRule: an HTTP/2 connection's record names the
// rule that decided its latest request a rule decided, as an HTTP/1.1
// one's does (TestCauseFailedRequests).
func TestCauseRecordNamesTheRule(t *testing.T) {
	c, listen := startNoAdmin(t, startBackend(t, "a").addr)
	h2c := h2Client(true)
	resp, err := h2c.Get("http://" + listen + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.ProtoMajor != 2 {
		t.Fatalf("GET /admin: %d over HTTP/%d, want 403 over HTTP/2", resp.StatusCode, resp.ProtoMajor)
	}
	// A request no rule decided leaves the rule named.
	if body, err := get(h2c, "http://"+listen+"/"); err != nil || body != "a" {
		t.Fatalf("GET / after: %q %v, want a", body, err)
	}
	h2c.CloseIdleConnections()
	if recs := recordsOf(t, c, "public", 1); len(recs) != 1 || recs[0].GetRule() != "no-admin" || recs[0].GetRequests() != 2 {
		t.Errorf("records of public: %v, want one of 2 requests naming rule no-admin", recs)
	}
}

// TestCauseFailedRequests: a keep-alive connection whose requests the
// node answered itself with errors goes on, and ends as its client closes
// it: two 502s (its endpoint refuses connections) and a rule's 403. Its
// record counts the failed requests with both reasons and names the rule,
// the latest that decided one of its requests, and sluicectl conns
// --reason finds it by either.
func TestCauseFailedRequests(t *testing.T) {
	c, listen := startNoAdmin(t, freeAddr(t)) // nothing listens there
	paths, codes := []string{"/", "/admin", "/"}, []int{502, 403, 502}
	for i, resp := range getOnOneConn(t, listen, paths...) {
		if resp.StatusCode != codes[i] || resp.Close {
			t.Fatalf("request %d (%s): %d, close %v; want a %d that keeps the connection", i, paths[i], resp.StatusCode, resp.Close, codes[i])
		}
	}
	wantReason(t, c, "public", 1, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED)
	if recs := recordsOf(t, c, "public", 1); len(recs) != 1 || recs[0].GetRule() != "no-admin" {
		t.Errorf("records of public: %v, want one naming rule no-admin", recs)
	}

	const want = "client_closed (3 failed: no_endpoint, denied)"
	for _, reason := range []string{"no_endpoint", "denied"} {
		out, errOut, code := ctl(t, c.addr, "conns", "--reason", reason)
		if code != 0 || !strings.Contains(out, "web/a") || !strings.Contains(out, want) {
			t.Errorf("sluicectl conns --reason %s: exit %d, %q, %q; want web/a ... %s", reason, code, out, errOut, want)
		}
	}
}
