// Package upstream holds the dataplane's view of one endpoint: its address,
// the connections open to it, its idle pool and its in-flight counter.
//
// An *Endpoint outlives snapshots: the runtime compiler reuses the same
// *Endpoint for a cluster/name/address that survives an apply, so counters
// (in-flight work for LEAST_CONN and max_conn) and pooled connections carry
// over, and removing an endpoint can find and close every connection to it.
//
// An endpoint whose host is a DNS name can keep its address resolved in the
// background (StartResolver, in resolve.go), so connecting does not wait on
// DNS and keeps working while DNS is down.
package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/clock"
)

// MaxIdleAge is how long a pooled connection may sit unused before it is
// closed: servers close idle keep-alive connections after a while (nginx
// after 75s, Apache after 5s), and a pool should not hoard dead sockets.
const MaxIdleAge = 60 * time.Second

type idleConn struct {
	c     net.Conn
	p     Pooled // as handed to PutIdle
	since time.Time
}

// Pooled is what a proxy pools with a connection (PutIdle) and gets back
// with it (GetIdleSince): what it would otherwise make or do again for
// each request on the connection.
type Pooled struct {
	// Raw is the connection's syscall.RawConn, nil if the proxy made
	// none: making one allocates.
	Raw syscall.RawConn
	// Deadline is the read and write deadline the proxy left set on
	// the connection; zero when it does not know it. Setting one costs
	// a timer update, which a proxy may save when the one set will do.
	// The pool sets no deadline on the connections it holds, so it
	// stays true while the connection is pooled.
	Deadline time.Time
	// Probe asks the proxy to check the connection holds no bytes
	// before the next request goes on it, however briefly it was
	// pooled: its last answer had no body by its request's method or its
	// status (HEAD, 204, 304), and an endpoint that sends one anyway
	// may send it late, where the next request would take it for its
	// answer.
	Probe bool
}

// ErrClosed is returned by Dial once the endpoint was shut down.
var ErrClosed = errors.New("upstream: endpoint shut down")

// ErrListenerClosed is the cause (context.Cause) with which a listener's
// server ends the contexts of its dials when it closes: the node gave those
// connects up, and a connect that fails so is not the endpoint's error.
var ErrListenerClosed = errors.New("upstream: the listener closed")

type listenerKey struct{}

// WithListener returns ctx carrying listener, the context of the listener
// a dial is made for, for a ctx that does not descend from it: an HTTP/2
// stream's, which its connection's close ends with a plain cancel. A
// connect that fails once listener ended with ErrListenerClosed is then
// given up by the node too, as one whose own ctx says so.
func WithListener(ctx, listener context.Context) context.Context {
	return context.WithValue(ctx, listenerKey{}, listener)
}

// listenerClosed reports whether the listener that ctx's dial is for has
// closed: by ctx's cause, or by the listener context WithListener put in
// ctx.
func listenerClosed(ctx context.Context) bool {
	if context.Cause(ctx) == ErrListenerClosed {
		return true
	}
	l, _ := ctx.Value(listenerKey{}).(context.Context)
	return l != nil && context.Cause(l) == ErrListenerClosed
}

// Endpoint is one backend server as seen by every listener of a node.
type Endpoint struct {
	Cluster string
	Name    string
	Addr    string

	key      string                   // Key, made once
	isIP     bool                     // host is an IP address: nothing to resolve
	host     string                   // of Addr; "" when Addr is not host:port
	port     uint16                   // of Addr
	resolved atomic.Pointer[target]   // what dial connects to; nil: Addr as is
	fixed    target                   // resolved, for an IP address: no allocation of its own
	res      atomic.Pointer[resolver] // running background resolution, if any

	created   time.Time // when the node first had the endpoint
	inflight  atomic.Int64
	counters  counters
	streaks   streaks
	outlier   atomic.Pointer[OutlierPolicy] // nil: no passive checks
	maxConn   atomic.Uint32                 // 0: no cap; see TryAcquire
	downIn    atomic.Uint64                 // see MarkDown; 0: not marked
	onRelease atomic.Pointer[func()]
	tls       atomic.Pointer[endpointTLS]         // nil: plain TCP; see SetTLS
	sendProxy atomic.Uint32                       // PROXY header version of new connections; 0: none
	rcvbuf    atomic.Uint32                       // SO_RCVBUF of new connections; 0: the kernel's
	keepAlive atomic.Pointer[net.KeepAliveConfig] // of new connections; nil: none
	retries   atomic.Int32                        // the cluster's retries + 1; 0: unset, see Retries

	// lastFailure is why the last connect failed; nil once one
	// succeeded (LastConnectError).
	lastFailure atomic.Pointer[error]

	mu sync.Mutex
	// conns holds every open connection; nil until the first: most
	// endpoints of a big snapshot are never dialed.
	conns map[net.Conn]connInfo
	idle  []idleConn // pooled HTTP connections, newest last
	// shut holds the busy connections ShutdownSessions or CloseConns
	// closed until their user calls Close, so that it can tell why they
	// ended (ClosedBy).
	shut   map[net.Conn]CloseCause
	closed bool // draining: no new connections, none pooled
	// retiring holds Retire's timers (CloseSessions, Shutdown) until they
	// fire or Revive stops them.
	retiring [2]*time.Timer
}

// connInfo is what an open connection was dialed as.
type connInfo struct {
	session bool   // a TCP session, not an HTTP connection
	rcvbuf  uint32 // its SO_RCVBUF; 0: the kernel's (see SetReceiveBuffer)
}

// New returns an endpoint with no connections. An endpoint whose host is an
// IP address is resolved from the start; one whose host is a DNS name is
// dialed by name until StartResolver runs.
func New(cluster, name, addr string) *Endpoint {
	e := &Endpoint{Cluster: cluster, Name: name, Addr: addr, key: KeyOf(cluster, name, addr), created: time.Now()}
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil {
		return e // dial reports the bad address
	}
	e.host, e.port = host, uint16(p)
	if ip, err := netip.ParseAddr(host); err == nil {
		e.isIP = true
		e.fixed = target{netip.AddrPortFrom(ip, e.port), addr}
		e.resolved.Store(&e.fixed)
	}
	return e
}

// Created is when the endpoint was made: when the node first had it at
// its address (a drain or a disable keeps it; a new address makes a new
// one). Its counters run from this time.
func (e *Endpoint) Created() time.Time { return e.created }

// Key identifies an endpoint across snapshots: KeyOf its cluster, name and
// address.
func (e *Endpoint) Key() string { return e.key }

// KeyOf is the Key of the endpoint cluster/name at addr.
func KeyOf(cluster, name, addr string) string { return cluster + "/" + name + "@" + addr }

// Failures lists the endpoints one request or session failed to connect
// to (or that an apply retired under it), so that a pick again goes
// around them (HAProxy's redispatch). The proxies keep one per unit of
// work and let their Directors read it.
type Failures []*Endpoint

// Has reports whether ep is in f, or an endpoint for the same server
// (cluster, name and address): an apply that removes an endpoint and a
// later one that adds it back make a new *Endpoint, which the work must
// pick around all the same, or applies that come faster than its connects
// could retire each one it picks.
func (f Failures) Has(ep *Endpoint) bool {
	for _, x := range f {
		if x == ep || x.key == ep.key {
			return true
		}
	}
	return false
}

// HasExactly reports whether ep itself is in f: a Director with nothing
// left but endpoints that Has reports may still pick one made anew.
func (f Failures) HasExactly(ep *Endpoint) bool {
	for _, x := range f {
		if x == ep {
			return true
		}
	}
	return false
}

// A DownMark says why the node picks around an endpoint before its
// cluster's picker is rebuilt (MarkDown).
type DownMark uint64

const (
	// MarkChecks: health checks marked the endpoint down.
	MarkChecks DownMark = 1 << iota
	// MarkEjected: outlier detection ejected it.
	MarkEjected

	markBits = 2 // the DownMarks below a picker's number in downIn
)

// MarkDown records that the endpoint went out for why while the picker
// numbered gen (not 0) was the running one: MarkedDown(gen) reports true
// until UnmarkDown undoes every why of gen, or a mark for another picker
// replaces them. The node picks around such an endpoint until its
// cluster's next picker, built with the endpoint out, takes over.
func (e *Endpoint) MarkDown(gen uint64, why DownMark) {
	for {
		old := e.downIn.Load()
		next := gen<<markBits | uint64(why)
		if old>>markBits == gen {
			next |= old
		}
		if e.downIn.CompareAndSwap(old, next) {
			return
		}
	}
}

// UnmarkDown undoes MarkDown(gen, why); other marks stay.
func (e *Endpoint) UnmarkDown(gen uint64, why DownMark) {
	for {
		old := e.downIn.Load()
		if old>>markBits != gen || old&uint64(why) == 0 {
			return
		}
		if e.downIn.CompareAndSwap(old, old&^uint64(why)) {
			return
		}
	}
}

// MarkedDown reports whether the endpoint is marked out for the picker
// numbered gen (MarkDown).
func (e *Endpoint) MarkedDown(gen uint64) bool {
	v := e.downIn.Load()
	return gen != 0 && v>>markBits == gen && v&(1<<markBits-1) != 0
}

// Inflight is the number of requests (HTTP) or sessions (TCP) now using the
// endpoint.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

// Acquire counts one request or session in; Release counts it out.
func (e *Endpoint) Acquire() {
	e.inflight.Add(1)
	e.counters.requests.Add(1)
}

// SetRetries sets how many other endpoints work that failed to connect to
// e tries, in all (its cluster's retries, from the snapshot applied last).
func (e *Endpoint) SetRetries(n int) { e.retries.Store(int32(max(n, 0)) + 1) }

// Retries is what SetRetries set, or def when it was never called: how
// many connect failures work whose last one was to e retries in all. The
// proxies hold one count per listener (def), whose rules may route to
// clusters of other counts; each cluster's own is the one that holds.
func (e *Endpoint) Retries(def int) int {
	if n := e.retries.Load(); n > 0 {
		return int(n - 1)
	}
	return def
}

// SetMaxConn sets the cap TryAcquire enforces (the endpoint's max_conn in
// the snapshot applied last); 0 removes it.
func (e *Endpoint) SetMaxConn(n uint32) { e.maxConn.Store(n) }

// TryAcquire counts one request or session in unless that would exceed the
// endpoint's max_conn. Pickers skip full endpoints, but two goroutines may
// pick the last free slot at once; this is where only one of them gets it.
func (e *Endpoint) TryAcquire() bool {
	max := int64(e.maxConn.Load())
	if max == 0 {
		e.Acquire()
		return true
	}
	for {
		n := e.inflight.Load()
		if n >= max {
			return false
		}
		if e.inflight.CompareAndSwap(n, n+1) {
			e.counters.requests.Add(1)
			return true
		}
	}
}

// Release undoes one Acquire, then calls the function set by OnRelease.
func (e *Endpoint) Release() {
	e.inflight.Add(-1)
	if f := e.onRelease.Load(); f != nil {
		(*f)()
	}
}

// SetKeepAlive sets the TCP keep-alive probes of new connections to the
// endpoint (the cluster's tcp_keepalive in the snapshot applied last);
// nil: none. cfg must not change after. Open connections keep theirs.
func (e *Endpoint) SetKeepAlive(cfg *net.KeepAliveConfig) { e.keepAlive.Store(cfg) }

// OnRelease makes Release call f (nil: nothing) after it counted work out;
// a cluster's queue uses it to hand the free slot to the work waiting
// longest. f runs on the releasing goroutine and must not block.
func (e *Endpoint) OnRelease(f func()) {
	if f == nil {
		e.onRelease.Store(nil)
		return
	}
	e.onRelease.Store(&f)
}

// Dial opens a new tracked connection for HTTP exchanges. The caller must
// close it with Close or hand it to PutIdle, so the endpoint forgets it.
//
// The connection is a *net.TCPConn, or a *tls.Conn whose handshake is done
// when the endpoint speaks TLS (SetTLS); TCPConn gives the socket of
// either. timeout bounds the connect and the handshake together, and a
// handshake that fails (a certificate that does not verify, say) is a
// failed connect like a refused one.
func (e *Endpoint) Dial(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	return e.dial(ctx, timeout, false, true, nil)
}

// DialPlain is DialWithHeader without the endpoint's TLS handshake, for a
// caller that does its own on the socket it returns (the HTTP/2 engine,
// which offers h2 in ALPN): it is tracked and closed like Dial's, and the
// caller should report a failed handshake with HandshakeFailed.
func (e *Endpoint) DialPlain(ctx context.Context, timeout time.Duration, hdr []byte) (*net.TCPConn, error) {
	c, err := e.dial(ctx, timeout, false, false, hdr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// HandshakeFailed counts a TLS handshake that failed on a connection from
// DialPlain, for err, as the failed connect it is (counters, outlier
// detection, LastConnectError), unless ctx ended first.
func (e *Endpoint) HandshakeFailed(ctx context.Context, err error) { e.connectFailed(ctx, err) }

// DialSession opens a new tracked connection for a TCP session, which
// CloseSessions ends when a drain times out. It is what Dial returns.
func (e *Endpoint) DialSession(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	return e.dial(ctx, timeout, true, true, nil)
}

// dial connects to the endpoint, writes hdr (a PROXY header) first of all,
// and then, with secure, does the TLS handshake of an endpoint that speaks
// TLS; secure false leaves it to the caller (DialPlain).
func (e *Endpoint) dial(ctx context.Context, timeout time.Duration, session, secure bool, hdr []byte) (net.Conn, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	rcvbuf := e.rcvbuf.Load()
	// KeepAlive -1: none unless SetKeepAlive asked (Go's default would
	// probe every 15s, and cost four system calls per connection).
	d := net.Dialer{Deadline: deadline, Control: rcvbufControl(rcvbuf), KeepAlive: -1}
	if ka := e.keepAlive.Load(); ka != nil {
		d.KeepAliveConfig = *ka
	}
	addr := e.Addr
	caller := ctx // whether the caller gave up is told by its own ctx
	if t := e.resolved.Load(); t != nil {
		addr = t.dial
	} else if r := e.res.Load(); r != nil {
		// A name not resolved yet: resolve it now, within the same timeout.
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		t, err := e.resolveNow(ctx, r)
		if err != nil {
			e.connectFailed(caller, err)
			return nil, err
		}
		addr = t.dial
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil && len(hdr) > 0 {
		err = writeHeader(c, hdr, timeout)
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		e.connectFailed(caller, err)
		return nil, err
	}
	tc := c.(*net.TCPConn)
	// The PROXY header went first; the TLS handshake is the last step of
	// connecting.
	if secure {
		if c, err = e.secure(ctx, tc, deadline); err != nil {
			e.connectFailed(caller, err)
			return nil, err
		}
	}
	e.connected(true)
	if e.lastFailure.Load() != nil { // read first: most connects find none
		e.lastFailure.Store(nil)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		closeHard(c)
		return nil, ErrClosed
	}
	if e.conns == nil {
		e.conns = make(map[net.Conn]connInfo)
	}
	e.conns[c] = connInfo{session: session, rcvbuf: rcvbuf}
	e.mu.Unlock()
	return c, nil
}

// connectFailed counts a failed connect, and against the endpoint's streak
// unless ctx ended: then the caller gave up, which says nothing of the
// endpoint either way. It is not counted at all when the caller's listener
// closed (listenerClosed): counted, such connects would read as the
// endpoint's errors to what follows the counters, a rollout's error budget
// or a TCP listener's rebalance, after an operator removed a listener. A
// connect an HTTP/2 stream gave up on for its own reasons (the client reset
// it or went, or response_timeout) still counts: an endpoint that never
// completes a connect would otherwise show no error at all under clients
// with short deadlines. err, why it failed, is kept for LastConnectError
// unless ctx ended (its error would be the caller's).
func (e *Endpoint) connectFailed(ctx context.Context, err error) {
	if listenerClosed(ctx) {
		return
	}
	e.counters.connectErrors.Add(1)
	if m := e.counters.cluster.Load(); m != nil {
		m.ConnectFailed()
	}
	if ctx.Err() == nil {
		e.connected(false)
		e.lastFailure.Store(&err)
	}
}

// LastConnectError is why the endpoint's last connect failed, when it did
// (nil when it succeeded, or none was tried): for operators, what an
// endpoint that no health check watches shows in place of a check's
// reason.
func (e *Endpoint) LastConnectError() error {
	if p := e.lastFailure.Load(); p != nil {
		return *p
	}
	return nil
}

// Close closes a connection obtained from Dial or DialSession and forgets
// it. It does not wait on an endpoint that stopped reading (CloseConn).
func (e *Endpoint) Close(c net.Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	if e.shut != nil {
		delete(e.shut, c)
	}
	e.mu.Unlock()
	CloseConn(c)
}

// GetIdleSince returns a pooled connection, or nil when the pool is empty,
// with what it was pooled with and when it was pooled (PutIdle; a time
// for intervals, see clock.Now). The newest connection is returned
// first: it is the least likely to have been closed by the server's
// keep-alive timeout. A proxy uses the time to check a connection that
// sat idle for a while before sending on it: the endpoint may have
// written to it since (a 408 before closing it, say), and a connection
// holding bytes nobody asked for must not carry a request. One reused
// right away is not worth the check.
func (e *Endpoint) GetIdleSince() (net.Conn, Pooled, time.Time) {
	e.mu.Lock()
	n := len(e.idle)
	if n == 0 {
		e.mu.Unlock()
		return nil, Pooled{}, time.Time{}
	}
	ic := e.idle[n-1]
	e.idle[n-1] = idleConn{}
	e.idle = e.idle[:n-1]
	var stale []net.Conn
	if n > MaxIdle {
		stale = e.trimIdle(clock.Now(), 0)
	}
	e.mu.Unlock()
	for _, s := range stale {
		s.Close()
	}
	return ic.c, ic.p, ic.since
}

// MaxIdle is the idle pool of one endpoint kept however little it is
// used (up to MaxIdleAge). Past it, a pooled connection that sat unused
// for IdleTrim is closed when another comes back or is taken, or when the
// node next trims its pools (TrimIdle), and the pool never holds more
// than MaxIdleBurst.
//
// The pool does not refuse connections past MaxIdle. Under a steady load
// of more exchanges at once than that, many come back at the same moment
// and are needed again the next; closing them there made the node dial a
// new connection for a good share of its requests: 1280 a second with
// 600 clients of one endpoint, where HAProxy, which keeps them, dialed
// none. Each leaves a socket in TIME_WAIT for a minute, and 77k of them
// are more than the local ports the kernel gives connects to one address
// (28k by default) (BENCHMARKS.md, "Idle pools past 256 connections").
const MaxIdle = 256

// IdleTrim is how long a pooled connection past MaxIdle may sit unused
// before it is closed. HAProxy's pool-purge-delay is 5s too.
const IdleTrim = 5 * time.Second

// MaxIdleBurst bounds the idle pool of one endpoint: a connection that
// comes back to a pool this full is closed.
const MaxIdleBurst = 4 * MaxIdle

// PutIdle returns a reusable connection to the pool. It closes the
// connection instead when the pool holds MaxIdleBurst, the endpoint is
// draining, the connection was closed under its user (CloseConns,
// ShutdownSessions) or it is plain and the endpoint now speaks TLS (or
// the reverse). It closes the pooled connections that sat unused for
// MaxIdleAge, and past MaxIdle those that sat unused for IdleTrim. p
// comes back with c from GetIdleSince.
func (e *Endpoint) PutIdle(c net.Conn, p Pooled) {
	now := clock.Now()
	e.mu.Lock()
	if info, open := e.conns[c]; !open || e.closed || len(e.idle) >= MaxIdleBurst || !e.fitsPool(c) || info.rcvbuf != e.rcvbuf.Load() {
		delete(e.conns, c)
		if e.shut != nil {
			delete(e.shut, c)
		}
		e.mu.Unlock()
		c.Close()
		return
	}
	stale := e.trimIdle(now, 1)
	e.idle = append(e.idle, idleConn{c, p, now})
	e.mu.Unlock()
	for _, s := range stale {
		s.Close()
	}
}

// TrimIdle closes the pooled connections that sat unused for MaxIdleAge,
// and past MaxIdle those that sat unused for IdleTrim, as PutIdle and
// GetIdleSince do. The node calls it now and then, so a pool that nothing
// uses any more is trimmed too.
func (e *Endpoint) TrimIdle() {
	e.mu.Lock()
	stale := e.trimIdle(clock.Now(), 0)
	e.mu.Unlock()
	for _, s := range stale {
		s.Close()
	}
}

// trimIdle takes from the idle pool the connections that sat unused for
// MaxIdleAge, and those that sat unused for IdleTrim while the pool would
// hold more than MaxIdle with room more joining it. It returns them for
// the caller to close once it let go of e.mu, which it holds. The oldest
// are first; GetIdleSince takes from the end.
func (e *Endpoint) trimIdle(now time.Time, room int) (stale []net.Conn) {
	k := 0
	for k < len(e.idle) {
		idle, n := now.Sub(e.idle[k].since), len(e.idle)-k
		if idle <= MaxIdleAge && (n+room <= MaxIdle || idle <= IdleTrim) {
			break
		}
		stale = append(stale, e.idle[k].c)
		delete(e.conns, e.idle[k].c)
		k++
	}
	if k > 0 {
		rest := copy(e.idle, e.idle[k:])
		clear(e.idle[rest:])
		e.idle = e.idle[:rest]
	}
	return stale
}

// Conns is the number of open connections to the endpoint, idle ones included.
func (e *Endpoint) Conns() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

// Drain refuses new connections and closes the idle ones. Busy HTTP
// connections are closed when their exchange ends instead of being pooled;
// TCP sessions go on until CloseSessions or Shutdown. A draining endpoint
// never dials again, so Drain also stops the resolver.
func (e *Endpoint) Drain() {
	defer e.StopResolver()
	e.dropIdle(true)
}

// CloseIdle empties the idle pool and closes what was in it; the
// endpoint goes on taking new connections. The node calls it when checks
// mark the endpoint down: nothing picks it meanwhile, and what it pooled
// before is likely dead by the time it is back.
func (e *Endpoint) CloseIdle() { e.dropIdle(false) }

// dropIdle empties the idle pool and closes what was in it; with drain,
// the endpoint also stops taking new connections.
func (e *Endpoint) dropIdle(drain bool) {
	e.mu.Lock()
	if drain {
		e.closed = true
	}
	idle := e.idle
	e.idle = nil
	for _, ic := range idle {
		delete(e.conns, ic.c)
	}
	e.mu.Unlock()
	for _, ic := range idle {
		ic.c.Close()
	}
}

// Retire takes an endpoint out of service: it drains it (Drain), closes
// its TCP sessions once drainTimeout has passed (at once for 0 or less),
// and after grace, or drainTimeout when that is longer, closes every
// connection left (Shutdown), so that HTTP exchanges in flight get at
// least grace to finish. Revive undoes what has not happened yet.
func (e *Endpoint) Retire(drainTimeout, grace time.Duration) {
	e.Drain()
	var sessions *time.Timer
	if drainTimeout > 0 {
		sessions = time.AfterFunc(drainTimeout, e.CloseSessions)
	}
	shutdown := time.AfterFunc(max(drainTimeout, grace), e.Shutdown)
	e.mu.Lock()
	e.stopRetiring()
	e.retiring = [2]*time.Timer{sessions, shutdown}
	e.mu.Unlock()
	if drainTimeout <= 0 {
		e.CloseSessions()
	}
}

// Revive puts a retired endpoint back in service, as HAProxy's "set
// server state ready" does after a drain: the sessions and exchanges its
// drain has not closed yet go on, and it takes new connections again. The
// caller starts its resolver again (StartResolver).
func (e *Endpoint) Revive() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopRetiring()
	e.closed = false
}

// stopRetiring stops Retire's timers. The caller holds e.mu.
func (e *Endpoint) stopRetiring() {
	for i, t := range e.retiring {
		if t != nil {
			t.Stop()
			e.retiring[i] = nil
		}
	}
}

// Draining reports whether Drain or Shutdown was called.
func (e *Endpoint) Draining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// CloseSessions drains the endpoint and closes its TCP sessions; HTTP
// exchanges in flight go on.
func (e *Endpoint) CloseSessions() { e.closeWhere(func(session bool) bool { return session }) }

// Shutdown drains the endpoint and closes every connection to it, busy or
// idle. Proxy loops using a closed connection see an error and end.
func (e *Endpoint) Shutdown() { e.closeWhere(func(bool) bool { return true }) }

// CloseConns closes every connection to the endpoint, busy or idle, but
// unlike Shutdown the endpoint may be dialed again: for an endpoint marked
// down (on_down: SHUTDOWN_SESSIONS) that may come back up. The users of the
// busy connections it closed can tell why with ClosedBy. It returns how
// many connections it closed.
func (e *Endpoint) CloseConns() int { return e.closeConns(ClosedOnDown) }

// ShutdownSessions is CloseConns on an operator's demand (sluicectl
// shutdown-sessions, HAProxy's "shutdown sessions server"): the endpoint
// keeps taking new work, and the users of the busy connections it closed
// can tell why with WasShutDown.
func (e *Endpoint) ShutdownSessions() int { return e.closeConns(ClosedByShutdown) }

// CloseCause says who closed a busy connection under its user.
type CloseCause uint8

const (
	// NotClosedHere: the endpoint did not close the connection itself.
	NotClosedHere CloseCause = iota
	// ClosedByShutdown: ShutdownSessions, on an operator's demand.
	ClosedByShutdown
	// ClosedOnDown: CloseConns, health checks marked the endpoint down.
	ClosedOnDown
)

// ClosedBy says whether ShutdownSessions or CloseConns closed c, a
// connection from Dial or DialSession that its user has not closed yet.
func (e *Endpoint) ClosedBy(c net.Conn) CloseCause {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.shut[c]
}

// WasShutDown reports whether ShutdownSessions closed c.
func (e *Endpoint) WasShutDown(c net.Conn) bool { return e.ClosedBy(c) == ClosedByShutdown }

func (e *Endpoint) closeConns(cause CloseCause) int {
	e.mu.Lock()
	victims := make([]net.Conn, 0, len(e.conns))
	for c := range e.conns {
		victims = append(victims, c)
	}
	if e.shut == nil {
		e.shut = make(map[net.Conn]CloseCause)
	}
	for c := range e.conns {
		e.shut[c] = cause
	}
	// Idle connections have no user to ask; they are simply gone.
	for _, ic := range e.idle {
		delete(e.shut, ic.c)
	}
	clear(e.conns)
	e.idle = nil
	e.mu.Unlock()
	for _, c := range victims {
		closeHard(c)
	}
	return len(victims)
}

func (e *Endpoint) closeWhere(match func(session bool) bool) {
	e.Drain()
	var victims []net.Conn
	e.mu.Lock()
	for c, info := range e.conns {
		if match(info.session) {
			victims = append(victims, c)
			delete(e.conns, c)
		}
	}
	e.mu.Unlock()
	for _, c := range victims {
		closeHard(c)
	}
}
