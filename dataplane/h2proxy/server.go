package h2proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultMaxConcurrentStreams is Config.MaxConcurrentStreams when unset.
const DefaultMaxConcurrentStreams = 250

// Config is what the HTTP/2 engine of a listener needs beyond the
// listener's httpproxy.Config, which it reads from the listener's
// httpproxy.Server (Director, timeouts, connection limits, retries, error
// pages).
type Config struct {
	// MaxConcurrentStreams bounds the streams a client may have open at
	// once (default DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
}

// Server serves the client connections an httpproxy.Server hands over
// (httpproxy.HTTP2): HTTP/2 ones, and with httpproxy.Config.Translate
// HTTP/1.x ones too.
type Server struct {
	http *httpproxy.Server
	up   *Upstream
	cfg  atomic.Pointer[Config]

	draining atomic.Bool
	// drainReason is the close reason Drain was given, set before
	// draining.
	drainReason atomic.Int32
	mu          sync.Mutex
	conns       map[*conn]struct{}
}

// NewServer returns the engine for the listener served by hs, forwarding
// through up (shared by the node's listeners). The caller gives it to hs
// with hs.SetHTTP2.
func NewServer(hs *httpproxy.Server, up *Upstream, cfg *Config) *Server {
	s := &Server{http: hs, up: up, conns: map[*conn]struct{}{}}
	s.SetConfig(cfg)
	return s
}

// SetConfig swaps the configuration; each stream uses the one current when
// it starts, and a connection keeps the stream limit it started with.
func (s *Server) SetConfig(cfg *Config) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	s.cfg.Store(&c)
}

// Drain sends GOAWAY on every connection (an HTTP/1.x one closes when
// idle, or after its current response): open streams complete, new ones
// go elsewhere. Connections handed over later end after their first
// response. It does not wait. The ends are recorded as reason; a second
// Drain does nothing.
func (s *Server) Drain(reason sluicev1.CloseReason) {
	s.drainReason.CompareAndSwap(0, int32(reason))
	if s.draining.Swap(true) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for cn := range s.conns {
		cn.end(s.drainedAs())
	}
}

// drainedAs is the close reason Drain was given (closeDraining before).
func (s *Server) drainedAs() sluicev1.CloseReason {
	if r := sluicev1.CloseReason(s.drainReason.Load()); r != 0 {
		return r
	}
	return closeDraining
}

// Close reasons of the ends this engine chooses.
const (
	closeDraining    = sluicev1.CloseReason_CLOSE_REASON_NODE_DRAINING
	closeMaxAge      = sluicev1.CloseReason_CLOSE_REASON_MAX_AGE
	closeMaxRequests = sluicev1.CloseReason_CLOSE_REASON_MAX_REQUESTS
)

// discard is the error log of the per-connection servers: what they would
// log (a client's protocol error, a TLS client gone) is the client's
// business, and the connection record says how it ended.
var discard = log.New(io.Discard, "", 0)

// h2Config is the HTTP/2 configuration of ServeConn's servers, allowing
// maxStreams concurrent streams. clientConn's frameReader mirrors the
// frame size and HPACK decoder that it sets.
func h2Config(maxStreams uint32) *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:      int(maxStreams),
		MaxReadFrameSize:          maxFrame,
		MaxDecoderHeaderTableSize: hpackTableSize,
	}
}

// ServeConn implements httpproxy.HTTP2.
func (s *Server) ServeConn(c net.Conn, client, local netip.AddrPort, preread []byte, h2 bool, sni []byte, info *httpproxy.ConnInfo) sluicev1.CloseReason {
	hcfg := s.http.Config()
	cfg := s.cfg.Load()
	nc := &countConn{Conn: c, pre: preread}
	if !h2 {
		nc.screen = &h1Screen{
			maxHead:     headerListBytes(hcfg) + 4<<10, // and net/http's bufio
			config:      s.http.Config,
			headTimeout: hcfg.RequestHeaderTimeout,
			headSince:   info.Start,
			fresh:       true,
		}
		nc.aborted.L = &nc.deadlineMu
		nc.abortsOnCloseFn = nc.abortsOnClose
	}
	cn := &conn{srv: s, nc: nc, sni: sni, info: info, client: client, local: local, done: make(chan struct{})}
	_, cn.tls = c.(interface{ ConnectionState() tls.ConnectionState })
	var protos http.Protocols
	if h2 {
		// The TLS handshake, if any, is done: to net/http this is HTTP/2
		// over a connection it needs not secure (countConn hides the
		// *tls.Conn, whose ALPN already said h2).
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	cn.hs = &http.Server{
		Handler:        cn,
		Protocols:      &protos,
		HTTP2:          h2Config(cfg.MaxConcurrentStreams),
		MaxHeaderBytes: headerListBytes(hcfg),
		IdleTimeout:    hcfg.IdleTimeout,
		ErrorLog:       discard,
		// OPTIONS * is the endpoint's to answer, as on the HTTP/1.1 engine.
		DisableGeneralOptionsHandler: true,
		ConnState: func(_ net.Conn, st http.ConnState) {
			// A hijacked connection is a tunnel's (upgrade.go), which
			// says when it is done.
			if st == http.StateClosed {
				cn.closeOnce.Do(func() { close(cn.done) })
			}
		},
	}
	if h2 {
		cn.hs.ReadHeaderTimeout = hcfg.RequestHeaderTimeout // on HTTP/1.x the screen's (boundHead)
	}
	s.mu.Lock()
	s.conns[cn] = struct{}{}
	s.mu.Unlock()
	if age := hcfg.MaxConnectionAge; age > 0 {
		t := time.AfterFunc(age-time.Since(info.Start), func() { cn.end(closeMaxAge) })
		defer t.Stop()
	}
	if s.draining.Load() {
		cn.ending.CompareAndSwap(0, int32(s.drainedAs()))
	}
	var served net.Conn = nc
	var h2c *clientConn
	if h2 {
		h2c = newClientConn(nc, cn.hs.MaxHeaderBytes, !cn.tls)
		served = h2c
	}
	cn.hs.Serve(&oneConn{c: served, done: cn.done})
	<-cn.done
	cn.shutdownCancel()
	s.mu.Lock()
	delete(s.conns, cn)
	s.mu.Unlock()
	s.up.forget(cn.client, cn.local)

	info.BytesIn += nc.in.Load()
	info.BytesOut += nc.out.Load()
	cn.mu.Lock()
	defer cn.mu.Unlock()
	info.Requests += cn.streams
	info.Retries += cn.retries
	info.Failed += cn.failed
	info.Failures |= cn.failures // with the HTTP/1.1 engine's before an h2c upgrade
	if cn.cluster != "" {
		info.Cluster, info.Endpoint = cn.cluster, cn.endpoint
	}
	if cn.rule != "" {
		info.Rule = cn.rule
	}
	why := nc.reason(s.http.Closed())
	if why == sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT && h2c != nil && h2c.fr.goAway.Load() {
		// net/http closed the connection after the client's GOAWAY,
		// before the client's own close reached a read.
		why = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	}
	if r := sluicev1.CloseReason(cn.ending.Load()); r != 0 && why != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
		why = r // a graceful end under way, which no listener's close cut
	}
	if cn.tunneled != 0 {
		why = cn.tunneled // the connection ended with its tunnel
	}
	if r := nc.refusal(); r != nil {
		why = r.reason
		info.Requests++
		info.Fail(r.reason)
		cn.meterRefused(hcfg.Meter, r)
	}
	return why
}

// conn is one client connection and its net/http server.
type conn struct {
	srv    *Server
	hs     *http.Server
	nc     *countConn
	tls    bool
	sni    []byte
	client netip.AddrPort      // the peer, or what its PROXY header said
	local  netip.AddrPort      // the address it connected to, for PROXY headers sent on
	info   *httpproxy.ConnInfo // written only when the connection ends

	done      chan struct{} // closed when net/http is done with the connection
	closeOnce sync.Once

	// ending is the close reason of a graceful end under way (GOAWAY sent
	// or to be sent), 0 while none is.
	ending     atomic.Int32
	shutdownMu sync.Mutex
	cancelShut context.CancelFunc

	mu                sync.Mutex // guards what follows, for the record
	streams, retries  uint64
	failed            uint64            // streams the proxy answered with an error
	failures          conntrack.Reasons // why, for each of them
	cluster, endpoint string
	rule              string               // of the latest stream a rule decided
	tunneled          sluicev1.CloseReason // why the tunnel ended, if one ran
}

// end starts the graceful end of the connection for reason, once: GOAWAY
// (HTTP/2) or a close when idle (HTTP/1.x); streams in flight complete.
func (cn *conn) end(reason sluicev1.CloseReason) {
	if !cn.ending.CompareAndSwap(0, int32(reason)) {
		return
	}
	cn.shutdownMu.Lock()
	defer cn.shutdownMu.Unlock()
	if cn.cancelShut != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cn.cancelShut = cancel
	// Shutdown returns when the connection ends, or when ServeConn cancels
	// ctx as it returns.
	go cn.hs.Shutdown(ctx)
}

// shutdownCancel ends a Shutdown still waiting for the connection.
func (cn *conn) shutdownCancel() {
	cn.shutdownMu.Lock()
	defer cn.shutdownMu.Unlock()
	if cn.cancelShut != nil {
		cn.cancelShut()
	} else {
		cn.cancelShut = func() {} // no Shutdown from now on
	}
}

// stream counts a new stream and reports whether its response should end
// the connection (Connection: close, which net/http turns into GOAWAY on
// HTTP/2): the connection reached max_requests_per_connection or its age,
// or the server is draining.
func (cn *conn) stream(hcfg *httpproxy.Config) (last bool) {
	cn.mu.Lock()
	cn.streams++
	n := cn.streams
	cn.mu.Unlock()
	switch {
	case cn.ending.Load() != 0:
		return true
	case cn.srv.draining.Load():
		cn.ending.CompareAndSwap(0, int32(cn.srv.drainedAs()))
		return true
	case hcfg.MaxRequestsPerConnection > 0 && n >= uint64(hcfg.MaxRequestsPerConnection):
		cn.ending.CompareAndSwap(0, int32(closeMaxRequests))
		return true
	case hcfg.MaxConnectionAge > 0 && time.Since(cn.info.Start) >= hcfg.MaxConnectionAge:
		cn.ending.CompareAndSwap(0, int32(closeMaxAge))
		return true
	}
	return false
}

// fail records a stream the proxy answered with an error, for why.
func (cn *conn) fail(why sluicev1.CloseReason) {
	cn.mu.Lock()
	cn.failed++
	cn.failures.Add(why)
	cn.mu.Unlock()
}

// ruled records that rule decided a stream of the connection, for its
// record.
func (cn *conn) ruled(rule string) {
	cn.mu.Lock()
	cn.rule = rule
	cn.mu.Unlock()
}

// routed records the endpoint of the connection's latest stream.
func (cn *conn) routed(cluster, endpoint string, retried uint64) {
	cn.mu.Lock()
	cn.cluster, cn.endpoint = cluster, endpoint
	cn.retries += retried
	cn.mu.Unlock()
}

// countConn counts the bytes of a client connection and first reads the
// bytes httpproxy read before handing it over. It hides the *tls.Conn it
// may wrap, on purpose: see ServeConn. On an HTTP/1.x connection (one
// with a screen) it also frames the requests before net/http reads them,
// answers the heads the screen refuses, and notices the answer net/http
// writes on its own to a request head it refuses (see refusal).
type countConn struct {
	net.Conn
	pre     []byte
	in, out atomic.Uint64
	readErr atomic.Pointer[error] // the first read error, but an abort's
	// aborting: the read deadline is in the past, as net/http sets it to
	// end its background read when a handler returns (abortPendingRead):
	// the read that fails then says nothing of the client.
	aborting atomic.Bool

	refused atomic.Pointer[refusal]
	// screen frames an HTTP/1.x client's requests before net/http reads
	// them (h1screen.go); nil on HTTP/2.
	screen *h1Screen
	// served counts the screen's requests whose handlers returned (see
	// serving).
	served atomic.Uint64
	// deadlineMu orders net/http's read deadlines (readDeadline) and the
	// screen's (boundHead); aborted, on it, wakes a background read held
	// back (holdEOF) when net/http ends it, or the connection closes.
	deadlineMu   sync.Mutex
	readDeadline time.Time
	aborted      sync.Cond
	closed       atomic.Bool // Close ran: the answer and the linger go once
	// lingers: a response ended the connection with the client's body
	// unread (an endpoint's early answer): once it is done, no read takes
	// more of the body (errBodyLeft), and Close lingers.
	lingers atomic.Bool
	// abortOnClose numbers (served+1) the request that is to end once its
	// client closes (abort_on_close, httpproxy.Request.OnAbortOnClose),
	// so that holdEOF hands the end on while it is served (abortsOnClose);
	// the next request, handed on before its handler starts, does not.
	abortOnClose    atomic.Uint64
	abortsOnCloseFn func() // abortsOnClose, made once
}

// refusal is a request head net/http refused and answered itself, before
// any handler saw it: it writes the answer straight to the connection as
// "HTTP/1.1 400 Bad Request" (or 431, or 501), then refusalHeaders, then
// closes. Those headers in that order (Content-Type before Connection,
// no Date) never start a response its handlers write: net/http sorts
// those, and adds Date.
type refusal struct {
	at     time.Time
	status int
	reason sluicev1.CloseReason // the connection's close reason
	body   uint64               // the answer's body bytes, as streams count theirs
	out    uint64               // the connection's bytes out after it: it is the last write
}

const refusalHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// noteRefusal records the refusal p may be. It costs a search for the end
// of the first line of each write that starts with a status line. A
// response body that happens to start a write with those bytes is told
// apart when more is written after it: a refusal is the connection's last
// write.
func (c *countConn) noteRefusal(p []byte, n int) {
	if c.screen == nil || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) { // HTTP/2: frames, no status lines
		return
	}
	i := bytes.IndexByte(p, '\r')
	if i < 0 || !bytes.HasPrefix(p[i:], []byte(refusalHeaders)) {
		return
	}
	body := max(n-i-len(refusalHeaders), 0)
	c.refused.Store(&refusal{at: time.Now(), status: httpproxy.ResponseStatus(p), reason: sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
		body: uint64(body), out: c.out.Load()})
}

// reason is why the connection ended, when no limit or drain ended it: the
// client closed it or went silent, or the socket was closed under the
// reads: by the node, when listenerClosed (its listener was removed, or
// the node stops); else by net/http itself, mostly for idleness
// (IdleTimeout), which is what is recorded. The read error cannot tell
// those two closes apart: net/http closes the socket again as it stops
// serving it, maybe before the read fails.
func (c *countConn) reason(listenerClosed bool) sluicev1.CloseReason {
	p := c.readErr.Load()
	var err error
	if p != nil {
		err = *p
	}
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	case errors.Is(err, os.ErrDeadlineExceeded):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
	case errors.Is(err, net.ErrClosed) && listenerClosed:
		return sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED
	case errors.Is(err, net.ErrClosed):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
	}
	return sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
}

// serving reports whether a request the screen handed on is not yet
// answered: a read then is net/http's background read, not one for a
// head. It counts from when the screen hands the head on, not from when
// the handler starts: net/http starts its background read before it
// calls the handler.
func (c *countConn) serving() bool {
	return c.screen.handed.Load() != c.served.Load()
}

// SetReadDeadline notes a deadline in the past (see aborting), and the
// deadline net/http set, which a head's (boundHead) may cut short.
func (c *countConn) SetReadDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.aborting.Store(!t.IsZero() && t.Before(time.Unix(2, 0)))
	c.readDeadline = t
	if c.aborting.Load() {
		c.aborted.Broadcast() // holdEOF
	}
	return c.Conn.SetReadDeadline(t)
}

// holdEOF holds back the end of the client's bytes from net/http's
// background read while a request is served, until net/http ends that
// read (abortPendingRead, once the response is done) or the connection
// closes; then the read fails as an aborted one, which net/http ignores,
// and the next read finds the end. net/http would take the end for a
// client gone, cancel the request, and answer an empty 200 in its place;
// a client that half-closes after its request (nc -N, many scripts) waits
// for the answer, which the HTTP/1.1 engine, as HAProxy, gives it.
//
// With abort_on_close (abortsOnClose), known as soon as the request is
// routed, even while it waits in a queue, the end goes on at once, and
// net/http ends the request as the HTTP/1.1 engine's option does.
func (c *countConn) holdEOF() error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	for !c.aborting.Load() && !c.closed.Load() && !c.givesUpOnClose() {
		c.aborted.Wait()
	}
	if c.givesUpOnClose() && !c.aborting.Load() {
		return io.EOF
	}
	return os.ErrDeadlineExceeded
}

// abortsOnClose notes that the request being served ends once its client
// closes (see holdEOF).
func (c *countConn) abortsOnClose() {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.abortOnClose.Store(c.served.Load() + 1)
	c.aborted.Broadcast()
}

// givesUpOnClose reports whether the request being served ends once its
// client closes (abortsOnClose).
func (c *countConn) givesUpOnClose() bool {
	return c.abortOnClose.Load() == c.served.Load()+1
}

// boundHead bounds the wait for the rest of a head the screen holds by
// the listener's request_header_timeout, as the HTTP/1.1 engine does:
// from when the screen first waited for it while no request was being
// served; the connection's first byte, from the connection's start, and
// its first head from that byte. net/http sees none of a head before the
// screen hands it all, so its own bounds would start late or not at all:
// its ReadHeaderTimeout is off, and the deadline it set for the next
// head is its idle timeout's, which ends with the head's first byte, as
// on the HTTP/1.1 engine, and which the head's replaces. A read while a
// request is served is net/http's background read: the bound waits until
// the response is done, as the HTTP/1.1 engine reads no next head before;
// a deadline in the past (an aborted background read) stays.
func (c *countConn) boundHead() {
	s := c.screen
	if s.headTimeout <= 0 || c.serving() {
		return
	}
	if s.headSince.IsZero() {
		s.headSince = time.Now()
	}
	end := s.headSince.Add(s.headTimeout)
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.aborting.Load() {
		return
	}
	c.Conn.SetReadDeadline(end)
	s.bounded = true
}

// unboundHead puts back net/http's read deadline once the head is whole.
func (c *countConn) unboundHead() {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.Conn.SetReadDeadline(c.readDeadline)
	c.screen.bounded = false
}

func (c *countConn) Read(p []byte) (int, error) {
	if c.screen != nil {
		return c.screenRead(p)
	}
	return c.read(p)
}

// screenRead is Read through the screen: only bytes it framed go to
// net/http. A read error of the client's goes on at once (a deadline
// net/http set passes, and the screen keeps what it holds).
func (c *countConn) screenRead(p []byte) (int, error) {
	s := c.screen
	if c.lingers.Load() && !c.serving() {
		// What is left of a body after an early answer is not read: the
		// connection ends. net/http would read it to close the body, as
		// long as the client held it back (its abortPendingRead clears
		// the deadline that finish set).
		return 0, errBodyLeft
	}
	for {
		if s.ready > 0 {
			return s.take(p), nil
		}
		switch s.state {
		case screenRefused:
			return 0, io.EOF
		case screenCut:
			return 0, errBadFraming
		}
		if s.frame() {
			if s.bounded && !s.partialHead() {
				c.unboundHead()
			}
			continue
		}
		if cap(s.buf)-len(s.buf) < 1<<10 {
			// As net/http's own reads: 4 KiB, more for a long head.
			s.buf = slices.Grow(s.buf, 4<<10)
		}
		if s.partialHead() || s.fresh {
			c.boundHead()
		}
		n, err := c.read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if n > 0 && s.fresh {
			s.fresh, s.headSince = false, time.Time{} // the first head's bound starts at its first byte
		}
		if n == 0 && err != nil {
			if s.partialHead() && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborting.Load() {
				// net/http closes without a word: Close answers.
				s.answerWith(httpproxy.ErrHeadTimeout)
			}
			if err == io.EOF && s.state == screenHead && c.serving() && c.aborted.L != nil && !c.givesUpOnClose() {
				return 0, c.holdEOF()
			}
			return 0, err
		}
	}
}

// read reads the client's bytes: what was read before ServeConn first,
// then the connection's, counted.
func (c *countConn) read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	if err != nil && !(c.aborting.Load() && errors.Is(err, os.ErrDeadlineExceeded)) {
		c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// refusal is the refusal net/http answered on the connection, if it did:
// the refusal-like write noted last, when nothing was written after it.
func (c *countConn) refusal() *refusal {
	if r := c.refused.Load(); r != nil && r.out == c.out.Load() {
		return r
	}
	return nil
}

func (c *countConn) Write(p []byte) (int, error) {
	if c.screen != nil && string(p) == netHTTPRefusal {
		if a := c.screen.answer.Load(); a != nil {
			// net/http's answer to refusedLine: the screen's instead.
			return len(p), c.answer(a)
		}
	}
	if c.screen == nil {
		// An HTTP/2 connection's writes are net/http's flushes, of what
		// its streams had written by then. The frames streams write
		// while one is under way wait, and go together in the next.
		// Letting the goroutines that are ready run before this write
		// (other streams' handlers, with their endpoints' answers) has
		// them queue theirs first: the next flush carries several
		// responses, not one each. Fewer writes, as HAProxy makes them, a
		// round of events at a time (BENCHMARKS.md, "HTTP/2 clients").
		runtime.Gosched()
	}
	n, err := c.Conn.Write(p)
	c.out.Add(uint64(n))
	c.noteRefusal(p, n)
	return n, err
}

// answer writes a, once, as the connection's last bytes, and records it
// as a refusal.
func (c *countConn) answer(a *screenAnswer) error {
	if !a.sent.CompareAndSwap(false, true) {
		return nil
	}
	at := time.Now()
	n, err := c.Conn.Write(a.b)
	c.out.Add(uint64(n))
	c.refused.Store(&refusal{at: at, status: a.status, reason: a.reason, body: uint64(a.body), out: c.out.Load()})
	return err
}

// Close writes the screen's answer to a head that did not come in time,
// which net/http closes on without a word, and after an answer, or a
// response that left the client's body unread, lingers
// (httpproxy.Linger), as the HTTP/1.1 engine does: a close with the
// client's input unread could reset the connection before the client read
// the answer.
func (c *countConn) Close() error {
	if c.screen != nil && c.closed.CompareAndSwap(false, true) {
		c.deadlineMu.Lock()
		c.aborted.Broadcast() // holdEOF
		c.deadlineMu.Unlock()
		linger := c.lingers.Load()
		if a := c.screen.answer.Load(); a != nil {
			if a.onClose {
				c.answer(a)
			}
			linger = linger || a.sent.Load()
		}
		if tc, ok := c.Conn.(*net.TCPConn); ok && linger {
			c.in.Add(httpproxy.Linger(tc, nil))
		}
	}
	return c.Conn.Close()
}

// oneConn is a listener of one connection, for http.Server.Serve: it
// accepts c once, then waits until the connection is done.
type oneConn struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

// maxFrame is the largest frame a client may send (SETTINGS_MAX_FRAME_SIZE):
// the protocol's initial value. net/http would allow 1 MiB, which only
// buffers more per stream for a proxy that forwards as it reads.
const maxFrame = 16 << 10
