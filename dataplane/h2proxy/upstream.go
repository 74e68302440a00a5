package h2proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// Protocol is how the node speaks to an endpoint: whether its cluster has
// http2, and the cluster's client TLS configuration (nil: plain). It is
// the one hook through which the node tells the engine about clusters.
type Protocol struct {
	HTTP2 bool
	TLS   *tls.Config
}

// Upstream holds the client connections of the HTTP/2 engine to endpoints,
// for every listener of a node: per endpoint and protocol, a pool of
// net/http client connections, each dialed through the endpoint (so that
// its connection counts, drains and shutdowns see them). HTTP/2
// connections carry many streams at once; HTTP/1.1 ones one request at a
// time.
type Upstream struct {
	protocol func(*upstream.Endpoint) Protocol
	// One transport per kind, only to make client connections
	// (NewClientConn); they pool nothing themselves.
	h1, h1tls, h2c, h2tls *http.Transport

	mu       sync.Mutex
	pools    map[poolKey]*pool
	stop     chan struct{}
	stopOnce sync.Once
}

type poolKey struct {
	ep  *upstream.Endpoint
	pro Protocol
	// rcvbuf is the endpoint's receive buffer setting: a change starts a
	// new pool, and the janitor closes the old one's connections as they
	// fall idle.
	rcvbuf int
	// client and local are set for an endpoint that takes PROXY headers
	// (send_proxy): its connections carry one client's header and serve
	// that client connection alone, as HAProxy makes them private.
	client, local netip.AddrPort
}

// maxResponseHead bounds an endpoint's response head, as the HTTP/1.1
// engine's does.
const maxResponseHead = 64 << 10

// maxIdlePerEndpoint is the idle connections to one endpoint kept however
// little they are used, as upstream.MaxIdle is for the HTTP/1.1 engine:
// past it, the janitor closes those that sat unused for upstream.IdleTrim.
const maxIdlePerEndpoint = upstream.MaxIdle

// NewUpstream returns the pools, with protocol telling how to speak to an
// endpoint (nil: HTTP/1.1, plain). Close stops its janitor.
func NewUpstream(protocol func(*upstream.Endpoint) Protocol) *Upstream {
	if protocol == nil {
		protocol = func(*upstream.Endpoint) Protocol { return Protocol{} }
	}
	u := &Upstream{protocol: protocol, pools: map[poolKey]*pool{}, stop: make(chan struct{})}
	mk := func(h1, h2, unencrypted2 bool) *http.Transport {
		var p http.Protocols
		p.SetHTTP1(h1)
		p.SetHTTP2(h2)
		p.SetUnencryptedHTTP2(unencrypted2)
		return &http.Transport{
			Protocols:          &p,
			DialContext:        dial,
			DialTLSContext:     dialTLS,
			DisableCompression: true, // a proxy passes encodings through
			ForceAttemptHTTP2:  h2,
			// As the HTTP/1.1 engine bounds a response's head (a 502).
			MaxResponseHeaderBytes: maxResponseHead,

			// With a client's Expect: 100-continue, the body waits this long
			// for the endpoint's 100, as curl waits for one.
			ExpectContinueTimeout: time.Second,
		}
	}
	u.h1, u.h1tls = mk(true, false, false), mk(true, false, false)
	u.h2c, u.h2tls = mk(false, false, true), mk(false, true, false)
	go u.janitor()
	return u
}

// Close closes every pooled connection and stops the janitor.
func (u *Upstream) Close() {
	u.stopOnce.Do(func() { close(u.stop) })
	u.mu.Lock()
	pools := u.pools
	u.pools = map[poolKey]*pool{}
	u.mu.Unlock()
	for _, p := range pools {
		_, closing := p.closeIdle(true)
		closeAll(closing)
	}
}

// janitorEvery is how often idle connections are looked at.
const janitorEvery = 10 * time.Second

// janitor closes connections idle for upstream.MaxIdleAge, and past
// maxIdlePerEndpoint those idle for upstream.IdleTrim, the idle ones of
// endpoints that drain and of pools that new requests no longer use (the
// cluster's protocol or receive buffer changed), and forgets empty pools.
func (u *Upstream) janitor() {
	t := time.NewTicker(janitorEvery)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		}
		var closing []*pooled
		u.mu.Lock()
		for k, p := range u.pools {
			left, cs := p.closeIdle(k.ep.Draining() || u.stale(k))
			closing = append(closing, cs...)
			if left == 0 {
				delete(u.pools, k)
			}
		}
		u.mu.Unlock()
		closeAll(closing) // past a burst, hundreds: no lock waits on them
	}
}

func (u *Upstream) pool(ep *upstream.Endpoint, client, local netip.AddrPort) *pool {
	k := poolKey{ep: ep, pro: u.protocol(ep), rcvbuf: ep.ReceiveBuffer()}
	if ep.SendProxy() != 0 {
		k.client, k.local = client, local
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.pools[k]
	if p == nil {
		p = &pool{ep: ep, pro: k.pro, client: k.client, local: k.local}
		switch {
		case k.pro.HTTP2 && k.pro.TLS != nil:
			p.t, p.scheme = u.h2tls, "https"
		case k.pro.HTTP2:
			p.t, p.scheme = u.h2c, "http"
		case k.pro.TLS != nil:
			p.t, p.scheme = u.h1tls, "https"
		default:
			p.t, p.scheme = u.h1, "http"
		}
		u.pools[k] = p
	}
	return p
}

// forget closes the private connections (see poolKey) that served the
// client connection from client to local, which has ended.
func (u *Upstream) forget(client, local netip.AddrPort) {
	u.mu.Lock()
	var gone []*pool
	for k, p := range u.pools {
		if k.client.IsValid() && k.client == client && k.local == local {
			gone = append(gone, p)
			delete(u.pools, k)
		}
	}
	u.mu.Unlock()
	for _, p := range gone {
		_, closing := p.closeIdle(true)
		closeAll(closing)
	}
}

// roundTrip sends req to ep on a pooled connection or a new one. A
// request that may be sent again (replay) and failed on a pooled
// connection before any response is sent once more on a new one (the
// endpoint may have closed it while idle). The trip says what happened
// when it failed. listener is the context of the listener the request
// came in on (httpproxy.Server.Context), for the dials it makes.
func (u *Upstream) roundTrip(req *http.Request, listener context.Context, ep *upstream.Endpoint, client, local netip.AddrPort, connectTimeout time.Duration, replay bool) (*http.Response, trip, error) {
	p := u.pool(ep, client, local)
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(req.Context(), listener, connectTimeout)
		if err != nil {
			return nil, trip{connect: true}, err
		}
		resp, err := pc.cc.RoundTrip(req)
		if err == nil {
			resp.Body = &doneBody{ReadCloser: resp.Body, p: p, pc: pc}
			var t trip
			if !reused {
				t.dialed = pc.dialed
			}
			return resp, t, nil
		}
		shut := ep.WasShutDown(pc.raw)
		p.done(pc)
		if reused && replay && attempt == 0 && !shut && req.Context().Err() == nil {
			continue
		}
		if shut {
			err = errShutdown
		}
		return nil, trip{shut: shut}, err
	}
}

// errShutdown: an operator closed the endpoint's connections.
var errShutdown = errors.New("h2proxy: the endpoint's connections were shut down")

// trip is how a failed round trip failed, and how long the connection
// it went on took to set up when it was a new one (dialed: 0 for a
// pooled one).
type trip struct {
	connect, shut bool
	dialed        time.Duration
}

func (t trip) connectFailed() bool { return t.connect }
func (t trip) shutDown() bool      { return t.shut }

// connectError is a failure to connect (or to handshake TLS) with an
// endpoint: nothing of the request reached it.
type connectError struct{ err error }

func (e *connectError) Error() string { return "h2proxy: connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func isConnectError(err error) bool {
	var ce *connectError
	return errors.As(err, &ce)
}

// pool is the client connections to one endpoint with one protocol.
type pool struct {
	ep     *upstream.Endpoint
	pro    Protocol
	client netip.AddrPort // see poolKey; the zero value: shared
	local  netip.AddrPort
	t      *http.Transport
	scheme string

	mu    sync.Mutex
	conns []*pooled
	// free are the connections that had room for a request when last
	// looked at (their state hook, freed), the most recently freed last:
	// get takes from them without asking every connection, which cost a
	// lock of each per request, with hundreds of them (BENCHMARKS.md,
	// "HTTP/2 clients"). Those closed since are skipped there.
	free []*pooled
}

// pooled is a client connection and the socket under it.
type pooled struct {
	cc     *http.ClientConn
	raw    net.Conn      // from ep.Dial, for WasShutDown
	dialed time.Duration // what its dial took (dialing.took)
	idle   time.Time
	// inFree: pc is in its pool's free list; gone: it left the pool's
	// connections. Both under the pool's mu.
	inFree, gone bool
}

// get reserves a request on a connection that has room, or dials one
// (for the listener whose context listener is: a connect that fails
// because that listener closed is not the endpoint's error).
func (p *pool) get(ctx, listener context.Context, timeout time.Duration) (*pooled, bool, error) {
	// Reserve runs the connection's state hook when its state changed
	// unseen: the pool's lock is not held around it.
	for !p.ep.Draining() {
		p.mu.Lock()
		n := len(p.free)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		pc := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		pc.inFree = false
		gone := pc.gone
		p.mu.Unlock()
		if gone || pc.cc.Err() != nil || pc.cc.Reserve() != nil {
			continue
		}
		p.mu.Lock()
		gone = pc.gone
		p.mu.Unlock()
		if gone {
			// closeIdle took it for idle between the pop and the
			// reservation, and closes it.
			pc.cc.Release()
			continue
		}
		if p.pro.HTTP2 {
			p.freed(pc) // it may have room for more streams
		}
		return pc, true, nil
	}
	d := &dialing{ep: p.ep, timeout: timeout, tls: p.pro.TLS, http2: p.pro.HTTP2}
	if p.client.IsValid() {
		d.hdr = p.ep.AppendProxyHeader(nil, p.client, p.local)
	}
	ctx = upstream.WithListener(context.WithValue(ctx, dialKey{}, d), listener)
	cc, err := p.t.NewClientConn(ctx, p.scheme, p.ep.Addr)
	if err != nil {
		if errors.Is(err, upstream.ErrClosed) {
			return nil, false, err
		}
		return nil, false, &connectError{err}
	}
	if err := cc.Reserve(); err != nil {
		cc.Close()
		return nil, false, &connectError{err}
	}
	pc := &pooled{cc: cc, raw: d.raw, dialed: d.took}
	p.mu.Lock()
	p.conns = append(p.conns, pc)
	p.mu.Unlock()
	cc.SetStateHook(func(*http.ClientConn) { p.freed(pc) })
	p.freed(pc)
	return pc, false, nil
}

// freed puts pc in the free list when it has room for a request, and
// notes when it fell idle, for the janitor's trimming: the least recently
// used go first. It is pc's state hook, which net/http runs when a
// request on pc ends, or its room grows: never with the pool's lock held
// (under it, only done closes a connection, whose hook then finds it
// closed).
func (p *pool) freed(pc *pooled) {
	if pc.cc.Err() != nil || pc.cc.Available() == 0 {
		return
	}
	idle := pc.cc.InFlight() == 0
	p.mu.Lock()
	if idle {
		pc.idle = time.Now()
	}
	if !pc.inFree && !pc.gone {
		pc.inFree = true
		p.free = append(p.free, pc)
	}
	p.mu.Unlock()
}

// done is called when a request on pc ended: a dead connection is
// forgotten, and an idle one closed when its endpoint drains. Idle ones
// past maxIdlePerEndpoint are left for the janitor, as a burst that
// brought them back is likely to need them again (upstream.MaxIdle).
// When pc fell idle is freed's to note.
func (p *pool) done(pc *pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc.cc.Err() != nil || p.ep.Draining() && pc.cc.InFlight() == 0 {
		pc.cc.Close()
		pc.gone = true
		p.conns = slices.DeleteFunc(p.conns, func(x *pooled) bool { return x == pc })
	}
}

// stale reports whether new requests to k's endpoint now go to another
// pool.
func (u *Upstream) stale(k poolKey) bool {
	return k.rcvbuf != k.ep.ReceiveBuffer() || k.pro != u.protocol(k.ep)
}

// closeIdle takes from the pool the dead connections, the idle ones that
// sat unused for upstream.MaxIdleAge, past maxIdlePerEndpoint the idle
// ones that sat unused for upstream.IdleTrim (the longest unused first),
// and with all, every idle one. It returns how many connections are left,
// and those taken, for the caller to close once it holds no lock.
func (p *pool) closeIdle(all bool) (left int, closing []*pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var idle []*pooled
	p.conns = slices.DeleteFunc(p.conns, func(pc *pooled) bool {
		free := pc.cc.InFlight() == 0
		if free && pc.idle.IsZero() {
			pc.idle = now // first seen idle (an HTTP/1.1 one frees itself late)
		}
		if pc.cc.Err() != nil || free && (all || now.Sub(pc.idle) > upstream.MaxIdleAge) {
			pc.gone = true
			closing = append(closing, pc)
			return true
		}
		if !free {
			pc.idle = time.Time{}
		} else {
			idle = append(idle, pc)
		}
		return false
	})
	if len(idle) > maxIdlePerEndpoint {
		slices.SortFunc(idle, func(a, b *pooled) int { return a.idle.Compare(b.idle) })
		trim := map[*pooled]bool{}
		for _, pc := range idle[:len(idle)-maxIdlePerEndpoint] {
			if now.Sub(pc.idle) > upstream.IdleTrim {
				pc.gone = true
				closing = append(closing, pc)
				trim[pc] = true
			}
		}
		p.conns = slices.DeleteFunc(p.conns, func(pc *pooled) bool { return trim[pc] })
	}
	p.free = slices.DeleteFunc(p.free, func(pc *pooled) bool {
		pc.inFree = !pc.gone
		return pc.gone
	})
	return len(p.conns), closing
}

func closeAll(cs []*pooled) {
	for _, pc := range cs {
		pc.cc.Close()
	}
}

// doneBody hands its connection back when the response body is closed.
type doneBody struct {
	io.ReadCloser
	p    *pool
	pc   *pooled
	once sync.Once
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.p.done(b.pc) })
	return err
}

// dialing is what a transport's dial needs to know, passed in the
// context of NewClientConn.
type dialing struct {
	ep      *upstream.Endpoint
	timeout time.Duration
	tls     *tls.Config
	http2   bool
	hdr     []byte // a PROXY header to start with, or nil
	raw     net.Conn
	// took is what the dial took, as the HTTP/1.1 engine measures its
	// connects: TCP connect, PROXY header, TLS handshake.
	took time.Duration
}

type dialKey struct{}

// dial connects through the endpoint, which tracks the connection; the
// returned conn forgets it when closed.
func dial(ctx context.Context, _, _ string) (net.Conn, error) {
	d := ctx.Value(dialKey{}).(*dialing)
	start := time.Now()
	// The handshake, if any, is dialTLS's: it offers h2 or http/1.1 in
	// ALPN, which the endpoint's own configuration does not.
	c, err := d.ep.DialPlain(ctx, d.timeout, d.hdr)
	if err != nil {
		return nil, err
	}
	d.raw, d.took = c, time.Since(start)
	return &tracked{Conn: c, ep: d.ep}, nil
}

// errNoH2 is the health check's words for the same fault.
var errNoH2 = errors.New("TLS: the endpoint did not choose h2 in ALPN")

// dialTLS is dial and a TLS handshake, offering h2 in ALPN to HTTP/2
// endpoints, which must choose it.
func dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	start := time.Now()
	c, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d := ctx.Value(dialKey{}).(*dialing)
	cfg := d.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if d.http2 {
		cfg.NextProtos = []string{"h2"}
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		err = &upstream.HandshakeError{Err: err}
		d.ep.HandshakeFailed(ctx, err)
		return nil, err
	}
	if d.http2 && tc.ConnectionState().NegotiatedProtocol != "h2" {
		// net/http would speak HTTP/1.1 on it instead: to an endpoint
		// its cluster says speaks HTTP/2, which its health check, asking
		// for h2 the same way, marks down.
		c.Close()
		d.ep.HandshakeFailed(ctx, errNoH2)
		return nil, errNoH2
	}
	d.took = time.Since(start)
	return tc, nil
}

// tracked is a connection from Endpoint.Dial: Close makes the endpoint
// forget it.
type tracked struct {
	net.Conn
	ep   *upstream.Endpoint
	once sync.Once
}

func (c *tracked) Close() error {
	c.once.Do(func() { c.ep.Close(c.Conn) })
	return nil
}
