package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// endpointStats returns what the control plane's GetStats says node id
// sees of cluster/name, or nil.
func (c *cp) endpointStats(t *testing.T, id, cluster, name string) (*sluicev1.NodeStats, *sluicev1.EndpointStats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.api.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: id, Cluster: cluster})
	if err != nil {
		t.Fatalf("GetStats: %v", err)
	}
	for _, n := range resp.GetNodes() {
		for _, ep := range n.GetEndpoints() {
			if ep.GetEndpoint() == name {
				return n, ep
			}
		}
	}
	return nil, nil
}

// serveName answers every HTTP request on ln with name, until closed.
func serveName(ln net.Listener, name string) *http.Server {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	return srv
}

// TestStatsShowBackendDown: a backend that dies shows DOWN, with why, in the
// control plane's stats and in sluicectl stats within a few check
// intervals, and UP once it is back; the counters show the requests it got.
func TestStatsShowBackendDown(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrA := lnA.Addr().String()
	srvA := serveName(lnA, "a")
	t.Cleanup(func() { srvA.Close() })
	b := startBackend(t, "b")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	version := c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 2, rise: 1 }
    endpoints:
      - { name: a, address: %s, weight: 3 }
      - { name: b, address: %s }
listeners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: web }
`, addrA, b.addr, listen))
	waitVersion(t, dp, version)
	waitFor(t, "a to be UP in the control plane's stats", func() bool {
		_, ep := c.endpointStats(t, "node-1", "web", "a")
		return ep.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP
	})
	got := count(t, "http://"+listen+"/", 8, nil)
	if got["a"] != 6 || got["b"] != 2 {
		t.Fatalf("answers %v, want a:6 b:2", got)
	}

	srvA.Close() // a dies: checks are refused
	killed := time.Now()
	waitFor(t, "a to be DOWN in the control plane's stats", func() bool {
		_, ep := c.endpointStats(t, "node-1", "web", "a")
		return ep.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN
	})
	t.Logf("a shown DOWN by the control plane %v after it died (checks every 100ms, fall 2)", time.Since(killed).Round(time.Millisecond))
	n, a := c.endpointStats(t, "node-1", "web", "a")
	if !n.GetConnected() || a.GetDetail() != "connection refused" || a.GetSince() == nil || a.GetAddress() != addrA || a.GetWeight() != 3 {
		t.Errorf("a down: node connected %v, endpoint %v; want connected, detail %q, a since, address %s, weight 3",
			n.GetConnected(), a, "connection refused", addrA)
	}
	// The report of the change carries the counters of the moment.
	_, bs := c.endpointStats(t, "node-1", "web", "b")
	if a.GetRequests() != 6 || bs.GetRequests() != 2 || bs.GetBytesIn() == 0 || bs.GetBytesOut() == 0 {
		t.Errorf("counters: a %d requests, b %d requests (%d bytes in, %d out); want 6 and 2, with bytes",
			a.GetRequests(), bs.GetRequests(), bs.GetBytesIn(), bs.GetBytesOut())
	}
	out, errOut, code := ctl(t, c.addr, "stats", "--node", "node-1")
	// The counters were read at the version the node runs.
	if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("node-1 (connected, version %d, reported ", version)) {
		t.Fatalf("sluicectl stats: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	row := fields(out, "web/a")
	// CLUSTER/ENDPOINT ADDRESS HEALTH WEIGHT ACTIVE CONNS REQUESTS BYTES-IN BYTES-OUT 5XX CONN-ERR SINCE DETAIL...
	if len(row) < 14 || row[1] != addrA || row[2] != "DOWN" || row[3] != "3" || row[6] != "6" || strings.Join(row[12:], " ") != "connection refused" {
		t.Errorf("sluicectl stats row of a = %q, want %s DOWN, weight 3, 6 requests, detail connection refused\n%s", row, addrA, out)
	}

	lnA, err = net.Listen("tcp", addrA)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addrA, err)
	}
	srvA = serveName(lnA, "a")
	waitFor(t, "a to be UP again", func() bool {
		_, ep := c.endpointStats(t, "node-1", "web", "a")
		return ep.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP
	})
	if _, up := c.endpointStats(t, "node-1", "web", "a"); up.GetDetail() != "" || !up.GetSince().AsTime().After(a.GetSince().AsTime()) {
		t.Errorf("a back up: %v, want no detail, since after it went down (%v)", up, a.GetSince().AsTime())
	}
	out, _, _ = ctl(t, c.addr, "stats", "--cluster", "web")
	if row := fields(out, "web/a"); len(row) < 3 || row[2] != "UP" {
		t.Errorf("sluicectl stats once a is back: row %q\n%s", row, out)
	}
	// A typo is not "no stats yet", nor "no connections".
	for _, tc := range []struct{ cmd, flag, value, want string }{
		{"stats", "--cluster", "wbe", `sluicectl stats: cluster "wbe" is in no group's snapshot, did you mean "web"?`},
		{"stats", "--node", "node-2", `sluicectl stats: node "node-2" is not in the fleet (its nodes are: node-1)`},
		{"conns", "--cluster", "wbe", `sluicectl conns: cluster "wbe" is in no group's snapshot, did you mean "web"?`},
		{"conns", "--node", "node-2", `sluicectl conns: node "node-2" is not in the fleet (its nodes are: node-1)`},
	} {
		out, errOut, code = ctl(t, c.addr, tc.cmd, tc.flag, tc.value)
		if code != 1 || out != "" || strings.TrimSpace(errOut) != tc.want {
			t.Errorf("sluicectl %s %s %s: exit %d, stdout %q, stderr %q; want 1 and %q", tc.cmd, tc.flag, tc.value, code, out, errOut, tc.want)
		}
	}
}

// TestStoppedNodeKeepsItsLastStats: a node stopped as SIGTERM stops it
// (drain, then close) stays in the control plane's stats, disconnected,
// with what it last saw of its endpoints and their counters, not with the
// empty view of its clusters closing on the way out.
func TestStoppedNodeKeepsItsLastStats(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "b")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: web, endpoints: [ { name: b, address: %s, weight: 2 } ] }
listeners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: web }
`, b.addr, listen)))
	if got := count(t, "http://"+listen+"/", 3, nil); got["b"] != 3 {
		t.Fatalf("answers %v, want b:3", got)
	}
	waitFor(t, "the control plane's stats to count b's 3 requests", func() bool {
		_, ep := c.endpointStats(t, "node-1", "web", "b")
		return ep.GetRequests() == 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := dp.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	dp.Close()
	waitFor(t, "the control plane to see node-1 disconnected", func() bool {
		return !c.nodeStatus(t, "node-1").GetConnected()
	})
	n, ep := c.endpointStats(t, "node-1", "web", "b")
	if n == nil || n.GetConnected() || ep.GetRequests() != 3 || ep.GetWeight() != 2 {
		t.Fatalf("stats of the stopped node: %v %v, want it disconnected, with b's weight 2 and 3 requests", n, ep)
	}
	out, errOut, code := ctl(t, c.addr, "stats", "--node", "node-1")
	if row := fields(out, "web/b"); code != 0 || len(row) < 7 || row[3] != "2" || row[6] != "3" {
		t.Errorf("sluicectl stats: exit %d, stderr %q:\n%s\nwant web/b with weight 2 and 3 requests", code, errOut, out)
	}
}

// fields returns the cells of the line of out that begins with first,
// split on runs of spaces.
func fields(out, first string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// TestShutdownSessionsCLI: sluicectl shutdown-sessions closes every session
// to one endpoint, and only to it: the backend sees all 50 sockets close,
// the command says 50, the records say SHUTDOWN, and the endpoint takes a
// new session at once.
func TestShutdownSessionsCLI(t *testing.T) {
	const sessions = 50
	a, b := startEchoBackend(t), startEchoBackend(t)
	c := startCP(t, t.TempDir(), "")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: db
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
listeners:
  - { name: db, address: %s, protocol: TCP, default_cluster: db }
`, a.addr, b.addr, listen)))
	// The node's command stream is up once a shutdown reaches it; with no
	// session open, it closes nothing.
	waitFor(t, "the node to take commands", func() bool {
		out, _, code := ctl(t, c.addr, "shutdown-sessions", "db/a")
		return code == 0 && strings.Contains(out, "node-1  closed 0 connections")
	})

	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	open := func() net.Conn {
		t.Helper()
		conn, err := net.DialTimeout("tcp", listen, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		if !echoes(conn) {
			t.Fatal("a new session does not echo")
		}
		return conn
	}
	for range 2 * sessions {
		open()
	}
	if a.open.Load() != sessions || b.open.Load() != sessions {
		t.Fatalf("sessions on a %d, on b %d; want %d each (round robin)", a.open.Load(), b.open.Load(), sessions)
	}

	out, errOut, code := ctl(t, c.addr, "shutdown-sessions", "db/a")
	if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("node-1  closed %d connections", sessions) {
		t.Errorf("shutdown-sessions: exit %d, stdout %q, stderr %q; want node-1 closed %d", code, out, errOut, sessions)
	}
	waitFor(t, "every socket to a to close", func() bool { return a.open.Load() == 0 })
	if got := b.open.Load(); got != sessions {
		t.Errorf("%d sessions left on b, want all %d", got, sessions)
	}
	waitFor(t, "the records of a's sessions", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := c.api.ListConns(ctx, &sluicev1.ListConnsRequest{Endpoint: "a", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		shut := 0
		for _, r := range resp.GetRecords() {
			if r.GetCloseReason() == sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN {
				shut++
			}
		}
		return shut == sessions
	})
	// a still takes new work: of two new sessions, round robin sends one
	// there.
	open()
	open()
	if a.open.Load() != 1 || b.open.Load() != sessions+1 {
		t.Errorf("after two new sessions: a %d, b %d; want 1 and %d", a.open.Load(), b.open.Load(), sessions+1)
	}

	out, errOut, code = ctl(t, c.addr, "shutdown-sessions", "db/nope")
	if code != 1 || !strings.Contains(errOut, `cluster "db" has no endpoint "nope" (it has: a, b)`) {
		t.Errorf("unknown endpoint: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// echoes sends a line over conn and reports whether it came back.
func echoes(conn net.Conn) bool {
	conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(conn, "hi\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "hi\n"
}
