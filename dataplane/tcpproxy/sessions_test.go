package tcpproxy

import (
	"bufio"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/poll"
)

// lineEcho answers each line with the same line.
func lineEcho(c net.Conn) {
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
}

// exchange sends line and reads its echo.
func exchange(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	if got, err := r.ReadString('\n'); err != nil || got != line {
		t.Fatalf("read %q, %v; want %q", got, err, line)
	}
}

// client is one test client connection and its reader.
type client struct {
	net.Conn
	r *bufio.Reader
}

func dialClient(t *testing.T, addr string) client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return client{c, bufio.NewReader(c)}
}

// waitUntil polls cond until it holds or testTimeout passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, testTimeout, 5*time.Millisecond, what, cond)
}

// TestSessionsByEndpoint: a server counts its live sessions per endpoint,
// and forgets a retired endpoint with its last session.
func TestSessionsByEndpoint(t *testing.T) {
	a := upstream.New("c", "a", startBackend(t, lineEcho))
	b := upstream.New("c", "b", startBackend(t, lineEcho))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{a, b}}}, onClose)
	addr := startProxy(t, s)
	var cs []client
	for range 3 { // a, b, a
		c := dialClient(t, addr)
		exchange(t, c, c.r, "hello\n")
		cs = append(cs, c)
	}
	if na, nb := s.Sessions(a), s.Sessions(b); na != 2 || nb != 1 {
		t.Fatalf("sessions a %d b %d, want 2 1", na, nb)
	}
	a.Drain() // retired: its list goes with its last session
	cs[0].Close()
	cs[2].Close()
	waitInfo(t, infos)
	waitInfo(t, infos)
	if n := s.Sessions(a); n != 0 {
		t.Errorf("sessions a %d after both ended, want 0", n)
	}
	if s.sessions.list(a) != nil {
		t.Errorf("the retired endpoint's list is still registered")
	}
	if s.sessions.list(b) == nil || s.Sessions(b) != 1 {
		t.Errorf("b's session is gone from the registry")
	}
}

// BenchmarkRegistry is the accept path's cost of the registry: a session
// registered and unregistered, by many goroutines at once, with 100k
// sessions already live, on one endpoint (every session contends on one
// list) or spread over 16.
func BenchmarkRegistry(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			var r registry
			eps := make([]*upstream.Endpoint, n)
			for i := range eps {
				eps[i] = upstream.New("c", fmt.Sprint(i), "127.0.0.1:1")
			}
			for i := range 100000 {
				r.add(eps[i%n], &session{})
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ep := eps[int(next.Add(1))%n]
				for pb.Next() {
					ss := &session{}
					l := r.add(ep, ss)
					r.remove(ep, l, ss)
				}
			})
		})
	}
}

// BenchmarkSettleAll is one settle scan (settleAll) with 100k live
// sessions on 16 endpoints, each having moved bytes both ways since the
// last scan (moved) or none: the node's work every meter.SettleEvery.
func BenchmarkSettleAll(b *testing.B) {
	for _, moved := range []bool{false, true} {
		b.Run(fmt.Sprintf("moved=%v", moved), func(b *testing.B) {
			s := NewServer(&Config{Meter: meter.NewListener("l", nil)}, nil)
			s.MarkClosing() // no scan of its own meanwhile
			eps := make([]*upstream.Endpoint, 16)
			for i := range eps {
				eps[i] = upstream.New("c", fmt.Sprint(i), "127.0.0.1:1")
				eps[i].SetMeter(meter.NewCluster("c"))
			}
			all := make([]*session, 100000)
			for i := range all {
				ss := &session{srv: s, ep: eps[i%len(eps)], cfg: s.cfg.Load()}
				ss.up.s, ss.down.s, ss.down.toClient = ss, ss, true
				s.sessions.add(ss.ep, ss)
				all[i] = ss
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if moved {
					b.StopTimer()
					for _, ss := range all {
						ss.up.sent(100)
						ss.down.sent(1000)
					}
					b.StartTimer()
				}
				s.settleAll()
			}
		})
	}
}
