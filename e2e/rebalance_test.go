package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// killableEcho is an echo backend on a fixed loopback port that can be
// killed (its listener and every connection closed, as a crashed server)
// and started again on the same port. open counts the connections open to
// it.
type killableEcho struct {
	addr string
	open atomic.Int32

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startKillableEcho(t *testing.T) *killableEcho {
	t.Helper()
	b := &killableEcho{conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(func() { b.kill(); b.wg.Wait() })
	return b
}

// restart listens on the backend's port again. The port was the backend's
// a moment ago (its closed connections keep it from being handed out), so
// a failure is retried briefly rather than taken for a bug.
func (b *killableEcho) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(10 * time.Millisecond) {
		if ln, err = net.Listen("tcp", b.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("restarting the backend on %s: %v", b.addr, err)
	}
	b.serve(ln)
}

func (b *killableEcho) serve(ln net.Listener) {
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			if b.ln != ln { // killed meanwhile
				b.mu.Unlock()
				c.Close()
				return
			}
			b.conns[c] = true
			b.open.Add(1)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					if b.conns[c] {
						delete(b.conns, c)
						b.open.Add(-1)
					}
					b.mu.Unlock()
					c.Close()
				}()
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
}

// kill closes the listener and every connection at once.
func (b *killableEcho) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	for c := range b.conns {
		c.Close()
		delete(b.conns, c)
		b.open.Add(-1)
	}
}

// heartbeatClient is a long-lived client: it sends a numbered heartbeat
// every period and waits for its echo; when the node closes its connection
// it reconnects and sends again the heartbeat that was not answered.
type heartbeatClient struct {
	id int

	mu       sync.Mutex
	acked    int       // heartbeats echoed: numbers 0..acked-1
	lastEcho time.Time // when the last echo came
	closes   int       // connections that ended under the client
	// cut counts the connections that ended with a heartbeat sent and not
	// answered; resent counts those heartbeats, sent again.
	cut, resent int
	// lost counts heartbeats that got no echo on a connection that stayed
	// open (a read timed out); garbled, echoes that were not the heartbeat.
	lost, garbled int
	// pending is true while heartbeat number acked is sent and not
	// answered.
	pending bool
}

func (hc *heartbeatClient) lastBeat() time.Time {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.lastEcho
}

// run beats until stop is closed.
func (hc *heartbeatClient) run(addr string, period time.Duration, stop chan struct{}) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	wait := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	// Start at a random point of the period, so that clients do not beat
	// in step.
	if !wait(rand.N(period)) {
		return
	}
	for {
		conn, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			if !wait(20 * time.Millisecond) {
				return
			}
			continue
		}
		r := bufio.NewReader(conn)
		for {
			hc.mu.Lock()
			pending := hc.pending
			hc.mu.Unlock()
			if !pending {
				select {
				case <-stop:
					conn.Close()
					return
				case <-tick.C:
				}
				// Closed while idle? Then this is not a cut exchange:
				// reconnect before sending. (A deadline already past
				// would fail the read without looking at the socket.)
				conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				_, err := r.Peek(1)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
			}
			hc.mu.Lock()
			seq := hc.acked
			if hc.pending {
				hc.resent++
			}
			hc.pending = true
			hc.mu.Unlock()
			msg := fmt.Sprintf("c%d %d\n", hc.id, seq)
			conn.SetDeadline(time.Now().Add(testTimeout))
			if _, err := conn.Write([]byte(msg)); err != nil {
				hc.count(&hc.cut)
				break
			}
			line, err := r.ReadString('\n')
			if errors.Is(err, os.ErrDeadlineExceeded) {
				hc.count(&hc.lost)
				break
			}
			if err != nil {
				hc.count(&hc.cut)
				break
			}
			if line != msg {
				hc.count(&hc.garbled)
				break
			}
			hc.mu.Lock()
			hc.pending = false
			hc.acked++
			hc.lastEcho = time.Now()
			hc.mu.Unlock()
		}
		conn.Close()
		hc.count(&hc.closes)
		if !wait(0) {
			return
		}
	}
}

func (hc *heartbeatClient) count(n *int) {
	hc.mu.Lock()
	*n++
	hc.mu.Unlock()
}

// rebalanceScenario is DESIGN problem 3 on loopback: long-lived heartbeat
// clients through a TCP listener with rebalance to five echo backends.
type rebalanceScenario struct {
	t        *testing.T
	c        *cp
	listen   string
	backends []*killableEcho
	clients  []*heartbeatClient
	stop     chan struct{}
	wg       sync.WaitGroup
}

const (
	rebalanceClients = 200
	heartbeatEvery   = 200 * time.Millisecond
	// rebalanceWindow is how long the spread may take to come back within
	// the tolerance after the backends return: generous, for two busy
	// cores and the race detector; it takes about two rounds (seconds).
	rebalanceWindow = 15 * time.Second
)

func startRebalanceScenario(t *testing.T, clients int) *rebalanceScenario {
	s := &rebalanceScenario{t: t, c: startCP(t, t.TempDir(), ""), listen: freeAddr(t), stop: make(chan struct{})}
	eps := ""
	for i := range 5 {
		b := startKillableEcho(t)
		s.backends = append(s.backends, b)
		eps += fmt.Sprintf("      - { name: b%d, address: %s }\n", i, b.addr)
	}
	dp := startNode(t, s.c.addr, "node-1")
	waitVersion(t, dp, s.c.apply(t, fmt.Sprintf(`
clusters:
  - name: echo
    lb_policy: LEAST_CONN
    health_check: { interval: 200ms, rise: 1, fall: 1 }
    endpoints:
%slisteners:
  - name: echo
    address: %s
    protocol: TCP
    default_cluster: echo
    tcp:
      rebalance: { tolerance_percent: 20, max_closes_per_second: 100, min_idle: 50ms }
`, eps, s.listen)))
	waitFor(t, "every endpoint to be checked up", func() bool {
		for _, e := range dp.Node.Endpoints() {
			if e.Health != "UP" {
				return false
			}
		}
		return true
	})
	for i := range clients {
		hc := &heartbeatClient{id: i}
		s.clients = append(s.clients, hc)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); hc.run(s.listen, heartbeatEvery, s.stop) }()
	}
	t.Cleanup(s.stopClients)
	waitFor(t, "every client to beat", func() bool { return s.total() == clients && s.allBeatSince(time.Time{}) })
	return s
}

func (s *rebalanceScenario) stopClients() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// counts are the connections open at each backend.
func (s *rebalanceScenario) counts() []int {
	out := make([]int, len(s.backends))
	for i, b := range s.backends {
		out[i] = int(b.open.Load())
	}
	return out
}

func (s *rebalanceScenario) total() int {
	n := 0
	for _, c := range s.counts() {
		n += c
	}
	return n
}

// allBeatSince reports whether every client had a heartbeat echoed after t.
func (s *rebalanceScenario) allBeatSince(t time.Time) bool {
	for _, hc := range s.clients {
		if !hc.lastBeat().After(t) {
			return false
		}
	}
	return true
}

// closes is the number of connection ends the clients saw, and cut how
// many of them came with a heartbeat unanswered.
func (s *rebalanceScenario) closes() (closes, cut int) {
	for _, hc := range s.clients {
		hc.mu.Lock()
		closes += hc.closes
		cut += hc.cut
		hc.mu.Unlock()
	}
	return closes, cut
}

// failover kills every backend but the last and waits until all the
// clients beat through the survivor.
func (s *rebalanceScenario) failover() {
	t := s.t
	for _, b := range s.backends[:len(s.backends)-1] {
		b.kill()
	}
	killed := time.Now()
	survivor := s.backends[len(s.backends)-1]
	waitFor(t, "every client to move to the survivor", func() bool {
		return int(survivor.open.Load()) == len(s.clients) && s.allBeatSince(killed)
	})
}

// recover restarts the killed backends and returns how long it took until
// every backend held its share ±20% (the tolerance), or fails the test
// after rebalanceWindow.
func (s *rebalanceScenario) recover() time.Duration {
	t := s.t
	for _, b := range s.backends[:len(s.backends)-1] {
		b.restart(t)
	}
	start := time.Now()
	for !s.balanced() {
		if time.Since(start) > rebalanceWindow {
			t.Fatalf("sessions per backend %v %v after the backends came back; want each within %d..%d", s.counts(), rebalanceWindow, s.low(), s.high())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// low and high bound a backend's sessions: its share ±20%.
func (s *rebalanceScenario) low() int  { return len(s.clients) / len(s.backends) * 80 / 100 }
func (s *rebalanceScenario) high() int { return len(s.clients) / len(s.backends) * 120 / 100 }

// balanced reports whether every client is connected and every backend
// holds its share ±20%.
func (s *rebalanceScenario) balanced() bool {
	counts := s.counts()
	total := 0
	for _, n := range counts {
		if n < s.low() || n > s.high() {
			return false
		}
		total += n
	}
	return total == len(s.clients)
}

// stillBalanced is balanced, looked at a few times over 100ms: a backend
// also counts the node's health check connections while they are open
// (one every 200ms per backend), so a single look may find one too many.
// A spread that is really off stays off for all of them.
func (s *rebalanceScenario) stillBalanced() bool {
	for range 10 {
		if s.balanced() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// rebalancedRecords counts the node's connection records that say
// REBALANCED.
func (s *rebalanceScenario) rebalancedRecords() int {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := s.c.api.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: "node-1", Limit: 100000})
	if err != nil {
		s.t.Fatalf("list conns: %v", err)
	}
	n := 0
	for _, r := range resp.GetRecords() {
		if r.GetCloseReason() == sluicev1.CloseReason_CLOSE_REASON_REBALANCED {
			n++
		}
	}
	return n
}

// TestRebalance is DESIGN problem 3: 200 long-lived clients beat every
// 200ms through a TCP listener to 5 echo backends. Four backends die and
// every client moves to the fifth; when the four come back, the listener
// closes idle sessions on the survivor until each backend holds its share
// ±20%, within the window. No heartbeat is lost: every heartbeat sent on a
// connection that stayed open is echoed, and one sent on a connection
// that closed is sent again and echoed.
func TestRebalance(t *testing.T) {
	s := startRebalanceScenario(t, rebalanceClients)
	t.Logf("%d clients beating; sessions per backend %v", len(s.clients), s.counts())

	s.failover()
	t.Logf("4 backends killed: sessions per backend %v", s.counts())
	if n := s.rebalancedRecords(); n != 0 {
		t.Errorf("%d sessions closed to rebalance before the backends came back, want 0", n)
	}

	closesBefore, cutBefore := s.closes()
	took := s.recover()
	closes, cut := s.closes()
	moved := closes - closesBefore
	t.Logf("backends back: balanced %v after the restart: sessions per backend %v; %d sessions closed to rebalance, %d of them as a heartbeat was sent", took.Round(time.Millisecond), s.counts(), moved, cut-cutBefore)
	if moved < len(s.clients)-s.high() {
		t.Errorf("the clients saw %d closes after the restart; the survivor had to lose at least %d", moved, len(s.clients)-s.high())
	}

	// Rebalancing stops once within the tolerance: a round later, the
	// spread is still within it and nothing more was closed.
	time.Sleep(2 * time.Second)
	if !s.stillBalanced() {
		t.Errorf("sessions per backend %v two seconds after balance; want each within %d..%d", s.counts(), s.low(), s.high())
	}
	if n, _ := s.closes(); n != closes {
		t.Errorf("%d more sessions closed once balanced, want 0", n-closes)
	}
	// Every close after the restart was the listener's rebalance: the
	// node recorded each as REBALANCED.
	var records int
	waitFor(t, "the node's records of the rebalance closes", func() bool {
		records = s.rebalancedRecords()
		return records >= moved
	})
	if records != moved {
		t.Errorf("%d sessions recorded as REBALANCED; the clients saw %d closes", records, moved)
	}

	s.stopClients()
	var acked, cutAll, resent, lost, garbled, unanswered int
	for _, hc := range s.clients {
		hc.mu.Lock()
		acked += hc.acked
		cutAll += hc.cut
		resent += hc.resent
		lost += hc.lost
		garbled += hc.garbled
		if hc.pending {
			unanswered++
		}
		hc.mu.Unlock()
	}
	t.Logf("%d heartbeats echoed; %d connections in all ended with a heartbeat unanswered (most as the backends died), each heartbeat sent again (%d resends)", acked, cutAll, resent)
	if lost != 0 || garbled != 0 {
		t.Errorf("%d heartbeats got no echo on a connection that stayed open, %d echoes were wrong; want 0 and 0", lost, garbled)
	}
	if resent != cutAll || unanswered != 0 {
		t.Errorf("%d heartbeats were cut off, %d sent again, %d clients stopped with one unanswered; want every one sent again and answered", cutAll, resent, unanswered)
	}
}

// TestMeasureRebalance measures the time from the backends' recovery to a
// balanced spread over measureRuns rounds of failover and recovery, and
// prints the percentiles; it runs under make measure (see measure_test.go).
func TestMeasureRebalance(t *testing.T) {
	measuring(t)
	rounds := measureRuns()
	s := startRebalanceScenario(t, rebalanceClients)
	var took []time.Duration
	for i := range rounds {
		s.failover()
		closes, _ := s.closes()
		d := s.recover()
		took = append(took, d)
		after, _ := s.closes()
		t.Logf("round %d: balanced %v after the restart, %d sessions moved (at %s, to read beside the node's log)", i+1, d.Round(time.Millisecond), after-closes, time.Now().Format("15:04:05.000"))
	}
	t.Logf("recovery to balanced spread, %d clients, %d runs: p50 %v p99 %v (min %v, max %v)",
		len(s.clients), rounds, pct(took, 50), pct(took, 99), slices.Min(took), slices.Max(took))
}
