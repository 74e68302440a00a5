package httpproxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file holds Upgrade tunnels (WebSocket and any other protocol but
// h2c): a request with "Connection: upgrade" and an Upgrade field goes to
// the endpoint with both; when the endpoint answers 101 Switching
// Protocols, the proxy relays the 101 and from then on copies bytes both
// ways, as the TCP proxy does, until both directions ended (each ends
// with a half-close of its destination) or the tunnel carried no byte
// either way for Config.TunnelIdleTimeout. The endpoint connection is never
// pooled again and the client connection ends with the tunnel. Any other
// answer is an ordinary response, after which the connection goes on in
// HTTP/1.1.
//
// A tunnel is one request of its connection's record (ConnInfo), whose
// bytes count what the tunnel carried. The meters (the endpoint's, its
// cluster's, the listener's) count them as they move, within
// meter.SettleEvery, not only when the tunnel ends.
//
// Server.Drain leaves tunnels open, as it does TCP sessions (there is no
// way to end them gracefully); closing the client connection (listener
// removed, node closed at the end of its drain) ends them.

// tunnelState is what the two directions of a tunnel share.
type tunnelState struct {
	client net.Conn
	bc     net.Conn
	ep     *upstream.Endpoint
	idle   time.Duration
	last   atomic.Int64 // UnixNano of the last byte carried either way
	ended  atomic.Bool  // stop was called: the directions give up
	// reason is the close reason of whatever ended the tunnel first.
	reason atomic.Int32

	m     *meter.Listener // the listener's, nil: none
	bytes meter.Flows     // carried from the client (Up) and to it
	// settler runs settle; settling is set while it is due.
	settler  *time.Timer
	settling atomic.Bool
}

// tunnel relays the endpoint's 101 and then runs the tunnel on bc. It
// returns false: the client connection ends with the tunnel.
func (cc *clientConn) tunnel(ep *upstream.Endpoint, bc net.Conn) bool {
	cc.mayReadClient()
	x := cc.x
	resp := &x.resp
	for i := 0; i < resp.nf; i++ {
		if resp.fields[i].kind == fieldUpgrade {
			resp.fields[i].drop = false // the protocol switched to
		}
	}
	x.finalHead(true, outTunnel)
	t := &tunnelState{client: cc.c, bc: bc, ep: ep, idle: x.cfg.TunnelIdleTimeout, m: x.cfg.Meter}
	t.last.Store(time.Now().UnixNano())

	// What came behind the heads already belongs to the tunnel.
	if e := cc.flush(); e != nil {
		cc.endpointDone(bc, false)
		return false
	}
	if x.be > x.bs { // in epIn already, as read (readEndpoint)
		if err := cc.write(x.bb[x.bs:x.be]); err != nil {
			cc.reason = clientReason(err)
			cc.endpointDone(bc, false)
			return false
		}
	}
	bc.SetDeadline(time.Time{})
	if n := x.re - x.rs; n > 0 {
		bc.SetWriteDeadline(time.Now().Add(t.idle))
		w, err := bc.Write(x.rb[x.rs:x.re])
		x.epOut += uint64(w)
		if err != nil {
			cc.reason = t.endpointReason(err)
			cc.endpointDone(bc, false)
			return false
		}
	}
	x.bs, x.be, x.rs, x.re = 0, 0, 0, 0

	// The client connection's deadlines are the tunnel's from here on.
	cc.rdl = time.Time{}
	up, down := t.relay(x.rb, x.bb)

	// The relay counted them in the meters as they moved.
	cc.info.BytesIn += up
	cc.info.BytesOut += down
	x.mx.CountedIn += up
	x.mx.CountedOut += down
	cc.reason = sluicev1.CloseReason(t.reason.Load())
	cc.endpointDone(bc, false)
	return false
}

// relay copies both ways until both directions ended, with upBuf and
// downBuf as their buffers, and returns the bytes carried from the client
// (up) and to it (down), which it counted in the meters.
func (t *tunnelState) relay(upBuf, downBuf []byte) (up, down uint64) {
	t.settler = time.AfterFunc(meter.SettleEvery, t.settle)
	t.settler.Stop()
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		t.copy(t.bc, t.client, upBuf, &t.bytes.Up, false)
	}()
	t.copy(t.client, t.bc, downBuf, &t.bytes.Down, true)
	<-upDone
	t.settler.Stop()
	t.settle() // after a run of settler's that had begun (Flows.Settle)
	return t.bytes.Up.Total(), t.bytes.Down.Total()
}

// settleSoon has the bytes carried counted in the meters within
// meter.SettleEvery, unless that is due already.
func (t *tunnelState) settleSoon() {
	if t.settling.CompareAndSwap(false, true) {
		t.settler.Reset(meter.SettleEvery)
	}
}

// settle counts what the tunnel carried since the last settle in the
// endpoint's meters and the listener's.
func (t *tunnelState) settle() {
	t.settling.Store(false)
	t.bytes.Settle(t.ep, t.m)
}

// copy carries bytes from src to dst, counting them in f, until src ends
// (then dst is half-closed), an error, or the tunnel's end. fromEndpoint
// says which way it copies, for the close reason.
func (t *tunnelState) copy(dst, src net.Conn, buf []byte, f *meter.Flow, fromEndpoint bool) {
	for {
		src.SetReadDeadline(time.Unix(0, t.last.Load()).Add(t.idle))
		if t.ended.Load() {
			// stop ran before that deadline replaced the one it set in
			// the past, which would have ended the read below: the other
			// direction ended the tunnel while this one was between reads.
			return
		}
		m, err := src.Read(buf)
		if m > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			dst.SetWriteDeadline(now.Add(t.idle))
			w, werr := dst.Write(buf[:m])
			f.Add(int64(w))
			t.settleSoon()
			if werr != nil {
				t.stop(t.reasonFor(werr, !fromEndpoint))
				return
			}
			continue
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			// The sender is done: pass its half-close on, and let the
			// other direction run until its own end.
			if fromEndpoint {
				t.reason.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED))
			} else {
				t.reason.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED))
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return
			}
			t.stop(0)
			return
		case t.ended.Load():
			return
		case isTimeout(err):
			if time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction carried bytes meanwhile
			}
			t.stop(sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)
			return
		default:
			t.stop(t.reasonFor(err, fromEndpoint))
			return
		}
	}
}

// stop ends both directions at once, with reason unless one was set
// before (0: none).
func (t *tunnelState) stop(reason sluicev1.CloseReason) {
	if reason != 0 {
		t.reason.CompareAndSwap(0, int32(reason))
	}
	t.reason.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_IO_ERROR))
	t.ended.Store(true)
	t.client.SetDeadline(aLongTimeAgo)
	t.bc.SetDeadline(aLongTimeAgo)
}

// reasonFor maps an I/O error of the tunnel on the endpoint's side
// (endpoint true) or the client's.
func (t *tunnelState) reasonFor(err error, endpoint bool) sluicev1.CloseReason {
	if endpoint {
		return t.endpointReason(err)
	}
	return clientReason(err)
}

// endpointReason maps an I/O error on the endpoint connection: one an
// operator shut down, closed because its endpoint went down, or whose
// endpoint was removed did not fail by the endpoint's fault.
func (t *tunnelState) endpointReason(err error) sluicev1.CloseReason {
	switch t.ep.ClosedBy(t.bc) {
	case upstream.ClosedByShutdown:
		return sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN
	case upstream.ClosedOnDown:
		return sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN
	}
	// A reset is the endpoint's, drain or not: a drain closes the
	// connection here, which fails its use with net.ErrClosed.
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
	case t.ep.Draining():
		return sluicev1.CloseReason_CLOSE_REASON_DRAINED
	}
	return sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
}
