package tcpproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// session is one proxied client connection from the moment its endpoint
// answered: its two sockets, its two directions (halves) and what its
// record needs when it ends.
//
// A session has no goroutine of its own. Each half runs on a goroutine
// while it has bytes to move or waits for them; a half that waited long
// enough parks (see park), and its goroutine ends. Whichever half ends
// last finishes the session (finish): that is where the record is made,
// the sockets closed and done called.
type session struct {
	srv     *Server
	cfg     *Config
	client  *net.TCPConn
	backend net.Conn     // as dialed: a *net.TCPConn, or a *tls.Conn over one
	raw     *net.TCPConn // the socket under backend
	// clientRC and rawRC reach the file descriptors of client and raw.
	clientRC, rawRC syscall.RawConn
	ep              *upstream.Endpoint
	list            *sessionList // of the registry, for Sessions, CloseIdle and MarkClosing
	done            func()       // told once, when the session has ended

	info    conntrack.ConnInfo
	from    netip.AddrPort // the client, as a PROXY header may have named it
	connect time.Duration  // how long the endpoint took to answer
	logged  bool           // the access log samples the session
	rule    string         // the rule that decided the session (meter.Exchange.Rule)

	up   half // client to endpoint
	down half // endpoint to client

	live  atomic.Int32 // halves that have not ended
	ended atomic.Int32 // byClient or byServer: whose EOF came first
	// aborted is set once the session's sockets are being closed, so that
	// no half parks again (see park).
	aborted atomic.Bool
	// unsettled is set while the session is on its server's list of
	// those whose bytes moved since the last settle (sent).
	unsettled atomic.Bool
	// bytes counts what reached the endpoint (Up) and the client (Down),
	// each written by the goroutine that runs its half (sent).
	bytes meter.Flows
	// lastMoved is movedUp or movedDown, whichever way bytes last went
	// (0: none yet): a session whose client spoke last waits for an
	// answer, and is not idle however long it waits.
	lastMoved atomic.Int32
	// closedFor is the reason of the one closeFor that ended the session
	// (a rebalance, the idle timeout), or of the reset of a client or an
	// endpoint that did (see end), for its record; 0: none did.
	closedFor atomic.Int32

	// The session's place in its endpoint's list, oldest first; guarded by
	// that list's mu.
	prev, next *session
}

// Who sent the first EOF of a session (session.ended).
const byClient, byServer = 1, 2

// half is one direction of a session: the bytes of src go to dst. It is
// run by one goroutine at a time; a parked half has none, and the poller
// (or whoever takes it from there) starts the next.
type half struct {
	s         *session
	toClient  bool // the half is down, endpoint to client
	halfState      // what the platform's copy keeps between runs

	err error // why the half ended, nil for src's EOF
}

// Which way a session's bytes last went (session.lastMoved).
const movedUp, movedDown = 1, 2

// sent counts n more bytes that reached dst.
func (h *half) sent(n int64) {
	way := int32(movedUp)
	if h.toClient {
		h.s.bytes.Down.Add(n)
		way = movedDown
	} else {
		h.s.bytes.Up.Add(n)
	}
	if h.s.lastMoved.Load() != way { // a store only when the turn changes
		h.s.lastMoved.Store(way)
	}
	h.s.moved()
}

// moved puts the session, whose bytes moved, on its server's list of
// those to settle, unless it is there already.
func (s *session) moved() {
	if !s.unsettled.Load() && s.unsettled.CompareAndSwap(false, true) {
		s.srv.settle.add(s)
	}
}

// src and dst are the sockets the half reads and writes (for TLS, the
// one under the connection); srcRC and dstRC reach their descriptors.
func (h *half) src() *net.TCPConn {
	if h.toClient {
		return h.s.raw
	}
	return h.s.client
}

func (h *half) dst() *net.TCPConn {
	if h.toClient {
		return h.s.client
	}
	return h.s.raw
}

func (h *half) srcRC() syscall.RawConn {
	if h.toClient {
		return h.s.rawRC
	}
	return h.s.clientRC
}

func (h *half) dstRC() syscall.RawConn {
	if h.toClient {
		return h.s.clientRC
	}
	return h.s.rawRC
}

// tlsSrc and tlsDst report whether the half reads (down) or writes (up)
// the endpoint's TLS connection (session.backend), whose bytes must go
// through it rather than the socket.
func (h *half) tlsSrc() bool { return h.toClient && h.s.backend != net.Conn(h.s.raw) }
func (h *half) tlsDst() bool { return !h.toClient && h.s.backend != net.Conn(h.s.raw) }

// start runs the session's two halves; they start parked where they can
// (see park), else each on a new goroutine.
func (s *session) start() {
	s.up = half{s: s}
	s.down = half{s: s, toClient: true}
	s.up.init()
	s.down.init()
	s.live.Store(2)
	s.up.begin()
	s.down.begin()
}

// recoverPanic ends a half whose copy panicked as failed (see panicked).
func (h *half) recoverPanic() {
	if p := recover(); p != nil {
		h.panicked(p)
	}
}

// panicked ends a half whose copy panicked with p as failed, so that the
// session still ends whole (sockets closed, record made, done called),
// and logs the panic: a bug in one session must not take the node down.
func (h *half) panicked(p any) {
	slog.Default().Error("tcpproxy: panic in a session; closing it", "listener", h.s.info.Listener, "client", h.s.from.String(), "panic", p, "stack", string(debug.Stack()))
	h.end(fmt.Errorf("tcpproxy: panic: %v", p))
}

// end ends the half: src's EOF (err nil) becomes a half-close of dst,
// anything else closes the session. The last half to end finishes it, and
// the close there sends dst's FIN: a half-close first would only cost a
// system call more. (Two halves that end at once may both half-close.)
func (h *half) end(err error) {
	s := h.s
	h.release()
	h.unwatch()
	if err == nil {
		last := s.live.Load() == 1
		if h.toClient {
			s.ended.CompareAndSwap(0, byServer)
			if !last {
				s.client.CloseWrite()
			}
		} else {
			s.ended.CompareAndSwap(0, byClient)
			if !last {
				closeWrite(s.backend)
			}
		}
	} else {
		h.err = err
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			// A reset ends a session as a FIN would, by the side that
			// sent it: the one whose socket it closed. (abort closes
			// both next, so this is asked first.)
			switch {
			case peerReset(s.clientRC):
				s.closedFor.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED))
			case peerReset(s.rawRC):
				s.closedFor.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED))
			}
		}
		s.abort()
	}
	if s.live.Add(-1) == 0 {
		s.finish()
	}
}

// abort closes both sockets of the session, which ends both halves: one
// that runs meets the closed socket, one that is parked is woken to meet
// it.
func (s *session) abort() {
	s.aborted.Store(true)
	s.client.Close()
	s.raw.Close()
	for _, h := range []*half{&s.up, &s.down} {
		if unpark(h) {
			go h.run()
		}
	}
}

// closeFor ends the session for reason: a rebalance chose it, or it was
// idle for its timeout. It reports false when the session was already
// chosen.
func (s *session) closeFor(reason sluicev1.CloseReason) bool {
	if !s.closedFor.CompareAndSwap(0, int32(reason)) {
		return false
	}
	// Both sockets at once: the client sees a FIN (nothing is unread, the
	// session was idle), the endpoint too, and both halves end.
	s.abort()
	return true
}

// finish records the ended session and lets go of everything it held.
func (s *session) finish() {
	info, ep := &s.info, s.ep
	info.BytesIn, info.BytesOut = s.bytes.Up.Total(), s.bytes.Down.Total()
	s.settle()

	failed := s.up.err != nil || s.down.err != nil
	by := upstream.NotClosedHere
	if failed { // a socket closed under the copy fails it
		by = ep.ClosedBy(s.backend)
	}
	switch {
	case s.closedFor.Load() != 0:
		info.Reason = sluicev1.CloseReason(s.closedFor.Load())
	case by == upstream.ClosedByShutdown:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN
	case by == upstream.ClosedOnDown:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN
	case failed && ep.Draining():
		// A drain closes its sessions under the copy, once drain_timeout
		// passed; one that ended by itself meanwhile ended as any other.
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_DRAINED
	case failed:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
	case s.ended.Load() == byServer:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
	default:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	}
	s.srv.sessions.remove(ep, s.list, s)
	ep.Close(s.backend)
	ep.Release()
	s.srv.ended(s.cfg, s.client, info, s.exchange())
	s.done()
}

// settle counts in the meters (the endpoint's, so its cluster's, and the
// listener's) the bytes the session moved since it was last settled, so
// that a long session's bytes show as they go rather than at its end.
func (s *session) settle() { s.bytes.Settle(s.ep, s.cfg.Meter) }

// exchange is what the access log and the meters learn of the session
// beyond its record.
func (s *session) exchange() meter.Exchange {
	return meter.Exchange{Client: s.from, Cluster: s.ep.Meter(), Connect: s.connect, Logged: s.logged, Rule: s.rule}
}
