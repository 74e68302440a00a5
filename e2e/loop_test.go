package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func twoBackendSnapshot(a, b *backend, wa, wb int, httpAddr, tcpAddr string) string {
	return fmt.Sprintf(`
clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    endpoints:
      - { name: %s, address: %s, weight: %d }
      - { name: %s, address: %s, weight: %d }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, a.name, a.addr, wa, b.name, b.addr, wb, httpAddr, tcpAddr)
}

// TestKeepAliveClientIsBalancedPerRequest is DESIGN problem 1: a Go client
// with HTTP/1.1 keep-alive sends every request over one connection, and
// still each request is balanced on its own, in the snapshot's weights.
func TestKeepAliveClientIsBalancedPerRequest(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, twoBackendSnapshot(a, b, 2, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	var conns atomic.Int32
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			conns.Add(1)
		}
	}}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	counts := map[string]int{}
	for range 300 {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+httpAddr+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d body %q err %v", resp.StatusCode, body, err)
		}
		counts[string(body)]++
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("client opened %d connections, want 1 (keep-alive)", got)
	}
	// Smooth weighted round robin is exact over whole cycles: 2:1 of 300.
	if counts["a"] != 200 || counts["b"] != 100 {
		t.Errorf("answers = %v, want a:200 b:100 over one keep-alive connection", counts)
	}
}

// TestTCPListenerBalancesConnections: a TCP listener picks an endpoint per
// connection, in weighted round robin, and proxies bytes both ways.
func TestTCPListenerBalancesConnections(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, twoBackendSnapshot(a, b, 1, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	counts := map[string]int{}
	for range 20 {
		body, err := tcpGet(tcpAddr)
		if err != nil {
			t.Fatalf("through TCP listener: %v", err)
		}
		counts[body]++
	}
	if counts["a"] != 10 || counts["b"] != 10 {
		t.Errorf("answers = %v, want a:10 b:10", counts)
	}
}

// TestApplyUnderLoad: clients keep sending while operators apply new
// snapshots (weights change, an endpoint is added, another removed); no
// request fails, and each change shows in the traffic within a second.
func TestApplyUnderLoad(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, d := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "d")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, twoBackendSnapshot(a, b, 1, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []string
		seen     = map[string]int{}
		total    atomic.Int64
	)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
			for n := 0; n < 5000 && ctx.Err() == nil; n++ { // bounded
				body, err := get(client, "http://"+httpAddr+"/")
				total.Add(1)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					seen[body]++
				}
				mu.Unlock()
			}
		}()
	}
	// seenSince counts answers from name after a point in time.
	snapshotOf := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
	waitAnswers := func(name string, want bool) {
		t.Helper()
		before := snapshotOf()
		start := time.Now()
		waitFor(t, fmt.Sprintf("answers from %s to %v", name, map[bool]string{true: "start", false: "stop"}[want]), func() bool {
			now := snapshotOf()
			grew := now[name] > before[name]
			if want {
				return grew
			}
			// Stopped: no growth over a quiet window once the apply is in.
			time.Sleep(100 * time.Millisecond)
			after := snapshotOf()
			return after[name] == now[name]
		})
		if took := time.Since(start); took > time.Second {
			t.Errorf("change reached traffic after %v, want within 1s", took)
		}
	}

	// Add d.
	c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
      - { name: d, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, a.addr, b.addr, d.addr, httpAddr, tcpAddr))
	waitAnswers("d", true)
	// Remove a.
	c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: b, address: %s, weight: 3 }
      - { name: d, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, b.addr, d.addr, httpAddr, tcpAddr))
	waitAnswers("a", false)
	cancel()
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during applies; first: %s", len(failures), total.Load(), failures[0])
	}
	if total.Load() < 100 {
		t.Errorf("only %d requests were made; the load did not run", total.Load())
	}
}

// nacked is a node that refused version v2 because the TCP listener it
// moves to (movedTo) is on a port another socket holds (taken), and runs
// v1, with that listener on tcpAddr.
type nacked struct {
	c                          *cp
	dp                         *dataplane.Dataplane
	a, b                       *backend
	httpAddr, tcpAddr, movedTo string
	v1, v2                     uint64
	taken                      net.Listener
	st                         *sluicev1.NodeStatus // as the NACK left it
}

func startNacked(t *testing.T) *nacked {
	t.Helper()
	n := &nacked{c: startCP(t, t.TempDir(), "")}
	n.a, n.b = startBackend(t, "a"), startBackend(t, "b")
	n.httpAddr, n.tcpAddr = freeAddr(t), freeAddr(t)
	n.v1 = n.c.apply(t, twoBackendSnapshot(n.a, n.b, 1, 1, n.httpAddr, n.tcpAddr))
	n.dp = startNode(t, n.c.addr, "node-1")
	waitVersion(t, n.dp, n.v1)
	var err error
	if n.taken, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.taken.Close() })
	n.movedTo = n.taken.Addr().String()
	n.v2 = n.c.apply(t, twoBackendSnapshot(n.a, n.b, 1, 1, n.httpAddr, n.movedTo))
	waitFor(t, "the NACK of version 2", func() bool {
		n.st = n.c.nodeStatus(t, "node-1")
		return n.st != nil && n.st.GetNackedVersion() == n.v2
	})
	return n
}

// TestNackKeepsServing: a node that cannot apply a valid snapshot (its
// listener address is taken) NACKs with the reason, keeps serving its
// previous snapshot, and applies the next good version normally.
func TestNackKeepsServing(t *testing.T) {
	n := startNacked(t)
	c, dp, st := n.c, n.dp, n.st
	if !strings.Contains(st.GetNackError(), "address already in use") || !strings.Contains(st.GetNackError(), "listener db") {
		t.Errorf("nack error = %q, want the listener and 'address already in use'", st.GetNackError())
	}
	if st.GetAckedVersion() != n.v1 || dp.Node.Version() != fmt.Sprint(n.v1) {
		t.Errorf("acked %d, node runs %q; want both at version %d", st.GetAckedVersion(), dp.Node.Version(), n.v1)
	}
	// The previous snapshot still serves, on both listeners.
	if _, err := get(http.DefaultClient, "http://"+n.httpAddr+"/"); err != nil {
		t.Errorf("HTTP listener after NACK: %v", err)
	}
	if _, err := tcpGet(n.tcpAddr); err != nil {
		t.Errorf("TCP listener after NACK: %v", err)
	}

	// The next good version is applied and clears the NACK.
	v3 := c.apply(t, twoBackendSnapshot(n.a, n.b, 3, 1, n.httpAddr, n.tcpAddr))
	waitVersion(t, dp, v3)
	waitFor(t, "ACK of version 3", func() bool {
		st = c.nodeStatus(t, "node-1")
		return st.GetAckedVersion() == v3
	})
	if st.GetNackError() != "" {
		t.Errorf("nack error still shown after a newer ACK: %q", st.GetNackError())
	}
}

// TestNackedVersionAppliesOnceFree: a version refused for a cause outside
// the snapshot, a port another process holds, is tried again; once the
// port is free the node runs it without another apply, the control plane
// shows it acknowledged, and its listener serves.
func TestNackedVersionAppliesOnceFree(t *testing.T) {
	n := startNacked(t)
	n.taken.Close() // the other process lets the port go
	waitVersion(t, n.dp, n.v2)
	var st *sluicev1.NodeStatus
	waitFor(t, "the control plane to show version 2 applied", func() bool {
		st = n.c.nodeStatus(t, "node-1")
		return st.GetAckedVersion() == n.v2
	})
	if st.GetNackError() != "" {
		t.Errorf("nack error still shown once version 2 applied: %q", st.GetNackError())
	}
	if _, err := tcpGet(n.movedTo); err != nil {
		t.Errorf("TCP listener on its new address: %v", err)
	}
}

// TestControlPlaneRestart: nodes keep serving while the control plane is
// down, reconnect when it is back, and history survives the restart.
func TestControlPlaneRestart(t *testing.T) {
	dir := t.TempDir()
	c := startCP(t, dir, "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v1 := c.apply(t, twoBackendSnapshot(a, b, 1, 1, httpAddr, tcpAddr))
	v2 := c.apply(t, twoBackendSnapshot(a, b, 2, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v2)

	c.stop(t)
	for i := range 20 {
		if _, err := get(http.DefaultClient, "http://"+httpAddr+"/"); err != nil {
			t.Fatalf("request %d with the control plane down: %v", i, err)
		}
	}

	c2 := startCP(t, dir, c.addr) // same address, same data
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hist, err := c2.api.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hist.GetCurrent() != v2 || len(hist.GetVersions()) != 2 || hist.GetVersions()[1].GetVersion() != v1 {
		t.Errorf("history after restart: current %d, %d versions; want current %d and versions %d,%d", hist.GetCurrent(), len(hist.GetVersions()), v2, v2, v1)
	}
	waitFor(t, "node to reconnect", func() bool {
		st := c2.nodeStatus(t, "node-1")
		return st != nil && st.GetConnected() && st.GetAckedVersion() == v2
	})
	// sluicectl nodes shows the version the node holds as sent, as it did
	// before the restart: the new process sent it nothing, the node already
	// runs what it is to run, and SENT must not read "-" beside APPLIED.
	want := []string{"node-1", "connected", fmt.Sprint(v2), fmt.Sprint(v2), "-"}
	var got []string
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, out := nodesRow(t, c2.addr, "node-1")
		if got = r; r == nil {
			got = []string{out}
		}
		if slices.Equal(got, want) || time.Now().After(end) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("sluicectl nodes after the restart: ID, STATE, APPLIED, SENT, LAST-NACK = %q, want %q", got, want)
	}
	v3 := c2.apply(t, twoBackendSnapshot(a, b, 1, 2, httpAddr, tcpAddr))
	waitVersion(t, dp, v3)
}

// TestConnRecordsReachControlPlane: every client connection leaves a record
// that the control plane lists.
func TestConnRecordsReachControlPlane(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, twoBackendSnapshot(a, b, 1, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	// One keep-alive connection with 5 requests, then one TCP session.
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	for range 5 {
		if _, err := get(client, "http://"+httpAddr+"/"); err != nil {
			t.Fatal(err)
		}
	}
	tr.CloseIdleConnections()
	if _, err := tcpGet(tcpAddr); err != nil {
		t.Fatal(err)
	}

	var recs []*sluicev1.ConnRecord
	waitFor(t, "two connection records", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := c.api.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: "node-1"})
		if err != nil {
			t.Fatal(err)
		}
		recs = resp.GetRecords()
		return len(recs) >= 2
	})
	byListener := map[string]*sluicev1.ConnRecord{}
	for _, r := range recs {
		byListener[r.GetListener()] = r
	}
	h, tc := byListener["public"], byListener["db"]
	if h == nil || tc == nil {
		t.Fatalf("records %v, want one for listener public and one for db", recs)
	}
	if h.GetRequests() != 5 || h.GetNodeId() != "node-1" || h.GetCluster() != "web" || h.GetBytesIn() == 0 || h.GetBytesOut() == 0 {
		t.Errorf("HTTP record = %v; want 5 requests on node-1, cluster web, bytes both ways", h)
	}
	if h.GetCloseReason() != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("HTTP record reason = %v, want CLIENT_CLOSED", h.GetCloseReason())
	}
	if tc.GetCluster() != "web" || (tc.GetEndpoint() != "a" && tc.GetEndpoint() != "b") || tc.GetBytesIn() == 0 {
		t.Errorf("TCP record = %v; want cluster web, endpoint a or b, bytes in", tc)
	}
}

// TestRemovedEndpointSessionsClosed: removing an endpoint (drain_timeout 0)
// closes every TCP session to it at once; sessions to the other endpoint go
// on. DESIGN problem 2 in its simplest form.
func TestRemovedEndpointSessionsClosed(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	// Backends that hold sessions open: each echoes what it gets.
	echo := func(name string) *backend {
		addr := loopback.Serve(t, func(conn net.Conn) {
			defer conn.Close()
			buf := make([]byte, 64)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				conn.Write([]byte(name + ":" + string(buf[:n])))
			}
		})
		return &backend{name: name, addr: addr}
	}
	a, b := echo("a"), echo("b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	v := c.apply(t, twoBackendSnapshot(a, b, 1, 1, httpAddr, tcpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	const sessions = 40
	owner := map[net.Conn]string{}
	for range sessions {
		conn, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(testTimeout))
		conn.Write([]byte("hi"))
		buf := make([]byte, 16)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		owner[conn] = strings.SplitN(string(buf[:n]), ":", 2)[0]
	}

	v2 := c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: b, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, b.addr, httpAddr, tcpAddr))
	waitVersion(t, dp, v2)

	var closedA, aliveB int
	for conn, name := range owner {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write([]byte("again"))
		buf := make([]byte, 16)
		n, err := conn.Read(buf)
		switch {
		case name == "a" && err != nil:
			closedA++
		case name == "b" && err == nil && strings.HasPrefix(string(buf[:n]), "b:"):
			aliveB++
		default:
			t.Errorf("session to %s after removal of a: read %q, %v", name, buf[:n], err)
		}
	}
	if closedA != sessions/2 || aliveB != sessions/2 {
		t.Errorf("closed sessions to a: %d, live sessions to b: %d; want %d and %d", closedA, aliveB, sessions/2, sessions/2)
	}
}

// TestBackupOnlyWhenPrimariesDown: the backup answers only once health
// checks mark every primary down, and the primary takes over again when it
// is back.
func TestBackupOnlyWhenPrimariesDown(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, s := startBackend(t, "a"), startBackend(t, "sorry")
	httpAddr := freeAddr(t)
	v := c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    health_check: { interval: 100ms, timeout: 100ms, fall: 2, rise: 1 }
    endpoints:
      - { name: a, address: %s }
      - { name: sorry, address: %s, backup: true }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, s.addr, httpAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := range 20 {
		if body, err := get(client, "http://"+httpAddr+"/"); err != nil || body != "a" {
			t.Fatalf("request %d with the primary up: %q, %v; want a", i, body, err)
		}
	}

	a.srv.Close() // the primary goes away
	waitFor(t, "the backup to answer", func() bool {
		body, _ := get(client, "http://"+httpAddr+"/")
		return body == "sorry"
	})

	// The primary comes back on its address; checks bring it back.
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", a.addr, err)
	}
	back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) })}
	go back.Serve(ln)
	defer back.Close()
	waitFor(t, "the primary to answer again", func() bool {
		body, _ := get(client, "http://"+httpAddr+"/")
		return body == "a"
	})
}
