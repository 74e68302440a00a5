// Package httpproxy is Sluice's HTTP/1.1 reverse proxy engine: it serves
// client connections of an HTTP listener and balances every request on its
// own, over pooled endpoint connections.
//
// A client keep-alive connection is not pinned to an endpoint (DESIGN
// problem 1): for each request head read, the Director picks an endpoint, the
// request goes out on one of that endpoint's idle pooled connections (or a
// new one), and the connection returns to the pool once its response was
// read in full. HAProxy users get this with `option http-server-close`;
// here it is the only mode.
//
// The engine does not use net/http. Heads are parsed in place from pooled
// buffers, with no allocation per request; a request head goes to the
// endpoint in one write, and a response head with a body that came with it
// goes to the client in one write; Content-Length bodies of 64 KiB and more
// are spliced between the two sockets where splicing pays (splice.Pays: by
// default, for bytes from a peer on another host), and copied through a
// 16 KiB buffer otherwise. One goroutine serves one client
// connection; served with ServeConnAsync, a connection idle for a moment
// parks without a goroutine or buffers (park.go), otherwise it waits on its
// goroutine with a minimal stack, its busy phases on a reused worker
// goroutine (worker.go). The buffers come from free lists that give burst
// memory back to the OS (bufpool.go).
//
// What is forwarded and how:
//   - Requests go upstream as HTTP/1.1 keep-alive. Hop-by-hop fields
//     (Connection and every field it names, Keep-Alive, Proxy-Connection,
//     TE, Trailer, Upgrade, Transfer-Encoding) are removed in both
//     directions, but for the Upgrade of a tunnel request (below); framing
//     is re-done by the proxy (Content-Length kept, chunked re-encoded
//     canonically). Host is preserved; an HTTP/1.0 request without Host
//     gets the endpoint's address as Host, since an HTTP/1.1 request must
//     carry one.
//   - The endpoint learns who the client is from X-Forwarded-For,
//     X-Forwarded-Proto and X-Forwarded-Host, or RFC 7239 Forwarded, or
//     both (Config.Forwarded): written anew for a client, extended for a
//     trusted proxy in front (Config.TrustedPeers); see forwarded.go.
//   - An HTTP/1.1 request with "Connection: upgrade" and an Upgrade field
//     (WebSocket, or any protocol but h2c) goes to the endpoint with both;
//     if it answers 101 Switching Protocols, the 101 goes to the client and
//     the two connections become a tunnel, bytes copied both ways until
//     each side closed or Config.TunnelIdleTimeout passed without a byte
//     (tunnel.go). Any other answer is an ordinary response. An Upgrade
//     without Connection: upgrade, in HTTP/1.0, or to h2c is removed and
//     the request proxied as a plain one, which is what a server that
//     ignores Upgrade does (RFC 9110 §7.8); a 101 to it is answered 502.
//   - CONNECT is answered 501.
//   - The Director may adjust what is forwarded for the request it picks
//     for, which is what cookie persistence needs (HAProxy's "cookie
//     SERVERID insert indirect nocache"): read a cookie (Request.Cookie),
//     remove it from the request (RemoveCookie), remove the endpoint's own
//     Set-Cookie of that name (RemoveResponseCookie) and add fields to the
//     endpoint's final response (AddResponseField). These cost no
//     allocation per request either.
//   - The Director may also edit header fields of the request and of the
//     response (Request.EditRequest, EditResponse), or have the proxy answer
//     the request itself (Request.Respond with a fixed response or a
//     redirect), which is what listener rules need. No allocation either.
//   - A response without a length goes to an HTTP/1.1 client chunked (the
//     connection stays open) and to an HTTP/1.0 client close-delimited.
//   - An endpoint that takes PROXY headers (upstream.Endpoint.SendProxy)
//     gets connections private to one client connection instead of pooled
//     ones (private.go). The client's address, for those headers and for
//     Request.ClientAddr, is the one a PROXY header in front of the client
//     connection named, if the listener took one (ServeConnFrom).
//
// When connecting to the picked endpoint fails (refused, timed out,
// unreachable), nothing of the request has gone out yet: the proxy picks
// again and tries another endpoint, Config.Retries times at most, like
// HAProxy's "retries" with "option redispatch". The Director learns through
// Request.Failed which endpoints failed, so that it can pick around them.
// This holds for every method, with or without a body, since no byte of the
// request reached an endpoint. Once request bytes went out, the rules are
// narrower: a request is sent again only on a pooled connection the
// endpoint had closed while idle, only if it is idempotent, no body byte
// and no response byte passed, and then on a fresh connection to the same
// endpoint (or, should that connect fail, to another one as above).
//
// Errors are answered like HAProxy does, with short text/plain bodies: 400
// malformed or smuggling-prone requests, 408 request head timeout (or a
// request body that stops for IdleTimeout), 413 body over
// Config.MaxRequestBodyBytes, 414 target over Config.MaxURILength, 431 head
// over Config.MaxHeaderBytes (64 KiB at most) or with more than
// Config.MaxHeaderCount fields, 501, 503 no endpoint, 502 connect failure
// or bad/closed upstream response, 504 response timeout. A refused request
// (400, 413, 414, 431) closes the connection, and nothing of it reaches an
// endpoint, but for a chunked body found malformed or too large while it
// streams: the endpoint connection is then closed mid-body. The client connection stays open after 502, 503 and 504 when
// its request was read in full. Config.ErrorPages replaces the 502, 503 and
// 504 answers with pages of one's own or redirects.
//
// A slow client cannot hold a connection for long with a request that never
// ends: its head must arrive within RequestHeaderTimeout of its first byte
// (slowloris), and its body may pause for at most IdleTimeout between two
// reads (408 when it does). A body that trickles a byte at a time within
// that pause is bounded in size by MaxRequestBodyBytes, not in time.
//
// A client keep-alive connection can be limited in age and in requests
// (Config.MaxConnectionAge, Config.MaxRequestsPerConnection): the response
// that reaches the limit carries Connection: close, and the client's next
// connection lands on the current balance.
//
// Server.Drain ends every client connection gracefully, for a node's
// shutdown (HAProxy's soft stop, Envoy's drain): idle connections close at
// once, busy ones after their current response, which carries
// Connection: close. No request is cut. It costs the request path an
// atomic load per response and two atomic operations per idle wait; the
// server keeps its connections in a list under a mutex taken once at the
// start and once at the end of each connection.
package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Director chooses the endpoint for every request.
//
// Pick runs on the request path of the connection's goroutine: it should
// not allocate, and it must not block but for a wait that ends when
// req.Context() does (the node's cluster queue), or, watched with
// req.WatchClient, when the client closes (an error Pick returns then
// gets no answer). req is valid only during the call; Pick may ask,
// through req, for changes to what is forwarded (RemoveCookie,
// AddResponseField, RemoveResponseCookie, EditRequest, EditResponse),
// which apply to the endpoint it returns and are forgotten if it is asked
// to pick again. Pick may instead have the proxy answer the request
// itself: it calls req.Respond and returns a nil endpoint and a nil
// error. On success the endpoint has been Acquire()d by Pick; the proxy
// calls ep.Release() exactly once when the exchange ends. connectTimeout
// bounds a new connection to the endpoint (DefaultConnectTimeout when
// <= 0). Returning ErrNoEndpoint (or an error wrapping it, or any error)
// makes the proxy answer 503 (nothing, once the server is closed).
//
// After a connect failure Pick is asked again for the same request
// (Config.Retries); req.Failed then reports the endpoints that failed, which
// a Director should pick around while it has others: a hash policy would
// otherwise pick the same dead endpoint every time. A persistence cookie or
// stick-table entry naming a failed endpoint should be ignored, as HAProxy's
// "option redispatch" breaks persistence. When only failed endpoints are
// left, returning one of them (a retry on it) or an error are both fine:
// an error on such a pick again is answered 502, the connect failure, not
// 503.
type Director interface {
	Pick(req *Request) (ep *upstream.Endpoint, connectTimeout time.Duration, err error)
}

// ErrNoEndpoint is what a Director returns when no endpoint can take the
// request; the client gets a 503.
var ErrNoEndpoint = errors.New("httpproxy: no endpoint available")

// Defaults for zero Config durations.
const (
	DefaultRequestHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout          = 60 * time.Second
	DefaultResponseTimeout      = 60 * time.Second
	DefaultTLSHandshakeTimeout  = 10 * time.Second
	DefaultConnectTimeout       = 5 * time.Second
	DefaultTunnelIdleTimeout    = time.Hour
)

// Defaults for zero Config limits.
const (
	DefaultMaxHeaderBytes = maxHead
	DefaultMaxHeaderCount = maxFields
	DefaultMaxURILength   = 8192
)

// DefaultRetries is the retry count a caller should put in Config.Retries
// when its own configuration leaves it unset (HAProxy's default "retries 3").
// The zero Config does not retry.
const DefaultRetries = 3

// Config is what a listener's proxy needs. A Server holds an immutable copy;
// SetConfig swaps it atomically.
type Config struct {
	Listener string
	Director Director
	// Meter counts the listener's connections and requests and hands
	// them to the access log (meter.Listener); nil: not counted.
	Meter *meter.Listener
	// RequestHeaderTimeout bounds the time from a request's first byte to
	// the end of its head; then the client gets 408 and the connection
	// closes. A new connection that sends nothing for that long is closed
	// quietly (pre-connects; HAProxy's timeout http-request).
	RequestHeaderTimeout time.Duration
	// IdleTimeout bounds the keep-alive wait for the next request (the
	// connection then closes quietly) and every later inactivity of the
	// client: reading a request body, or writing to a client that does not
	// read.
	IdleTimeout time.Duration
	// ResponseTimeout bounds the wait for the endpoint's response head after
	// the request was sent (504), and every later inactivity of the endpoint
	// while the response body streams.
	ResponseTimeout time.Duration
	// MaxConnectionAge bounds the life of a client connection, from accept
	// (0: no bound). The first response the connection gets once it is
	// that old carries "Connection: close", and the connection closes
	// after it; a connection that reaches the age while idle between
	// requests closes quietly then, whatever IdleTimeout says. Clients
	// thus reconnect from time to time and land on the current balance,
	// which keep-alive connections otherwise never do once opened (DESIGN
	// problem 3); nginx's keepalive_time is alike. The closes are recorded
	// with MAX_AGE. A new connection always has its first request served.
	MaxConnectionAge time.Duration
	// MaxRequestsPerConnection bounds the requests of one client
	// connection (0: no bound): the response to the last one carries
	// "Connection: close" and the connection closes after it, like nginx's
	// keepalive_requests. The close is recorded with MAX_REQUESTS.
	MaxRequestsPerConnection int
	// Retries is how many more times a request picks an endpoint and
	// connects when connecting fails (refused, connect timeout,
	// unreachable), before it is answered 502; 0 or less: no retry. Nothing
	// of the request was sent when a connect fails, so every request may
	// be retried, whatever its method or body. Each retry is a new Pick
	// (see Director), from the configuration current then; it is counted
	// in ConnInfo.Retries. A pick again because an apply retired the
	// picked endpoint is not a retry and does not use this budget.
	Retries int
	// ErrorPages replace the proxy's own 502, 503 and 504 answers (see
	// ErrorPage), keyed by status; other keys, and pages that do not pass
	// Validate, are left out. The responses are built once, by NewServer or
	// SetConfig, which copy what they need: answering with them costs no
	// allocation.
	ErrorPages map[int]ErrorPage
	// TLS, when set, makes the listener HTTPS: each client connection
	// completes a TLS handshake with it before its first request, within
	// TLSHandshakeTimeout (default 10s). A connection whose handshake
	// fails is closed and recorded with BAD_REQUEST.
	TLS                 *tls.Config
	TLSHandshakeTimeout time.Duration
	// H2C has a plain listener serve HTTP/2 with prior knowledge too:
	// a connection that starts with the HTTP/2 preface goes to the
	// server's HTTP2 engine (SetHTTP2); others are HTTP/1.1.
	H2C bool
	// Translate has the HTTP2 engine serve every client connection, HTTP/1.x
	// ones too: for listeners that may route to endpoints this engine
	// cannot speak to (HTTP/2 ones).
	Translate bool

	// MaxHeaderBytes bounds a request head, request line through the
	// empty line that ends it; a bigger one is answered 431 and the
	// connection closes. 0, or more than DefaultMaxHeaderBytes (65535, the
	// most the engine takes): DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the field lines of a request head; more are
	// answered 431 and the connection closes. 0: DefaultMaxHeaderCount.
	MaxHeaderCount int
	// MaxURILength bounds the request-target; a longer one is answered 414
	// and the connection closes. 0: DefaultMaxURILength.
	MaxURILength int
	// NormalizePath makes each request's path canonical (RFC 3986
	// §6.2.2: unreserved characters percent-decoded, dot-segments
	// removed) before the Director and the rules see it, and the endpoint
	// is sent that path; MergeSlashes merges runs of '/' into one too
	// (see normalize.go).
	NormalizePath, MergeSlashes bool
	// MaxRequestBodyBytes bounds a request body (0: no bound). A request
	// declaring a longer Content-Length is answered 413 before it is
	// routed, so nothing of it reaches an endpoint; a chunked body is cut
	// when its data would pass the bound, before those bytes go out: the
	// endpoint connection closes, and the client gets 413 unless part of
	// the response already went to it. The client connection closes
	// either way (its body is not read).
	MaxRequestBodyBytes int64
	// TunnelIdleTimeout closes an Upgrade tunnel (WebSocket) that carried
	// no byte either way for this long (HAProxy's "timeout tunnel").
	// 0: DefaultTunnelIdleTimeout.
	TunnelIdleTimeout time.Duration
	// Forwarded picks the headers that tell endpoints who the client is
	// (forwarded.go); the zero value writes X-Forwarded-For,
	// X-Forwarded-Proto and X-Forwarded-Host.
	Forwarded ForwardedHeaders
	// TrustedPeers are the peers (proxies in front) whose forwarding
	// headers are believed and extended rather than replaced; nil: none.
	TrustedPeers Peers
	// ClientFromHeaders takes the client of a request from a trusted
	// peer's forwarding headers (realclient.go): rules, balancing by
	// source and the meter see the client they name.
	ClientFromHeaders bool
	// ClientHeader, with ClientFromHeaders, is the field the trusted peers
	// name the client in (X-Real-IP), read as X-Forwarded-For is, instead
	// of the forwarding headers of the style; "": those.
	ClientHeader string
	// RequestID is the field every request's id goes to the endpoint in
	// (requestid.go: X-Request-ID), and the access log writes the id;
	// "": requests get no id.
	RequestID string
	// RequestIDInResponse, with RequestID, sends the client the id too, in
	// the same field: on the endpoint's response (whose own fields of that
	// name it replaces, unless a rule's response edits set or remove it)
	// and on the proxy's own answers to a request that was given one.
	RequestIDInResponse bool

	pages [3]*builtPage // ErrorPages built, by status-502 (withDefaults)
	lim   headLimits    // the head limits above, defaults applied
}

func (c *Config) withDefaults() *Config {
	n := *c
	if n.RequestHeaderTimeout <= 0 {
		n.RequestHeaderTimeout = DefaultRequestHeaderTimeout
	}
	if n.IdleTimeout <= 0 {
		n.IdleTimeout = DefaultIdleTimeout
	}
	if n.ResponseTimeout <= 0 {
		n.ResponseTimeout = DefaultResponseTimeout
	}
	if n.TLSHandshakeTimeout <= 0 {
		n.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	n.MaxConnectionAge = max(n.MaxConnectionAge, 0)
	n.MaxRequestsPerConnection = max(n.MaxRequestsPerConnection, 0)
	n.Retries = max(n.Retries, 0)
	n.pages = buildErrorPages(n.ErrorPages)
	if n.MaxHeaderBytes <= 0 || n.MaxHeaderBytes > DefaultMaxHeaderBytes {
		n.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if n.MaxHeaderCount <= 0 {
		n.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if n.MaxURILength <= 0 {
		n.MaxURILength = DefaultMaxURILength
	}
	n.MaxRequestBodyBytes = max(n.MaxRequestBodyBytes, 0)
	if n.TunnelIdleTimeout <= 0 {
		n.TunnelIdleTimeout = DefaultTunnelIdleTimeout
	}
	n.lim = headLimits{bytes: n.MaxHeaderBytes, fields: n.MaxHeaderCount, uri: n.MaxURILength,
		normalize: n.NormalizePath, merge: n.MergeSlashes}
	return &n
}

// ConnInfo is reported once per client connection when it ends. It is the
// node's connection record (shared with the TCP proxy): Requests counts the
// request heads accepted on the connection, whether an endpoint or the
// proxy (503, 502, 504) answered them; Cluster and Endpoint are those of the
// last request, empty when none was routed; BytesIn and BytesOut count what
// went over the client socket; Retries counts the connect failures of all
// its requests that were retried on another pick (Config.Retries).
type ConnInfo = conntrack.ConnInfo

// Server proxies the client connections of one HTTP listener.
type Server struct {
	cfg     atomic.Pointer[Config]
	onClose func(*ConnInfo)

	// draining is set by Drain. Busy connections load it once per
	// response (clientConn.ending), idle ones each time they start to wait
	// (clientConn.enterIdle).
	draining atomic.Bool
	// drainReason is the close reason of the ends Drain (NODE_DRAINING)
	// or DrainRemoved (LISTENER_CLOSED) chose, set before draining.
	drainReason atomic.Int32
	// closed is set by Close: no connection parks any more.
	closed atomic.Bool
	// ctx ends on Close (cancel, with upstream.ErrListenerClosed): the
	// dials of the server's requests and their waits in a Director
	// (Request.Context) end with it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// mu guards conns, the connections being served (an intrusive list
	// through clientConn.prev/next), which Drain and Close walk. A
	// connection is added once, when served, and removed once, when it
	// ends (finish, on whichever goroutine ends it): the lock is taken per
	// connection, never per request.
	mu    sync.Mutex
	conns *clientConn

	h2 HTTP2 // serves HTTP/2 connections (bridge.go); nil: none

	setups pace.Gate // connections setting up, for Go

	// stalls counts the waits on endpoints that reached their slice's
	// deadline (endpointStalled). Only tests read it: how often a wait
	// woke tells whether the deadlines it had were the ones meant.
	stalls atomic.Uint64
}

// NewServer returns a server using cfg. onClose, if not nil, is called once
// per client connection when it ends, on the goroutine that ended it (the
// connection's own, or, for a parked one, a timer's, Drain's or Close's);
// it must not block (hand the record to a bounded queue). It may keep the
// *ConnInfo.
func NewServer(cfg *Config, onClose func(*ConnInfo)) *Server {
	s := &Server{onClose: onClose}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.SetConfig(cfg)
	return s
}

// SetConfig swaps the configuration atomically. Each request uses the
// configuration current when its head was read; connections in progress
// keep going.
func (s *Server) SetConfig(cfg *Config) {
	if cfg == nil {
		cfg = &Config{}
	}
	s.cfg.Store(cfg.withDefaults())
}

// TLS is the TLS configuration in use, nil for plain HTTP.
func (s *Server) TLS() *tls.Config { return s.cfg.Load().TLS }

// ServeConn serves one accepted client connection until it ends, then
// closes it and reports its ConnInfo. It blocks; the caller runs it in a
// goroutine. Closing c from another goroutine (the listener was removed)
// ends it within about a second even while it waits for an endpoint's
// answer, with reason LISTENER_CLOSED; a connect or a wait in the
// Director ends with Close. Drain ends it gracefully.
func (s *Server) ServeConn(c net.Conn) {
	peer, _ := proxyproto.Addrs(c)
	s.ServeConnFrom(c, peer, netip.AddrPort{})
}

// ServeConnFrom is ServeConn for a connection on behalf of client, the
// client a PROXY header named, to dest, the destination it named (zero:
// c's local address): Request.ClientAddr and ClientPort, and so rules,
// balancing and forwarding headers, see client instead of the
// connection's peer, the record names it, and PROXY headers sent to
// endpoints carry both. Nothing may have been read from c but that
// header, which must be consumed (proxyproto.Take).
func (s *Server) ServeConnFrom(c net.Conn, client, dest netip.AddrPort) {
	s.serveConn(c, client, dest, false, nil, nil)
}

// serveConn serves c until it ends, or, with async, until it parks (see
// ServeConnAsync).
func (s *Server) serveConn(c net.Conn, client, dest netip.AddrPort, async bool, setUp, done func()) {
	cc := &clientConn{srv: s, c: c, async: async, setUp: setUp, done: done, fd: -1, parkIdx: -1}
	ended := true
	defer func() {
		// Even if serve panics (the node recovers): the connection is
		// untracked and its counts and records are right.
		if ended {
			cc.finish()
		}
	}()
	cfg := s.cfg.Load()
	cc.info.Listener = cfg.Listener
	cc.info.Start = time.Now()
	if m := cfg.Meter; m != nil {
		m.Opened()
		cc.meter = m
	}
	if tc, ok := c.(*net.TCPConn); ok && cfg.TLS == nil {
		// Raw reads and splice work on the socket; over TLS they cannot.
		cc.tcp = tc
		cc.initRaw()
	}
	cc.ip, cc.port = client.Addr().Unmap(), client.Port()
	if dest.IsValid() {
		cc.proxied = &proxied{dest: dest}
	}
	cc.reason = sluicev1.CloseReason_CLOSE_REASON_UNSPECIFIED
	// The handshake comes before track: Drain may touch cc.c from then on,
	// and the handshake replaces it. It is bounded by its own timeout.
	if (cfg.TLS == nil || cc.handshake(cfg)) && !cc.handOff(cfg, true) {
		s.track(cc)
		ended = cc.serve()
	}
}

// finish closes the connection that ended and reports it: to the
// listener's meter, to onClose, and to the done of ServeConnAsync. The
// meter counts it out first, as the TCP listener's does: a client that saw
// its connection close, or a record of it, finds it no longer open.
func (cc *clientConn) finish() {
	s := cc.srv
	if cc.meter != nil {
		cc.meter.Closed()
	}
	if cc.linger {
		cc.lingerClose()
	}
	upstream.CloseConn(cc.c) // not waiting on a TLS client that stopped reading
	if cc.x != nil {
		putExchange(cc.x)
		cc.x = nil
	}
	if s.onClose != nil {
		if cc.ip.IsValid() {
			cc.info.Client = netip.AddrPortFrom(cc.ip, cc.port).String()
		} else if a := cc.c.RemoteAddr(); a != nil {
			cc.info.Client = a.String() // not TCP
		}
		cc.info.Duration = time.Since(cc.info.Start)
		cc.info.Reason = cc.reason
		s.onClose(&cc.info)
	}
	if cc.tracked {
		s.untrack(cc)
	}
	cc.closePrivate()
	if cc.done != nil {
		cc.done()
	}
}

// Drain makes every client connection of the server end gracefully: a
// connection idle in keep-alive (or not yet sent its first request) is
// closed at once; a busy one finishes its current exchange, whose response
// carries "Connection: close", and then closes. Connections accepted after
// Drain are served one request and closed the same way. Drain does not
// wait; it returns at once.
//
// A request is never cut: a connection either closes before any byte of
// a request came, or serves that request in full. A connection whose
// socket holds bytes of a request that it has not read yet is not idle
// for Drain: closing it would reset it, and the request would be lost
// (clientConn.requestWaiting). A request still on its way when the
// connection closes meets the close, as after any keep-alive close; the
// client sends it again on a new connection. Pipelined requests behind the
// one answered with "Connection: close" are not served (the client sends
// them again elsewhere, as after any Connection: close). The closes are
// recorded with reason NODE_DRAINING (closeDraining). Drain is for node
// shutdown and cannot be undone; calling it again does nothing, as does
// DrainRemoved after it.
//
// How idle connections are woken: a connection waiting for the next
// request marks itself idle (clientConn.state) and then loads s.draining;
// Drain sets s.draining and then, under s.mu, takes every connection
// marked idle (compare-and-swap to woken) and sets its read deadline in the
// past, which ends the wait. As both sides store before they load (the
// atomics are sequentially consistent), a connection that starts to wait
// while Drain runs is either seen idle by Drain or sees the flag itself.
// A connection whose wait ended for bytes of a request just as Drain took
// it serves that request (with Connection: close) after re-arming its read
// deadline, once Drain is done with it (see clientConn.leaveIdle).
//
// Parked connections (see ServeConnAsync) are idle too: Drain closes them,
// but for one whose next request came before the parker woke it.
func (s *Server) Drain() { s.drain(closeDraining) }

// DrainRemoved is Drain for a listener removed from the snapshot: its
// connections end as Drain ends them, recorded as LISTENER_CLOSED, and
// the node closes what is left after a grace (Close).
func (s *Server) DrainRemoved() { s.drain(sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED) }

// drain is Drain, the closes recorded as reason.
func (s *Server) drain(reason sluicev1.CloseReason) {
	s.drainReason.CompareAndSwap(0, int32(reason))
	if s.draining.Swap(true) {
		return
	}
	if s.h2 != nil {
		s.h2.Drain(s.drainedAs())
	}
	s.mu.Lock()
	for cc := s.conns; cc != nil; cc = cc.next {
		if cc.state.CompareAndSwap(connIdle, connWoken) {
			cc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.mu.Unlock()
	s.endParked(s.drainedAs(), true)
}

// drainedAs is the close reason of the ends a drain chooses: Drain's or
// DrainRemoved's, whichever came first (closeDraining before either).
func (s *Server) drainedAs() sluicev1.CloseReason {
	if r := sluicev1.CloseReason(s.drainReason.Load()); r != 0 {
		return r
	}
	return closeDraining
}

// aLongTimeAgo is a read deadline that has passed: it ends a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// track adds cc to the connections Drain sees.
func (s *Server) track(cc *clientConn) {
	s.mu.Lock()
	cc.tracked = true
	cc.next = s.conns
	if cc.next != nil {
		cc.next.prev = cc
	}
	s.conns = cc
	s.mu.Unlock()
}

// untrack removes cc from the connections Drain sees.
func (s *Server) untrack(cc *clientConn) {
	s.mu.Lock()
	if cc.prev != nil {
		cc.prev.next = cc.next
	} else {
		s.conns = cc.next
	}
	if cc.next != nil {
		cc.next.prev = cc.prev
	}
	cc.prev, cc.next = nil, nil
	cc.tracked = false
	s.mu.Unlock()
}
