package httpproxy

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Parking: a keep-alive connection with nothing to do gives up its
// goroutine.
//
// A goroutine waiting on a socket costs its stack, 2 to 8 KiB, which is
// most of what an idle connection would otherwise cost; HAProxy keeps one
// in about a kilobyte. So a connection served with ServeConnAsync that has
// waited parkAfter for its next request, and still has a while to wait, is
// parked: its socket goes into an epoll set of this package's own (see
// park_linux.go), a timer stands for its deadline, and its goroutine ends.
// When bytes arrive (or the client hangs up), a new goroutine takes the
// connection up where it left off; when the deadline passes first, the
// timer closes it, exactly as the wait would have. Drain and Close end
// parked connections themselves. A busy client never parks: its next
// request comes within parkAfter.
//
// Exactly one of the wake-up, the timer, Drain and Close takes a parked
// connection: each swaps clientConn.state from the value park stored,
// which carries a number of its own (parkedState), so that a timer or a
// readiness event left over from an earlier parking takes nothing.

// parkAfter is how long a connection waits for its next request on its
// goroutine before it parks. A client that keeps its connection busy sends
// its next request well within it; a burst of new connections (5000 opened
// at once, each sending one request) has fewer goroutines alive at a time
// the shorter it is: node RSS per idle connection measured 2.2-2.4 KiB
// with 20 ms, 2.9-3.0 KiB with 100 ms (bench/scale, 5000 connections).
const parkAfter = 20 * time.Millisecond

// Outcomes of clientConn.parkIdle.
const (
	parkedOK     = iota // parked: the goroutine ends, the connection lives on
	parkNot             // not parked: keep waiting on the goroutine
	parkTaken           // parked and already taken by Drain or Close: the goroutine ends
	parkDraining        // not parked, the server drains: the connection ends
)

// ServeConnAsync is ServeConnFrom that does not keep the caller: it
// returns once the connection has ended, or once it is parked idle (see
// parkAfter), and done (if not nil) runs when the connection has ended and
// been closed and its ConnInfo reported, on whichever goroutine ended it.
// setUp (if not nil) is called once the connection is set up: its first
// request answered, or it was handed to HTTP/2 or parked. It is not called
// for a connection that ends before; Go counts one as set up when its f
// returns.
// Listeners with many idle keep-alive clients use it, so that an idle
// connection costs no goroutine; Close must then be called before the
// connections are closed from outside, so that parked ones end properly.
func (s *Server) ServeConnAsync(c net.Conn, client, dest netip.AddrPort, setUp, done func()) {
	s.serveConn(c, client, dest, true, setUp, done)
}

// Go runs f, which reads whatever comes before a new connection's requests
// (a PROXY header) and then serves it with ServeConnAsync, passing setUp
// on, on a new goroutine. The accept loop calls it, and it paces the loop
// while many connections are setting up (see package pace): a burst of
// new connections then waits in the kernel's accept queue rather than
// turning into as many goroutines and endpoint connections at once.
func (s *Server) Go(f func(setUp func())) { s.setups.Go(f) }

// Close ends the connections parked idle, with reason LISTENER_CLOSED,
// and keeps any connection from parking from now on. The others end when
// their socket is closed from outside (as the node does when it removes a
// listener, right after Close). A request that connects to its endpoint,
// or waits in its Director (Request.Context), ends at once, without an
// answer; one that waits for its endpoint's answer ends within
// closeCheckInterval, or when its endpoint connection fails (the node's
// Close shuts them), without an answer too. A request served from inside
// its connection's idle read (inline.go) holds that socket, and a Close of
// it from outside returns only once the request ended.
func (s *Server) Close() {
	s.closed.Store(true)
	s.cancel(upstream.ErrListenerClosed)
	s.endParked(sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED, false)
}

// Closed reports whether Close was called: the server's connections are
// being closed, and a request that fails now is not answered.
func (s *Server) Closed() bool { return s.closed.Load() }

// Context ends when Close is called, with upstream.ErrListenerClosed as
// its cause: the HTTP/2 engine gives it to its dials (upstream.WithListener).
func (s *Server) Context() context.Context { return s.ctx }

// endParked takes every parked connection and ends it with reason; but a
// drain's (drain) serves one whose next request already came.
func (s *Server) endParked(reason sluicev1.CloseReason, drain bool) {
	var taken []*clientConn
	s.mu.Lock()
	for cc := s.conns; cc != nil; cc = cc.next {
		if st := cc.state.Load(); isParked(st) && cc.state.CompareAndSwap(st, connWoken) {
			taken = append(taken, cc)
		}
	}
	s.mu.Unlock()
	for _, cc := range taken {
		idlePark.remove(cc)
		if drain && cc.requestWaiting() {
			// The next request came as Drain took the connection, before
			// the parker woke it: it is served, with Connection: close
			// (see idleRead), rather than reset by the close.
			cc.state.Store(connBusy)
			go cc.resume()
			continue
		}
		cc.reason = reason
		cc.finish()
	}
}

// parkable says whether the connection may park: it was served with
// ServeConnAsync, on a plain TCP socket this platform can park.
func (cc *clientConn) parkable() bool {
	return cc.async && cc.raw != nil && parkingWorks()
}

// parkIdle parks the idle connection until bytes arrive or dl passes; aged
// says that dl is the connection's MaxConnectionAge.
//
// Like enterIdle, it stores the state before it loads the server's flags,
// and Drain and Close set their flag before they look for parked
// connections: a connection parking while either runs is seen by it, or
// sees its flag.
func (cc *clientConn) parkIdle(dl time.Time, aged bool) int {
	s := cc.srv
	cc.setUpDone() // before another goroutine may take the connection
	if cc.x != nil {
		if cc.x.rs != cc.x.re {
			return parkNot // cannot happen: the wait ends with bytes
		}
		putExchange(cc.x)
		cc.x = nil
	}
	gen := parkGen.Add(1)
	st := parkedState(gen)
	cc.state.Store(st)
	if s.draining.Load() || s.closed.Load() {
		if !cc.state.CompareAndSwap(st, connBusy) {
			return parkTaken
		}
		if s.closed.Load() || cc.info.Requests == 0 || cc.requestWaiting() {
			// Closed: the socket is being closed, and the wait ends on its
			// own. A new connection during Drain: it gets its one request
			// served (see waitRequest), so it waits for it here. One whose
			// next request came as it was about to park: it serves it
			// (see idleRead).
			return parkNot
		}
		return parkDraining
	}
	switch err := idlePark.add(cc, gen, dl, aged); {
	case err == nil:
		return parkedOK
	case err == errParkTaken:
		return parkTaken
	case !cc.state.CompareAndSwap(st, connBusy):
		return parkTaken
	}
	return parkNot
}

// parkGen numbers parkings; parkedState(n) is the state of the n-th.
var parkGen atomic.Uint32

// The state of a parked connection is connParked in its low two bits and
// the parking's number above them.
func parkedState(gen uint32) int32 { return int32(gen<<2) | connParked }

func isParked(st int32) bool { return st&3 == connParked }

// parkExpired runs when the deadline of the parking st passed.
func (cc *clientConn) parkExpired(st int32, aged bool) {
	if !cc.state.CompareAndSwap(st, connBusy) {
		return
	}
	idlePark.remove(cc)
	cc.reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
	if aged {
		cc.reason = closeMaxAge
	}
	cc.finish()
}

// wake runs when the socket of the parking gen is readable (bytes of a
// request, or the client's FIN or reset): a new goroutine serves the
// connection.
func (cc *clientConn) wake(gen uint32) {
	if !cc.state.CompareAndSwap(parkedState(gen), connBusy) {
		return
	}
	idlePark.remove(cc)
	go cc.resume()
}

// resume serves a woken connection until it ends or parks again. A panic
// is a bug, but, as in a worker, it ends only this connection.
func (cc *clientConn) resume() {
	ended := true
	defer func() {
		if p := recover(); p != nil {
			cc.panicked(p)
		}
		if ended {
			cc.finish()
		}
	}()
	ended = cc.serve()
}
