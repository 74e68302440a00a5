package node

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// status returns the status of cluster/name, failing the test if the node
// has no such endpoint.
func status(t *testing.T, n *Node, cluster, name string) EndpointStatus {
	t.Helper()
	for _, st := range n.Endpoints() {
		if st.Cluster == cluster && st.Name == name {
			return st
		}
	}
	t.Fatalf("no endpoint %s/%s in %+v", cluster, name, n.Endpoints())
	return EndpointStatus{}
}

// TestEndpointStatusSinceAndDetail: Endpoints says since when each
// endpoint is in its state and, for one that checks took down, why; an
// operator state keeps its since across applies that do not change it.
// StatusChanges grows with every change Endpoints shows.
func TestEndpointStatusSinceAndDetail(t *testing.T) {
	n := newNode(t)
	live := backend(t, "a")
	dead := freeAddr(t)
	const tmpl = `
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 1, rise: 1 }
    endpoints:
      - { name: a, address: "%s" %s}
      - { name: b, address: "%s" }
  - name: plain
    endpoints: [{ name: p, address: "%s" }]
`
	start := time.Now()
	if err := n.Apply("1", parse(t, tmpl, live, "", dead, live)); err != nil {
		t.Fatal(err)
	}
	applied := n.StatusChanges()
	waitUntil(t, "a up and b down", func() bool {
		return status(t, n, "web", "a").Health == "UP" && status(t, n, "web", "b").Health == "DOWN"
	})
	if got := n.StatusChanges(); got < applied+2 {
		t.Errorf("StatusChanges %d after the apply and two health changes, want at least %d", got, applied+2)
	}
	a, b := status(t, n, "web", "a"), status(t, n, "web", "b")
	if a.Detail != "" || a.Since.Before(start) {
		t.Errorf("a: %+v, want no detail, since after the apply", a)
	}
	if b.Detail != "connection refused" || b.Since.Before(start) {
		t.Errorf("b: detail %q since %v, want %q since after the apply", b.Detail, b.Since, "connection refused")
	}
	if p := status(t, n, "plain", "p"); p.Health != "UP" || p.Since.Before(start) || p.Since.After(time.Now()) {
		t.Errorf("unchecked p: %s since %v, want UP since the apply", p.Health, p.Since)
	}

	before := n.StatusChanges()
	drained := time.Now()
	if err := n.Apply("2", parse(t, tmpl, live, ", state: DRAINING ", dead, live)); err != nil {
		t.Fatal(err)
	}
	if n.StatusChanges() == before {
		t.Error("StatusChanges did not move with an apply")
	}
	d := status(t, n, "web", "a")
	if d.Health != "DRAINING" || d.Since.Before(drained) {
		t.Errorf("a after drain: %s since %v, want DRAINING since %v or later", d.Health, d.Since, drained)
	}
	if err := n.Apply("3", parse(t, strings.Replace(tmpl, "interval: 100ms", "interval: 120ms", 1), live, ", state: DRAINING ", dead, live)); err != nil {
		t.Fatal(err)
	}
	if again := status(t, n, "web", "a"); again.Health != "DRAINING" || !again.Since.Equal(d.Since) {
		t.Errorf("a after an apply that kept it draining: %s since %v, want DRAINING since %v", again.Health, again.Since, d.Since)
	}
	if again := status(t, n, "web", "b"); again.Health != "DOWN" || !again.Since.Equal(b.Since) {
		t.Errorf("b after an apply that changed its check: %s since %v, want DOWN since %v", again.Health, again.Since, b.Since)
	}
}

// echoServer echoes lines and counts the connections open to it.
type echoServer struct {
	addr string
	ln   net.Listener // closed at the test's end, or sooner by the test
	open atomic.Int32
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), ln: ln}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.open.Add(1)
			wg.Go(func() {
				defer s.open.Add(-1)
				defer c.Close()
				io.Copy(c, c)
			})
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

// echoed sends a line over c and reports whether it came back.
func echoed(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

// echoSession is a client session through the node that has exchanged one
// line.
type echoSession struct {
	net.Conn
	r *bufio.Reader
}

func openEchoSession(t *testing.T, addr string) echoSession {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := echoSession{c, bufio.NewReader(c)}
	if !s.alive() {
		t.Fatal("new session does not echo")
	}
	return s
}

// alive reports whether the session still echoes a line.
func (s echoSession) alive() bool {
	s.SetDeadline(time.Now().Add(testTimeout))
	if _, err := s.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := s.r.ReadString('\n')
	return err == nil && line == "ping\n"
}

// closed reports whether the node closed the session: the client reads EOF.
func (s echoSession) closed() bool {
	s.SetDeadline(time.Now().Add(testTimeout))
	_, err := s.r.ReadByte()
	return err == io.EOF
}

// TestNodeShutdownSessions: ShutdownSessions closes every session to the
// endpoint, and only to it, counts them, and the records say SHUTDOWN;
// the endpoint takes new sessions at once. It reaches a draining endpoint
// too, across applies, and names what the node does not have.
func TestNodeShutdownSessions(t *testing.T) {
	var mu sync.Mutex
	reasons := map[string]map[sluicev1.CloseReason]int{} // by endpoint
	n := New(Options{Logger: slog.New(slog.DiscardHandler), OnConn: func(ci *conntrack.ConnInfo) {
		mu.Lock()
		defer mu.Unlock()
		if reasons[ci.Endpoint] == nil {
			reasons[ci.Endpoint] = map[sluicev1.CloseReason]int{}
		}
		reasons[ci.Endpoint][ci.Reason]++
	}})
	t.Cleanup(n.Close)
	a, b := startEcho(t), startEcho(t)
	la, lb := freeAddr(t), freeAddr(t)
	const tmpl = `
clusters:
  - name: a
    drain_timeout: 1h
    endpoints: [{ name: a, address: "%s" %s}]
  - name: b
    endpoints: [{ name: b, address: "%s" }]
listeners:
  - { name: la, address: "%s", protocol: TCP, default_cluster: a }
  - { name: lb, address: "%s", protocol: TCP, default_cluster: b }
`
	if err := n.Apply("1", parse(t, tmpl, a.addr, "", b.addr, la, lb)); err != nil {
		t.Fatal(err)
	}
	dial := func(addr string, count int) []net.Conn {
		t.Helper()
		var conns []net.Conn
		for range count {
			c, err := net.DialTimeout("tcp", addr, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if !echoed(c) {
				t.Fatal("a new session does not echo")
			}
			conns = append(conns, c)
		}
		return conns
	}
	toA, toB := dial(la, 5), dial(lb, 3)

	closed, err := n.ShutdownSessions("a", "a")
	if err != nil || closed != 5 {
		t.Fatalf("ShutdownSessions(a, a) = %d, %v; want 5", closed, err)
	}
	waitUntil(t, "a's sockets to close", func() bool { return a.open.Load() == 0 })
	for i, c := range toA {
		if echoed(c) {
			t.Errorf("session %d to a still echoes", i)
		}
	}
	for i, c := range toB {
		if !echoed(c) {
			t.Errorf("session %d to b ended with a's", i)
		}
	}
	waitUntil(t, "five records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reasons["a"][sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN] == 5
	})
	dial(la, 1) // a takes new work

	// Drained with an hour to go, across another apply: the sessions live
	// on until shut down.
	if err := n.Apply("2", parse(t, tmpl, a.addr, ", state: DRAINING ", b.addr, la, lb)); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("3", parse(t, tmpl, a.addr, ", state: DRAINING, weight: 2 ", b.addr, la, lb)); err != nil {
		t.Fatal(err)
	}
	if got := a.open.Load(); got != 1 {
		t.Fatalf("%d sessions on draining a, want the 1 opened before the drain", got)
	}
	if closed, err := n.ShutdownSessions("a", "a"); err != nil || closed != 1 {
		t.Errorf("ShutdownSessions of draining a = %d, %v; want 1", closed, err)
	}
	waitUntil(t, "draining a's socket to close", func() bool { return a.open.Load() == 0 })

	for _, tt := range []struct{ cluster, endpoint, want string }{
		{"c", "a", `no cluster "c"`},
		{"a", "x", `cluster "a" has no endpoint "x"`},
	} {
		if _, err := n.ShutdownSessions(tt.cluster, tt.endpoint); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ShutdownSessions(%s, %s): %v, want an error saying %s", tt.cluster, tt.endpoint, err, tt.want)
		}
	}
}

// TestEndpointStatusProto: every field reaches the wire, and every health
// Endpoints may show has its enum value.
func TestEndpointStatusProto(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	s := EndpointStatus{Cluster: "web", Name: "a", Address: "10.0.0.1:80", Health: "DOWN", Weight: 3, Backup: true,
		Inflight: 4, Conns: 5, Since: since, Detail: "connection refused"}
	s.Stats.Requests, s.Stats.BytesIn, s.Stats.BytesOut, s.Stats.ConnectErrors, s.Stats.Responses5xx = 6, 7, 8, 9, 10
	got := s.Proto()
	want := &sluicev1.EndpointStats{Cluster: "web", Endpoint: "a", Address: "10.0.0.1:80", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN,
		Weight: 3, Backup: true, Active: 4, Conns: 5, Requests: 6, BytesIn: 7, BytesOut: 8, ConnectErrors: 9, Responses_5Xx: 10,
		Since: timestamppb.New(since), Detail: "connection refused"}
	if !proto.Equal(got, want) {
		t.Errorf("Proto:\n%v\nwant\n%v", got, want)
	}
	if got := (EndpointStatus{Health: "UP"}).Proto(); got.Since != nil {
		t.Errorf("an unknown since went out as %v, want unset", got.Since)
	}
	for _, h := range []string{"UP", "DOWN", "DRAINING", "DISABLED", "EJECTED", "CHECKING"} {
		if got := (EndpointStatus{Health: h}).Proto().GetHealth(); got.String() != "ENDPOINT_HEALTH_"+h {
			t.Errorf("health %s went out as %v", h, got)
		}
	}
}

// TestDownEndpointLetsGoOfItsPool: when checks mark an endpoint down, its
// pooled connections are closed: nothing would pick them meanwhile, and
// they held a descriptor each and showed in its connection count.
func TestDownEndpointLetsGoOfItsPool(t *testing.T) {
	n := newNode(t)
	e := startEcho(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 1, rise: 1 }
    endpoints: [{ name: a, address: "%s" }]
`, e.addr)); err != nil {
		t.Fatal(err)
	}
	ep := member(t, n, "a")
	c, err := ep.Dial(t.Context(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the echo server waits for its connections
	ep.PutIdle(c, upstream.Pooled{})
	waitUntil(t, "a up", func() bool { return status(t, n, "web", "a").Health == "UP" })
	if got := ep.Conns(); got != 1 {
		t.Fatalf("a holds %d connections, want the pooled one", got)
	}
	e.ln.Close() // checks are refused from now on
	waitUntil(t, "a down", func() bool { return status(t, n, "web", "a").Health == "DOWN" })
	waitUntil(t, "a's pool emptied", func() bool { return ep.Conns() == 0 })
	// With checks refused, only the pooled connection can still be open.
	waitUntil(t, "the pooled connection closed at the endpoint", func() bool { return e.open.Load() == 0 })
}

// TestDrainedEndpointIsStillChecked: as HAProxy checks a server in DRAIN,
// the node checks a draining endpoint, shows what the checks found, and an
// endpoint enabled while its checks fail comes back DOWN, picked by no
// request. A disabled endpoint is not checked (HAProxy's MAINT).
func TestDrainedEndpointIsStillChecked(t *testing.T) {
	n := newNode(t)
	var failing atomic.Bool
	var checks atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			checks.Add(1)
			if failing.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "a")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	listen := freeAddr(t)
	const tmpl = `
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 1, rise: 1, http: { path: /health } }
    endpoints:
      - { name: a, address: "%s" %s}
      - { name: b, address: "%s" }
listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web }]
`
	apply := func(version, state string) {
		t.Helper()
		if err := n.Apply(version, parse(t, tmpl, ln.Addr().String(), state, backend(t, "b"), listen)); err != nil {
			t.Fatal(err)
		}
	}
	detailOf := func(want string) func() bool {
		return func() bool { return status(t, n, "web", "a").Detail == want }
	}

	apply("1", ", state: DRAINING ")
	waitUntil(t, `a's detail "checks UP"`, detailOf("checks UP"))
	failing.Store(true)
	// The transition is counted just after the checker shows it.
	waitUntil(t, `a's detail "checks DOWN: status 503", counted`, func() bool {
		st := status(t, n, "web", "a")
		return st.Detail == "checks DOWN: status 503" && st.Stats.HealthTransitions > 0
	})
	if st := status(t, n, "web", "a"); st.Health != "DRAINING" || st.Stats.HealthTransitions != 1 {
		t.Errorf("a drained, its checks failing: %s after %d health transitions, want DRAINING after 1", st.Health, st.Stats.HealthTransitions)
	}

	apply("2", "")
	if st := status(t, n, "web", "a"); st.Health != "DOWN" || st.Detail != "status 503" {
		t.Errorf("a enabled while its checks fail: %s (%q), want DOWN (%q)", st.Health, st.Detail, "status 503")
	}
	for i := range 4 {
		if got := <-getAsync("http://" + listen + "/"); got != "200 OK b" {
			t.Fatalf("request %d after enabling a, which is down: %q, want %q", i, got, "200 OK b")
		}
	}
	failing.Store(false)
	waitUntil(t, "a up again", func() bool { return status(t, n, "web", "a").Health == "UP" })

	apply("3", ", state: DISABLED ")
	// A check sent before the apply may still reach the endpoint, as late
	// as a busy machine makes it: wait for the count to hold still for
	// three intervals. Checks that go on never let it.
	before := checks.Load()
	waitUntil(t, "the checks to stop", func() bool {
		for settled := time.Now(); time.Since(settled) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
			if c := checks.Load(); c != before {
				before = c
				return false
			}
		}
		return true
	})
	time.Sleep(600 * time.Millisecond) // six intervals
	if got := checks.Load() - before; got != 0 {
		t.Errorf("a disabled: %d checks in six intervals, want none", got)
	}
	if st := status(t, n, "web", "a"); st.Health != "DISABLED" || st.Detail != "" {
		t.Errorf("a disabled: %s (%q), want DISABLED without detail", st.Health, st.Detail)
	}
}
