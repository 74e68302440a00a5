package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// clientConn is the state of one client connection that survives between
// requests. It stays small: the buffers live in x, which is nil while the
// connection idles.
type clientConn struct {
	srv  *Server
	c    net.Conn
	tcp  *net.TCPConn // c, when it is one (splice, raw reads)
	ip   netip.Addr   // the client's address, for Request.ClientAddr
	port uint16       // and port
	tls  bool         // c is the TLS connection of an HTTPS listener
	sni  []byte       // the server name of its handshake
	x    *exchange

	// trusted says whether the peer is in the TrustedPeers of trustedIn,
	// the configuration it was looked up in (trustedPeer).
	trusted   bool
	trustedIn *Config
	// proxied holds the PROXY header's destination and a private
	// endpoint connection, if any (private.go).
	proxied *proxied

	// Raw socket access (raw_unix.go); raw is nil where unsupported.
	raw             syscall.RawConn
	readFn, writeFn func(fd uintptr) bool
	// The same for the exchange's endpoint connection (x.epRaw).
	epReadFn, epWriteFn, epAwaitFn func(fd uintptr) bool
	rawN                           int
	rawErr                         error
	rawP                           []byte

	rdl    time.Time // the read deadline last set on c
	inline bool      // serving from inside the idle wait (serveInline)
	// The wait for the next request (planIdle), in offsets from
	// info.Start: it ends at idleDl (idleAged: the MaxConnectionAge); the
	// goroutine waits until idleUntil, armed with idleSlack (-1: exactly),
	// and then parks if idleParking. Offsets, not times, keep clientConn
	// in its size class; and fields, not locals of waitRequest, keep the
	// stack of a connection waiting for a request small (see
	// BENCHMARKS.md, the idle L7 memory row).
	idleDl, idleUntil, idleSlack time.Duration
	idleAged, idleParking        bool
	linger                       bool // drain the client's input before closing (see lingerClose)
	reason                       sluicev1.CloseReason
	info                         ConnInfo
	// inMark and outMark are info's byte counts when the last request
	// was metered (meter.go).
	inMark, outMark uint64

	// state is connIdle while the connection waits for the next request
	// and may be woken by Server.Drain, a parkedState while it is parked
	// (park.go); prev and next link it in the server's list (guarded by
	// srv.mu), tracked says it is in it.
	state      atomic.Int32
	prev, next *clientConn
	tracked    bool

	// Parking (park.go): async says the connection was served with
	// ServeConnAsync and may park; fd is its socket's descriptor, epolled
	// says the socket is in the parker's epoll set. While it is parked,
	// parkDl is its deadline, parkIdx its place in the parker's deadline
	// heap (-1: none), parkSt and parkAged what parkExpired needs (all
	// guarded by the parker's mutex). done runs when it has ended.
	async    bool
	fd       int32
	epolled  bool
	parkIdx  int32
	parkSt   int32
	parkAged bool
	// mss is the client socket's maximum segment size, which sizes the
	// reads of a large body bound for it (readBody); 0: not asked.
	// askMSS has the next raw write to the client ask it. Both are the
	// serving goroutine's, not the parker's.
	askMSS bool
	mss    uint16
	parkDl time.Time
	done   func()
	// setUp is ServeConnAsync's, until called (setUpDone).
	setUp func()
	meter *meter.Listener // counted the connection as opened
}

// Values of clientConn.state; a parked connection's are parkedState's.
const (
	connBusy   = iota // not waiting for a request: Drain leaves it alone
	connIdle          // waiting for a request's first bytes
	connWoken         // Drain or Close took it while idle or parked, and ends it
	connParked        // the low bits of a parked connection's state
)

// errDrainIdle ends the idle wait of a draining server's connection.
var errDrainIdle = errors.New("httpproxy: server draining")

// closeDraining is the close reason of the connections Drain ends.
const closeDraining = sluicev1.CloseReason_CLOSE_REASON_NODE_DRAINING

// closeCheckInterval bounds how long a wait on an endpoint goes without
// checking that the client connection was not closed from outside.
const closeCheckInterval = time.Second

// serve alternates two phases until the connection ends (cc.reason says
// why): waiting for the first bytes of the next request, and serving
// requests while bytes are at hand.
//
// A connection that parks (park.go) serves its requests on its own
// goroutine: when it idles, the goroutine ends, stack and all. One that
// cannot park (TLS, ServeConn or ServeConnFrom, or no epoll) waits on its
// goroutine, so it serves on a worker goroutine (runBusy): its own
// goroutine never runs the deep exchange code, and its stack stays small
// while it idles. The hand-off costs two goroutine switches per busy
// phase, which parking saves: about a tenth more req/s with wrk -c50 at
// GOMAXPROCS=1.
//
// It returns true when the connection ended, false when it parked (see
// park.go): then whoever takes it up ends it.
func (cc *clientConn) serve() bool {
	for {
		if cc.x == nil || cc.x.rs == cc.x.re {
			switch cc.waitRequest() {
			case waitEnded:
				return true
			case waitParked:
				return false
			}
		}
		if cc.info.Requests == 0 && cc.handOff(cc.srv.cfg.Load(), false) {
			return true
		}
		var keep bool
		if cc.parkable() {
			keep = cc.busySafe()
		} else {
			keep = runBusy(cc)
		}
		if !keep {
			return true
		}
		cc.setUpDone()
	}
}

// setUpDone tells ServeConnAsync's caller, once, that the connection is
// set up (see Server.Go). It is called on the connection's goroutine
// before anything may hand the connection to another.
func (cc *clientConn) setUpDone() {
	if f := cc.setUp; f != nil {
		cc.setUp = nil
		f()
	}
}

// Outcomes of waitRequest.
const (
	waitBytes  = iota // bytes of a request are in cc.x
	waitEnded         // the connection ends (cc.reason says why)
	waitParked        // the connection parked
)

// busy serves requests while the read buffer holds bytes of one. It
// returns true when the buffer is empty and the connection is kept.
func (cc *clientConn) busy() bool {
	for {
		switch cc.readRequest() {
		case headEnd:
			return false
		case headIdle:
			return true
		}
		if !cc.exchangeMetered() {
			return false
		}
	}
}

// exchangeMetered serves the request parsed in cc.x, metered, under the
// current configuration, and returns whether the connection stays open.
func (cc *clientConn) exchangeMetered() bool {
	cfg := cc.srv.cfg.Load()
	cc.meterStart(cfg.Meter, true)
	keep := cc.exchange(cfg)
	cc.meterDone(cfg.Meter, keep)
	return keep
}

// waitRequest waits for the first bytes of the next request. A new
// connection gets RequestHeaderTimeout for its first request, from accept,
// as with HAProxy's timeout http-request; a keep-alive connection waits
// IdleTimeout for the next one, and no longer than its MaxConnectionAge.
// Either ends the connection quietly, and so does Server.Drain, except
// for a connection that has not had a request yet and starts waiting once
// Drain was called: it gets one request served.
//
// A connection that may park waits parkAfter on its goroutine, and then,
// if its deadline is still a while away, parks (park.go). One that may
// also serves the simple requests that end its wait without leaving it
// (serveInline), and waits again from each one's end.
func (cc *clientConn) waitRequest() int {
	if !cc.planIdle() {
		return waitEnded
	}
	for {
		// serveInline plans again after each request it serves.
		err := cc.idleRead(cc.info.Start.Add(cc.idleUntil), cc.idleSlack)
		if err == errServedEnded {
			return waitEnded // serveInline ended it, and set the reason
		}
		if cc.x != nil && cc.x.rs < cc.x.re {
			return waitBytes
		}
		if err == nil {
			continue
		}
		if cc.idleParking && err != errDrainIdle && isTimeout(err) {
			cc.idleParking = false
			switch cc.parkIdle(cc.info.Start.Add(cc.idleDl), cc.idleAged) {
			case parkedOK, parkTaken:
				return waitParked
			case parkDraining:
				cc.reason = cc.srv.drainedAs()
				return waitEnded
			}
			// Not parked: wait out the rest here.
			cc.idleUntil, cc.idleSlack = cc.idleDl, -1
			continue
		}
		switch {
		case err == errDrainIdle:
			cc.reason = cc.srv.drainedAs()
		case cc.idleAged && isTimeout(err):
			cc.reason = closeMaxAge
		default:
			cc.reason = clientReason(err)
		}
		return waitEnded
	}
}

// planIdle plans the wait for the next request, from now, in cc's idle
// fields. It returns false when the connection has reached its
// MaxConnectionAge and ends (cc.reason is set).
func (cc *clientConn) planIdle() bool {
	cfg := cc.srv.cfg.Load()
	wait := cfg.IdleTimeout
	if cc.info.Requests == 0 {
		wait = cfg.RequestHeaderTimeout
	}
	from := time.Since(cc.info.Start) // one clock read, where time.Now is two
	dl, slack, aged := from+wait, wait/8, false
	if dl < from {
		dl = math.MaxInt64 // a timeout too long to add: as time.Add does
	}
	if age := cfg.MaxConnectionAge; age > 0 && cc.info.Requests > 0 {
		if from >= age {
			cc.reason = closeMaxAge
			return false
		}
		if age < dl {
			// The age comes first: wait exactly until then.
			dl, slack, aged = age, 0, true
		}
	}
	cc.idleDl, cc.idleAged = dl, aged
	cc.idleUntil, cc.idleSlack = dl, slack
	cc.idleParking = cc.parkable() && dl-from > 2*parkAfter
	if cc.idleParking {
		cc.idleUntil, cc.idleSlack = from+parkAfter, parkAfter/8
	}
	return true
}

// Outcomes of readRequest.
const (
	headReady = iota // a request head is parsed in cc.x.req
	headIdle         // the read buffer is empty: wait for the next request
	headEnd          // the connection ends
)

// readRequest parses the next request head from the read buffer into
// cc.x.req, reading the rest of a partial head under RequestHeaderTimeout.
// With headEnd, cc.reason is set and any error response written.
func (cc *clientConn) readRequest() int {
	x := cc.x
	if x.parsed {
		x.parsed = false // by inlineHead: x.headLen is set
		return headReady
	}
	lim := &cc.srv.cfg.Load().lim
	empties := 0
	var partial partialHead
	for {
		for x.rs < x.re && (x.rb[x.rs] == '\r' || x.rb[x.rs] == '\n') {
			// RFC 9112 §2.2: ignore empty lines before a request line.
			x.rs++
			x.scan = 0
			if empties++; empties > maxEmptyLineBytes {
				return cc.refuse(errLeadingLines)
			}
		}
		if x.rs == x.re {
			x.rs, x.re, x.scan = 0, 0, 0
			return headIdle
		}
		end, next := findHeadEnd(x.rb[x.rs:x.re], x.scan)
		if end > 0 {
			x.scan = 0
			x.headArmed = false
			if end > lim.bytes {
				return cc.refuse(tooLarge(x.rb[x.rs:x.re], lim))
			}
			if err := x.req.parseLimited(x.rb[x.rs:x.rs+end], lim); err != nil {
				return cc.refuse(err)
			}
			x.headLen = end
			return headReady
		}
		x.scan = next
		if err := partial.check(x.rb[x.rs:x.re], lim); err != nil {
			return cc.refuse(err)
		}

		if x.re == len(x.rb) {
			x.rb, x.rs, x.re = growRead(x.rb, x.rs, x.re)
			x.scan = 0
		}
		if !x.headArmed {
			// The head started arriving: it has RequestHeaderTimeout from
			// now to complete.
			x.headArmed = true
			cc.armRead(cc.srv.cfg.Load().RequestHeaderTimeout, true)
		}
		cc.mayReadClient()
		n, err := cc.c.Read(x.rb[x.re:])
		if n > 0 {
			x.re += n
			cc.info.BytesIn += uint64(n)
			continue
		}
		if err == nil {
			continue
		}
		if isTimeout(err) {
			return cc.refuse(errRequestTimeout)
		}
		cc.reason = clientReason(err)
		return headEnd
	}
}

// trustedPeer reports whether the connection's peer is one of cfg's
// TrustedPeers; it looks once per connection and configuration.
func (cc *clientConn) trustedPeer(cfg *Config) bool {
	if cc.trustedIn != cfg {
		cc.trustedIn = cfg
		cc.trusted = cfg.Trusts(cc.ip)
	}
	return cc.trusted
}

// tooLarge is the answer to a head b that passed lim.bytes: 414 when its
// request-target, as far as it came, is already too long for lim.uri (the
// client learns what to shorten), else 431.
func tooLarge(b []byte, lim *headLimits) *statusError {
	if i := indexByte(b, ' '); i >= 0 && indexByte(b[:i], '\n') < 0 {
		t := b[i+1:]
		for j, c := range t {
			if c == ' ' || c == '\r' || c == '\n' {
				t = t[:j]
				break
			}
		}
		if len(t) > lim.uri {
			return errURITooLong
		}
	}
	return errHeadTooLarge
}

// idleRead waits until dl for the next request's first bytes, and adds
// what it read to cc.x (the read deadline is armed as armReadAt does with
// slack). Where raw reads are available, the exchange goes back to the
// pool during the wait and a fresh one is taken when bytes arrive
// (readFn), at no extra syscall; and a connection that may park serves
// the simple requests that come from inside the wait (serveInline), which
// returns errServedEnded if one ended the connection.
//
// The wait is where Server.Drain finds the connection (enterIdle,
// leaveIdle): errDrainIdle says that the server is draining and no byte of
// a request came. A request whose bytes came but were not read yet when
// Drain ended the wait is served (with Connection: close): closing the
// socket with them unread would reset the connection under the request.
// Then idleRead returns nil having read nothing, and the next call reads
// them.
func (cc *clientConn) idleRead(dl time.Time, slack time.Duration) error {
	cc.armReadAt(dl, slack)
	if !cc.enterIdle() {
		if err := cc.drainedIdle(dl); err != nil {
			return err
		}
		cc.armReadAt(dl, slack) // Drain's deadline may have replaced it
	}
	if cc.raw != nil {
		cc.rawErr = nil
		if err := cc.raw.Read(cc.readFn); err != nil {
			// readFn leaves idle once it read, so the wait failed idle.
			if cc.leaveIdle() && isTimeout(err) {
				return cc.drainedIdle(dl)
			}
			return err
		}
		return cc.rawErr
	}
	if cc.x == nil {
		cc.x = getExchange()
	}
	n, err := cc.c.Read(cc.x.rb[cc.x.re:])
	cc.x.re += n
	cc.info.BytesIn += uint64(n)
	if cc.leaveIdle() && n == 0 && isTimeout(err) {
		return cc.drainedIdle(dl)
	}
	return err
}

// drainedIdle is what a wait until dl that Drain ended, or would not let
// start, returns: errDrainIdle, or nil when bytes of a request came
// before Drain did (see idleRead). Once dl passed it is errDrainIdle all
// the same: the next wait would end at once, before its read.
func (cc *clientConn) drainedIdle(dl time.Time) error {
	if time.Now().Before(dl) && cc.requestWaiting() {
		return nil
	}
	return errDrainIdle
}

// enterIdle marks the connection idle, after its read deadline for the
// wait was set, so that Drain may end the wait. It returns false, and the
// connection is busy again, when the server is draining: a connection
// that had requests then ends at once. One that had none waits for its
// first, as a connection accepted after Drain is served one request.
func (cc *clientConn) enterIdle() bool {
	cc.state.Store(connIdle)
	if cc.srv.draining.Load() && cc.info.Requests > 0 {
		cc.leaveIdle()
		return false
	}
	return true
}

// leaveIdle marks the connection busy again. It returns true when Drain
// woke it: Drain may then still be setting the read deadline, so leaveIdle
// waits for it to be done (srv.mu) and forgets the deadline cc.rdl
// remembers, so that the next read arms its own. Bytes the wait read are
// then the start of a request, which is served (with Connection: close).
func (cc *clientConn) leaveIdle() bool {
	if cc.state.CompareAndSwap(connIdle, connBusy) {
		return false
	}
	cc.srv.mu.Lock()
	cc.state.Store(connBusy)
	cc.srv.mu.Unlock()
	cc.rdl = time.Time{}
	return true
}

// armRead sets the client read deadline to now+d. Unless exact, a deadline
// already within d/8 of that is kept: the keep-alive wait then costs a
// clock read rather than a timer update per request.
func (cc *clientConn) armRead(d time.Duration, exact bool) {
	slack := d / 8
	if exact {
		slack = -1
	}
	cc.armReadAt(time.Now().Add(d), slack)
}

// armReadAt sets the client read deadline to dl, unless the deadline set
// is at most slack before it (a negative slack always sets it).
func (cc *clientConn) armReadAt(dl time.Time, slack time.Duration) {
	if !cc.rdl.After(dl) && dl.Sub(cc.rdl) <= slack {
		return
	}
	cc.rdl = dl
	cc.c.SetReadDeadline(dl)
}

// armBodyRead sets the client read deadline for a read of the request
// body: IdleTimeout away, as armRead, or sooner when the watch of the
// endpoint for an early answer is to start then (answerWatchDue). It
// reports whether the watch saw the endpoint send (answerCame): the read
// is then not to be made, as the deadline set here may have replaced the
// one the watch moved to wake it.
func (cc *clientConn) armBodyRead(exact bool) (answerCame bool) {
	d := cc.srv.cfg.Load().IdleTimeout
	if due := cc.x.answerDue; !due.IsZero() && time.Until(due) < d {
		cc.armReadAt(due, 0)
	} else {
		cc.armRead(d, exact)
	}
	return cc.answerCame()
}

// readClient reads request body bytes from the client, with IdleTimeout as
// the inactivity bound. The wait ends with a timeout, too, when the
// endpoint sent meanwhile (answerCame).
func (cc *clientConn) readClient(p []byte) (int, error) {
	cc.mayReadClient()
	for {
		if cc.armBodyRead(false) {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := cc.c.Read(p)
		cc.info.BytesIn += uint64(n)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		if !cc.answerWatchDue(err) {
			return 0, err
		}
	}
}

// write writes p to the client. The first attempt is a plain non-blocking
// write with no deadline to arm; only when the socket buffer is full does the
// rest go through a blocking write bounded by IdleTimeout.
func (cc *clientConn) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if cc.raw != nil {
		cc.rawP = p
		err := cc.raw.Write(cc.writeFn)
		cc.rawP = nil
		if err == nil {
			err = cc.rawErr
		}
		if err != nil {
			return err
		}
		cc.info.BytesOut += uint64(cc.rawN)
		p = p[cc.rawN:]
		if len(p) == 0 {
			return nil
		}
	}
	cc.c.SetWriteDeadline(time.Now().Add(cc.srv.cfg.Load().IdleTimeout))
	n, err := cc.c.Write(p)
	cc.info.BytesOut += uint64(n)
	cc.c.SetWriteDeadline(time.Time{})
	return err
}

// refuse answers a request the proxy will not forward and ends the
// connection. The answer to a HEAD request has no body (RFC 9110 §9.3.2),
// however much of the head parsed: the read buffer still starts with the
// request line. The request counts among the connection's requests, as
// the listener's metrics and access log count it.
func (cc *clientConn) refuse(e *statusError) int {
	x := cc.x
	head := bytes.HasPrefix(x.rb[x.rs:x.re], []byte("HEAD "))
	x.wb = appendStatusResponse(x.wb[:0], e, nil, 1, false, head)
	cc.write(x.wb)
	x.wb = x.wb[:0]
	cc.reason = e.reason
	cc.info.Requests++
	cc.info.Fail(e.reason)
	cc.linger = true
	cc.meterRefused(e.status)
	return headEnd
}

// partialHead checks a request head that has not ended yet as its bytes
// arrive: it is refused as soon as it is longer than the limits allow, or
// once its request line came and is one no request starts with (HTTP/0.9's
// "GET /"), not when it ends or RequestHeaderTimeout passes. Each byte is
// looked at once for the line's end: a head that trickles in costs no
// more. The zero value is ready for a head.
type partialHead struct {
	lineChecked bool
	lineScan    int // how far from the head's start the line's end was looked for
}

// check checks b, the head so far (no empty line before it).
func (p *partialHead) check(b []byte, lim *headLimits) *statusError {
	if len(b) > lim.bytes {
		return tooLarge(b, lim)
	}
	if p.lineChecked {
		return nil
	}
	p.lineScan = min(p.lineScan, len(b))
	nl := indexByte(b[p.lineScan:], '\n')
	if nl < 0 {
		p.lineScan = len(b)
		return nil
	}
	p.lineChecked = true
	_, _, err := parseRequestLine(b[:p.lineScan+nl+1], lim)
	return err
}

// lingerClose half-closes the connection and discards what the client still
// sends for a short while (Linger).
func (cc *clientConn) lingerClose() {
	if cc.tcp == nil {
		return
	}
	var buf []byte
	if cc.x != nil {
		buf = cc.x.rb
	}
	cc.info.BytesIn += Linger(cc.tcp, buf)
}

// Linger half-closes c and discards what the client still sends, for half
// a second and 64 MiB at most, so that the error response just written is
// not destroyed by a reset when c closes with unread input (RFC 9112
// §9.6): a client that writes a whole upload before it reads (Go's
// http.Client) may send megabytes in that time over a fast link, and a
// close while it still sends resets the answer it has not read yet. nginx
// bounds its lingering close by time alone. It reads into buf (a buffer
// of its own when buf is empty) and returns the bytes it read.
func Linger(c *net.TCPConn, buf []byte) (read uint64) {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if len(buf) == 0 {
		buf = make([]byte, 4096)
	}
	for read < 64<<20 {
		n, err := c.Read(buf)
		read += uint64(n)
		if err != nil {
			break
		}
	}
	return read
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// clientReason maps a client I/O error to a close reason.
func clientReason(err error) sluicev1.CloseReason {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	case errors.Is(err, net.ErrClosed):
		return sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED
	case isTimeout(err):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
	}
	return sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
}
