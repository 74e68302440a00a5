package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoBackend echoes lines, counts the connections open to it and
// remembers when the last one closed, so a measurement does not depend on
// how often the test polls.
type echoBackend struct {
	addr      string
	ln        net.Listener
	open      atomic.Int32
	lastClose atomic.Int64 // UnixNano
}

func startEchoBackend(t *testing.T) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{addr: ln.Addr().String(), ln: ln}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.open.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						break
					}
					if _, err := c.Write(line); err != nil {
						break
					}
				}
				c.Close()
				b.lastClose.Store(time.Now().UnixNano())
				b.open.Add(-1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return b
}

// TestRemoveEndpointUnderLoad is DESIGN problem 2 under load: 400 busy TCP
// sessions heartbeat through a listener to two endpoints; one endpoint is
// removed with drain_timeout 300ms, and every socket to it is closed by
// the deadline while the sessions to the other never miss a beat.
func TestRemoveEndpointUnderLoad(t *testing.T) {
	const sessions = 400
	const drain = 300 * time.Millisecond
	c := startCP(t, t.TempDir(), "")
	a, b := startEchoBackend(t), startEchoBackend(t)
	listen := freeAddr(t)
	snap := func(endpoints string) string {
		return fmt.Sprintf(`
clusters:
  - name: db
    drain_timeout: %v
    endpoints:
%slisteners:
  - { name: db, address: %s, protocol: TCP, default_cluster: db }
`, drain, endpoints, listen)
	}
	epA := fmt.Sprintf("      - { name: a, address: %s }\n", a.addr)
	epB := fmt.Sprintf("      - { name: b, address: %s }\n", b.addr)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, snap(epA+epB)))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var beats atomic.Int32
	conns := make([]net.Conn, sessions)
	for i := range conns {
		conn, err := net.DialTimeout("tcp", listen, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = conn
	}
	waitFor(t, "every session to reach an endpoint", func() bool { return a.open.Load()+b.open.Load() == sessions })
	onA := a.open.Load()
	if onA < sessions/3 || onA > sessions*2/3 {
		t.Fatalf("%d of %d sessions on a; want about half", onA, sessions)
	}
	closedOnA := make(chan struct{}, sessions)
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			r := bufio.NewReader(conn)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				conn.SetDeadline(time.Now().Add(testTimeout))
				if _, err := conn.Write([]byte("beat\n")); err == nil {
					if line, err := r.ReadString('\n'); err == nil && line == "beat\n" {
						beats.Add(1)
						continue
					}
				}
				closedOnA <- struct{}{}
				return
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // everyone is beating

	start := time.Now()
	waitVersion(t, dp, c.apply(t, snap(epB)))
	waitFor(t, "every socket to a to close", func() bool { return a.open.Load() == 0 })
	took := time.Since(start)
	t.Logf("%d sessions to the removed endpoint: last socket closed %v after the apply (drain_timeout %v)", onA, took, drain)
	if took < drain {
		t.Errorf("sockets to a closed after %v, before drain_timeout %v", took, drain)
	}
	if took > drain+2*time.Second {
		t.Errorf("sockets to a closed only after %v; drain_timeout is %v", took, drain)
	}
	time.Sleep(200 * time.Millisecond) // b's sessions keep beating meanwhile
	close(stop)
	wg.Wait()
	closed := len(closedOnA)
	if closed != int(onA) {
		t.Errorf("%d sessions ended, want exactly the %d that were on a", closed, onA)
	}
	if beats.Load() == 0 {
		t.Errorf("no heartbeat went through")
	}
}

// TestRemovedEndpointPoolClosed: pooled HTTP connections to an endpoint
// that a snapshot removes are closed at once, though clients keep their
// keep-alive connections to the node.
func TestRemovedEndpointPoolClosed(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "b")
	var open atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go a.Serve(ln)
	t.Cleanup(func() { a.Close() })
	listen := freeAddr(t)
	snap := func(endpoints string) string {
		return fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
%slisteners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: web }
`, endpoints, listen)
	}
	epA := fmt.Sprintf("      - { name: a, address: %s }\n", ln.Addr())
	epB := fmt.Sprintf("      - { name: b, address: %s }\n", b.addr)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, snap(epA+epB)))

	// 50 keep-alive clients in parallel fill the node's pool to a.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: testTimeout}
			defer client.CloseIdleConnections()
			for range 10 {
				if _, err := get(client, "http://"+listen+"/"); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of 500 requests failed", failed.Load())
	}
	if open.Load() == 0 {
		t.Fatal("no pooled connection to a")
	}
	pooled := open.Load()
	start := time.Now()
	waitVersion(t, dp, c.apply(t, snap(epB)))
	waitFor(t, "the pool to a to close", func() bool { return open.Load() == 0 })
	t.Logf("%d pooled connections to a closed %v after the apply", pooled, time.Since(start))
	got := count(t, "http://"+listen+"/", 10, nil)
	if got["b"] != 10 {
		t.Errorf("after removing a: %v, want all from b", got)
	}
}

// TestOnDownShutdownSessions: when checks mark an endpoint down, its
// sessions are closed after drain_timeout with on_down: SHUTDOWN_SESSIONS,
// and left alone without it. The endpoint stops accepting (so checks fail)
// but keeps serving the sessions it has.
func TestOnDownShutdownSessions(t *testing.T) {
	for _, shutdown := range []bool{true, false} {
		t.Run(fmt.Sprintf("shutdown=%v", shutdown), func(t *testing.T) {
			c := startCP(t, t.TempDir(), "")
			a := startEchoBackend(t)
			listen := freeAddr(t)
			onDown := ""
			if shutdown {
				onDown = "on_down: SHUTDOWN_SESSIONS"
			}
			dp := startNode(t, c.addr, "node-1")
			waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: db
    health_check: { interval: 100ms, fall: 1, rise: 1 }
    drain_timeout: 200ms
    %s
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: db, address: %s, protocol: TCP, default_cluster: db }
`, onDown, a.addr, listen)))
			var conns []net.Conn
			for range 20 {
				conn, err := net.DialTimeout("tcp", listen, testTimeout)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				// An echo proves the session reached a. Counting a's
				// connections would not: a health check's connection
				// counts too, and a session still in a's accept queue
				// is reset when a stops listening.
				if !echoes(conn) {
					t.Fatalf("session %d did not reach a", len(conns))
				}
				conns = append(conns, conn)
			}
			a.ln.Close() // checks now fail; the sessions stay up on a's side
			waitFor(t, "a to be marked down", func() bool { return dp.Node.Endpoints()[0].Health == "DOWN" })
			if shutdown {
				waitFor(t, "a's sessions to be closed", func() bool { return a.open.Load() == 0 })
				return
			}
			time.Sleep(500 * time.Millisecond) // past drain_timeout
			for i, conn := range conns {
				conn.SetDeadline(time.Now().Add(testTimeout))
				if _, err := conn.Write([]byte("ping\n")); err != nil {
					t.Fatalf("session %d: %v", i, err)
				}
				if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "ping\n" {
					t.Fatalf("session %d after a went down: %q, %v; want it to live on", i, line, err)
				}
			}
		})
	}
}
