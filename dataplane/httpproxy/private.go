package httpproxy

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// Private endpoint connections. An endpoint that takes PROXY headers
// (send_proxy) learns the client's address from the header at the start
// of each connection, so a connection that carried client A's header must
// never carry client B's request. Such a connection is private to the
// client connection that dialed it, as HAProxy makes it: it never enters
// the endpoint's shared pool; between requests it is parked on the client
// connection (one at most: a request to another endpoint closes it), taken
// again by the client's next request to that endpoint, and closed when
// the client connection ends. It stays tracked by its endpoint, so
// draining, removing or shutting down the endpoint closes it like any
// other.

// park keeps bc, a reusable private connection to ep, for the client's
// next request, unless ep is draining (as PutIdle would not pool it).
func (cc *clientConn) park(ep *upstream.Endpoint, bc net.Conn, raw syscall.RawConn) {
	cc.closePrivate()
	if ep.Draining() {
		ep.Close(bc)
		return
	}
	cc.private, cc.privateRaw, cc.privateEp = bc, raw, ep
	cc.privateAt = monoTime(time.Now())
}

// unpark returns the parked private connection if it is to ep, and takes
// it out of the parking; one to another endpoint is closed. now is the
// time of the request: the connection's idle time is returned with it.
func (cc *clientConn) unpark(ep *upstream.Endpoint, now time.Time) (net.Conn, syscall.RawConn, time.Duration) {
	bc, raw := cc.private, cc.privateRaw
	if bc == nil {
		return nil, nil, 0
	}
	if cc.privateEp != ep {
		cc.closePrivate()
		return nil, nil, 0
	}
	cc.private, cc.privateRaw, cc.privateEp = nil, nil, nil
	return bc, raw, monoTime(now) - cc.privateAt
}

// monoTime is t on the monotonic clock, as a duration since the package
// was initialised.
func monoTime(t time.Time) time.Duration { return t.Sub(monoBase) }

var monoBase = time.Now()

// closePrivate closes the parked private connection, if any.
func (cc *clientConn) closePrivate() {
	if cc.private != nil {
		cc.privateEp.Close(cc.private)
		cc.private, cc.privateRaw, cc.privateEp = nil, nil, nil
	}
}

// local is the listener address the client connected to, which PROXY
// headers sent to endpoints carry as the destination.
func (cc *clientConn) local() netip.AddrPort {
	_, local := proxyproto.Addrs(cc.c)
	return local
}
