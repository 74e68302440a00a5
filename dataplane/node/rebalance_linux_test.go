package node

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// lineEcho serves a loopback port that echoes lines; it stops with the
// test.
func lineEcho(t *testing.T) string {
	t.Helper()
	return lineEchoOn(t, "127.0.0.1:0")
}

// lineEchoOn is lineEcho on a given address.
func lineEchoOn(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRebalanceRound drives rounds by hand: an endpoint that comes back
// gets no session moved to it while it refuses connections, nor after,
// until it shows it takes them; then the over-full endpoint loses its
// oldest idle sessions, down to what the tolerance and the rate allow.
func TestRebalanceRound(t *testing.T) {
	n := newNode(t)
	a, b, c := lineEcho(t), lineEcho(t), freeAddr(t) // c refuses connections
	listen := freeAddr(t)
	apply := func(wb, wc int) {
		t.Helper()
		if err := n.Apply("v", parse(t, `
clusters:
  - name: db
    lb_policy: LEAST_CONN
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s, weight: %d }
      - { name: c, address: %s, weight: %d }
listeners: [{ name: db, address: %s, protocol: TCP, default_cluster: db }]
`, a, b, wb, c, wc, listen)); err != nil {
			t.Fatal(err)
		}
	}
	apply(0, 0)
	var onA []echoSession
	for range 6 {
		onA = append(onA, openEchoSession(t, listen))
	}
	l := n.listeners[listen]
	g := l.gen.Load()
	// A rebalancer of our own, driven by hand; the listener has none.
	r := newRebalancer(l, newRebalanceConfig("db", &sluicev1.Rebalance{MinIdle: durationpb.New(10 * time.Millisecond)}, n.clusters["db"]))
	now := time.Now()
	r.round(now) // a alone takes work: nothing to do
	for i, s := range onA {
		if !s.alive() {
			t.Fatalf("session %d closed while a is the only endpoint", i)
		}
	}

	// b comes back and takes the new sessions (LEAST_CONN); then c comes
	// back but refuses connections, before its checks could say so.
	setCluster := func() {
		cfg := *r.cfg.Load()
		cfg.cluster = n.clusters["db"]
		r.cfg.Store(&cfg)
	}
	apply(1, 0)
	setCluster()
	for range 3 {
		openEchoSession(t, listen)
	}
	apply(1, 1)
	setCluster()
	epC := n.clusters["db"].members[2].Endpoint
	if _, err := epC.DialSession(context.Background(), time.Second); err == nil {
		t.Fatal("connected to c")
	}
	sessions := func() [2]int {
		return [2]int{g.tcp.Sessions(n.clusters["db"].members[0].Endpoint), g.tcp.Sessions(n.clusters["db"].members[1].Endpoint)}
	}
	if got := sessions(); got != [2]int{6, 3} {
		t.Fatalf("sessions on a, b = %v, want [6 3]", got)
	}
	time.Sleep(50 * time.Millisecond) // every session idle for min_idle

	// c refused a connection since the last round: it does not count.
	// Over a and b, a's share is 4.5: it holds more than 4.5 × 1.2 and
	// gives up its oldest session (to 5; never below the share).
	now = now.Add(time.Second)
	r.round(now)
	if !onA[0].closed() {
		t.Fatal("a's oldest session is still open")
	}
	for i, s := range onA[1:] {
		if !s.alive() {
			t.Fatalf("session %d of a closed too; want only the oldest (c must not count while it refuses)", i+1)
		}
	}
	// c refused no connection since, but it has not shown it takes
	// them: it still does not count. With a tolerance of 30%, a's 5 are
	// within its share over a and b (4 × 1.3); were c counted, the share
	// would be 8/3 and a would lose sessions.
	time.Sleep(50 * time.Millisecond)
	cfg := *r.cfg.Load()
	cfg.ratePerSec, cfg.tolerancePercent = 1, 30
	r.cfg.Store(&cfg)
	now = now.Add(time.Second)
	r.round(now)
	for i, s := range onA[1:] {
		if !s.alive() {
			t.Fatalf("session %d of a closed while c, which refused, holds no session", i+1)
		}
	}

	// c is back and a new session lands on it (LEAST_CONN): it counts
	// again. The shares are 9/3, a must give up 2 (to 3), but the rate
	// allows 1 a second.
	lineEchoOn(t, c)
	openEchoSession(t, listen)
	if got := g.tcp.Sessions(epC); got != 1 {
		t.Fatalf("sessions on c = %d, want the new one", got)
	}
	time.Sleep(50 * time.Millisecond)
	now = now.Add(time.Second)
	r.round(now)
	if !onA[1].closed() {
		t.Fatal("a's oldest remaining session is still open")
	}
	for i, s := range onA[2:] {
		if !s.alive() {
			t.Fatalf("session %d of a closed too; want one close at 1/s", i+2)
		}
	}
}
