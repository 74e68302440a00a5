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

// proxied is what a client connection keeps for the PROXY protocol,
// allocated only when there is something to keep, so that other client
// connections do not carry it: the destination its own PROXY header
// named, and the private endpoint connection parked between its requests.
type proxied struct {
	// dest is the address the client connected to, as the PROXY header
	// the listener took named it (zero: the socket's local address);
	// headers sent on to endpoints name it, as HAProxy's do.
	dest netip.AddrPort
	// conn is a private endpoint connection, parked between the client's
	// requests; raw is its RawConn (see exchange.epRaw), ep its endpoint,
	// and at when it was parked, as a monoTime (see probeIdleAfter);
	// probe: it is checked before its next request (upstream.Pooled.Probe).
	conn  net.Conn
	raw   syscall.RawConn
	ep    *upstream.Endpoint
	at    time.Duration
	probe bool
}

// park keeps bc, a reusable private connection to ep, for the client's
// next request, unless ep is draining (as PutIdle would not pool it).
// probe says it is to be checked before that request.
func (cc *clientConn) park(ep *upstream.Endpoint, bc net.Conn, raw syscall.RawConn, probe bool) {
	cc.closePrivate()
	if ep.Draining() {
		ep.Close(bc)
		return
	}
	if cc.proxied == nil {
		cc.proxied = new(proxied)
	}
	pr := cc.proxied
	pr.conn, pr.raw, pr.ep, pr.probe = bc, raw, ep, probe
	pr.at = monoTime(time.Now())
}

// unpark returns the parked private connection if it is to ep, and takes
// it out of the parking; one to another endpoint is closed. now is the
// time of the request: the connection's idle time is returned with it,
// and whether it is to be checked whatever that time (see park).
func (cc *clientConn) unpark(ep *upstream.Endpoint, now time.Time) (net.Conn, syscall.RawConn, time.Duration, bool) {
	pr := cc.proxied
	if pr == nil || pr.conn == nil {
		return nil, nil, 0, false
	}
	if pr.ep != ep {
		cc.closePrivate()
		return nil, nil, 0, false
	}
	bc, raw, probe := pr.conn, pr.raw, pr.probe
	pr.conn, pr.raw, pr.ep, pr.probe = nil, nil, nil, false
	return bc, raw, monoTime(now) - pr.at, probe
}

// monoTime is t on the monotonic clock, as a duration since the package
// was initialised.
func monoTime(t time.Time) time.Duration { return t.Sub(monoBase) }

var monoBase = time.Now()

// closePrivate closes the parked private connection, if any.
func (cc *clientConn) closePrivate() {
	if pr := cc.proxied; pr != nil && pr.conn != nil {
		pr.ep.Close(pr.conn)
		pr.conn, pr.raw, pr.ep = nil, nil, nil
	}
}

// local is the address the client connected to, which PROXY headers sent
// to endpoints carry as the destination: the one the client's own PROXY
// header named, or else the listener's address.
func (cc *clientConn) local() netip.AddrPort {
	if cc.proxied != nil && cc.proxied.dest.IsValid() {
		return cc.proxied.dest
	}
	_, local := proxyproto.Addrs(cc.c)
	return local
}
