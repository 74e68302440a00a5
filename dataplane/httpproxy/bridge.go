package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file is what another engine needs of this one: the HTTP/2 engine
// (dataplane/h2proxy) serves some client connections of an HTTP listener
// itself, and runs their requests through the same Director, answers,
// edits and error pages as HTTP/1.1 requests. Nothing here is on the
// HTTP/1.1 request path.

// HTTP2 is the engine that serves the client connections of a listener
// that do not speak this engine's HTTP/1.1 (see Server.SetHTTP2).
type HTTP2 interface {
	// ServeConn serves c until it ends and returns why it ended. c has
	// completed its TLS handshake, if any (c is then a *tls.Conn and sni
	// is the server name the client sent). preread holds bytes already
	// read from c (the HTTP/2 connection preface of an h2c client) that
	// come before what c reads. h2 says the client speaks HTTP/2 (ALPN
	// "h2", or the h2c preface); else it speaks HTTP/1.x and the engine
	// serves it whole (Config.Translate). info is the connection's
	// record: the engine counts its requests, bytes and last endpoint in
	// it, on the calling goroutine or guarded as it sees fit, and is done
	// with it when ServeConn returns. client is the client's address and
	// local the address it connected to, which PROXY headers sent to
	// endpoints name: c's peer and local address, or what its PROXY
	// header said.
	ServeConn(c net.Conn, client, local netip.AddrPort, preread []byte, h2 bool, sni []byte, info *ConnInfo) sluicev1.CloseReason
	// Drain ends every connection gracefully (GOAWAY), as Server.Drain
	// does, and every connection handed over later once it served one
	// request; the records say reason (NODE_DRAINING, or LISTENER_CLOSED
	// for a listener removed).
	Drain(reason sluicev1.CloseReason)
}

// SetHTTP2 gives the server the engine for the client connections that
// speak HTTP/2 (ALPN "h2" on a TLS listener whose Config.TLS offers it, or
// the h2c preface when Config.H2C is set), and for every connection when
// Config.Translate is set. Without one, a listener speaks HTTP/1.1 only.
// It is set once, before the server serves.
func (s *Server) SetHTTP2(h HTTP2) { s.h2 = h }

// Config is the configuration in use, with defaults filled in. It must not
// be modified.
func (s *Server) Config() *Config { return s.cfg.Load() }

// h2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// handOff serves cc with the HTTP/2 engine if it is for it, and reports
// whether it did. It is asked once after the TLS handshake (before any
// read) and once when the first bytes of the first request are in the read
// buffer (h2c). cc.reason is set when it served.
func (cc *clientConn) handOff(cfg *Config, first bool) bool {
	h := cc.srv.h2
	if h == nil {
		return false
	}
	var preread []byte
	h2 := false
	switch {
	case first:
		if tc, ok := cc.c.(interface{ ConnectionState() tls.ConnectionState }); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
			h2 = true
		} else if !cfg.Translate || cfg.H2C && cfg.TLS == nil {
			// Plain HTTP/1.1, or h2c to be told from the first bytes.
			return false
		}
	default:
		if !cfg.H2C || cfg.TLS != nil || cc.info.Requests > 0 {
			return false
		}
		if !cc.readPreface(cfg) {
			if !cfg.Translate || cc.reason != 0 {
				return cc.reason != 0
			}
		} else {
			h2 = true
		}
		// The other engine has buffers of its own: the exchange goes
		// back to its pool rather than sit beside them for the
		// connection's life (its read buffer, and the rest once a
		// connection before used them).
		preread = slices.Clone(cc.x.rb[cc.x.rs:cc.x.re])
		putExchange(cc.x)
		cc.x = nil
	}
	cc.setUpDone() // an HTTP/2 connection is set up once it is handed on
	cc.reason = h.ServeConn(cc.c, netip.AddrPortFrom(cc.ip, cc.port), cc.local(), preread, h2, cc.sni, &cc.info)
	return true
}

// readPreface reads until the read buffer holds the HTTP/2 preface or
// something else, and reports whether it is the preface. A client that
// stops in the middle of it for RequestHeaderTimeout is closed (cc.reason
// set).
func (cc *clientConn) readPreface(cfg *Config) bool {
	x := cc.x
	armed := false
	for {
		got := x.rb[x.rs:x.re]
		n := min(len(got), len(h2Preface))
		if string(got[:n]) != h2Preface[:n] {
			return false
		}
		if n == len(h2Preface) {
			return true
		}
		if !armed {
			armed = true
			cc.armRead(cfg.RequestHeaderTimeout, true)
		}
		m, err := cc.c.Read(x.rb[x.re:])
		x.re += m
		cc.info.BytesIn += uint64(m)
		if m == 0 && err != nil {
			cc.reason = clientReason(err)
			return false
		}
	}
}

// Head is a request received by another engine (HTTP/2), to be seen by a
// Director as a Request (Request.Load).
type Head struct {
	Method    string
	Target    string // the request target: path and query ("*" for OPTIONS *)
	Authority string // the Host (":authority" of HTTP/2)
	Header    http.Header
	Client    netip.AddrPort
	TLS       bool
	SNI       []byte // the server name of the client's TLS handshake
	// Proto is an HTTP/1.x client's version as net/http read it,
	// "HTTP/1.0" or "HTTP/1.1"; "" for HTTP/2. The head is read in that
	// version: an HTTP/1.0 head may come without Host, and an HTTP/1.1
	// one has a Host even when Authority is empty (net/http refuses one
	// without), as the HTTP/1.1 engine reads them. An HTTP/2 head without
	// an authority is refused.
	Proto string
	// Forwarded and Trusted are the listener's forwarding style and
	// whether Client is one of its trusted peers (Config.Trusts):
	// ForwardHeader writes the forwarding headers as the HTTP/1.1 engine
	// writes them into a request head.
	Forwarded ForwardedHeaders
	Trusted   bool
	// Config is the listener's configuration (nil: the defaults). Its
	// MaxHeaderBytes, MaxHeaderCount and MaxURILength bound the head as
	// written, with the HTTP/1.1 engine's answers: 431 or 414. With
	// ClientFromHeaders and a Trusted client, the client is the one its
	// forwarding headers name (Request.ClientAddr).
	Config *Config
	// Context is the request's: it ends when the stream or its connection
	// does, and the Request's Context with it (nil: never).
	Context context.Context
}

// ErrForeignHead is Load's error for a head the HTTP/1.1 rules refuse.
var ErrForeignHead = errors.New("httpproxy: request head refused")

// Load makes r a view of h, as if it had come as an HTTP/1.1 head: rules,
// hash keys and cookies read it as they read any request. The head is
// written into a buffer of r's own, reused by the next Load. Header names
// are written in sorted order, each name's values in their order. An
// error (wrapping ErrForeignHead) carries the status and text the HTTP/1.1
// engine would answer with (see StatusOf).
func (r *Request) Load(h *Head) error {
	r.forgetID() // refused or not, the request has none of the last one's
	// Everything is written as given, so what would end a part early (a
	// space, CR or LF) could forge fields: "/ HTTP/1.1\r\nX:" as a target,
	// "a\r\nX: 1" as an authority. With the checks here and on the fields
	// below, the head ends where it was written to, and parseLimited reads
	// what was given.
	switch {
	case !isTokenString(h.Method):
		return &foreignError{errRequestLine}
	case !isTargetString(h.Target):
		return &foreignError{errTarget}
	case !isValue(h.Authority):
		return &foreignError{errHost}
	case h.Proto != "" && h.Proto != "HTTP/1.1" && h.Proto != "HTTP/1.0":
		return &foreignError{errVersion}
	}
	b := r.own[:0]
	b = append(b, h.Method...)
	b = append(b, ' ')
	b = append(b, h.Target...)
	if h.Proto == "HTTP/1.0" {
		b = append(b, " HTTP/1.0\r\n"...)
	} else {
		b = append(b, " HTTP/1.1\r\n"...)
	}
	if h.Authority != "" || h.Proto == "HTTP/1.1" {
		b = append(b, "Host: "...)
		b = append(b, h.Authority...)
		b = append(b, "\r\n"...)
	}
	names := make([]string, 0, len(h.Header))
	for k := range h.Header {
		if !strings.EqualFold(k, "host") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		// What is written must parse back as written: a name that is not
		// a token, or a value with CR or LF, could forge other fields.
		if !isTokenString(k) {
			return &foreignError{errFieldName}
		}
		for _, v := range h.Header[k] {
			if !isValue(v) {
				return &foreignError{errFieldValue}
			}
			b = appendFieldLine(b, k, v)
		}
	}
	b = append(b, "\r\n"...)
	r.own = b
	lim := &defaultLimits
	if h.Config != nil {
		lim = &h.Config.lim
	}
	if len(b) > lim.bytes {
		return &foreignError{tooLarge(b, lim)}
	}
	if e := r.parseLimited(b, lim); e != nil {
		return &foreignError{e}
	}
	r.tls, r.sni, r.ctx = h.TLS, h.SNI, h.Context
	r.fwd.on, r.fwd.style, r.fwd.trusted = true, h.Forwarded, h.Trusted
	r.setClient(netip.AddrPortFrom(h.Client.Addr().Unmap(), h.Client.Port()), h.Config)
	r.setRequestID(h.Config)
	r.forgetFailed()
	return nil
}

func isTokenString(s string) bool  { return s != "" && allIn(s, &isToken) }
func isTargetString(s string) bool { return s != "" && allIn(s, &isTargetByte) }

// foreignError is a refused head and how the HTTP/1.1 engine answers it.
type foreignError struct{ e *statusError }

func (f *foreignError) Error() string { return f.e.Error() }
func (f *foreignError) Unwrap() error { return ErrForeignHead }

// StatusOf returns the status and text of the answer to an error of Load;
// 400 for any other error.
func StatusOf(err error) (int, string) {
	var f *foreignError
	if errors.As(err, &f) {
		return f.e.status, f.e.text
	}
	return 400, "bad request"
}

// Pick asks d for the endpoint of r: what an earlier Pick asked for is
// forgotten first, and the endpoints given to Fail are picked around.
func (r *Request) Pick(d Director) (*upstream.Endpoint, Directed, error) {
	r.resetDirectives()
	if d == nil {
		return nil, Directed{}, ErrNoEndpoint
	}
	ep, timeout, err := d.Pick(r)
	if r.answer != nil {
		if ep != nil && err == nil {
			ep.Release() // the answer wins
		}
		return nil, Directed{Answer: r.answer}, nil
	}
	if err == nil && ep == nil {
		err = ErrNoEndpoint
	}
	return ep, Directed{ConnectTimeout: timeout}, err
}

// Directed is what a Pick decided besides the endpoint.
type Directed struct {
	// Answer, when set, is the proxy's own answer (Request.Respond); there
	// is no endpoint then.
	Answer *Answer
	// ConnectTimeout bounds a new connection to the endpoint.
	ConnectTimeout time.Duration
}

// Fail records that connecting to ep failed for r, or that ep was retired
// under it: a Pick again goes around it (Request.Failed).
func (r *Request) Fail(ep *upstream.Endpoint) { r.failed = append(r.failed, ep) }

// ForgetFailed empties the list Fail adds to, so that r holds no endpoint.
func (r *Request) ForgetFailed() { r.forgetFailed() }

// Idempotent reports whether r may be sent again after an endpoint may have
// seen it (RFC 9110 §9.2.2, or an Idempotency-Key field).
func (r *Request) Idempotent() bool { return r.idempotent() }

// ExpectsContinue reports whether the client asks for 100 Continue before
// it sends the body (Expect: 100-continue, which HTTP/1.0 has not).
func (r *Request) ExpectsContinue() bool { return r.expect100 && r.minor == 1 }

// ForwardHeader adds to dst the fields of r as they go to the endpoint
// that Pick returned, as appendRequestHead writes them for the HTTP/1.1
// engine: hop-by-hop fields, Host, Content-Length and Expect left out (the
// other engine frames the message, and asks the endpoint for 100 Continue
// when ExpectsContinue), the cookies of RemoveCookie taken out, the
// forwarding headers of Load's Head.Forwarded written, and the edits of
// EditRequest applied last.
func (r *Request) ForwardHeader(dst http.Header) {
	h := r.head
	var line []byte
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if f.drop || f.kind != fieldOther && !isForwarding(f.kind) {
			continue
		}
		name := f.name.of(h)
		if len(r.reqEdits) > 0 && dropped(r.reqEdits, name) || r.sendsID(name) {
			continue
		}
		switch {
		case isForwarding(f.kind):
			if r.fwd.keeps(f.kind) {
				addFieldLines(dst, appendForwardedField(line[:0], r, i, f))
			}
		case !r.dropCookies.empty() && equalFold(name, "cookie"):
			line = appendCookieField(line[:0], name, f.value.of(h), &r.dropCookies)
			addFieldLines(dst, line)
		default:
			dst.Add(string(name), string(f.value.of(h)))
		}
	}
	if r.fwd.writes() {
		addFieldLines(dst, appendForwardingFields(line[:0], r))
	}
	if r.idNew {
		addFieldLines(dst, r.appendIDField(line[:0]))
	}
	if len(r.reqEdits) > 0 {
		addFieldLines(dst, appendEdited(line[:0], r.reqEdits))
	}
}

// EditResponseHeader applies to h, the fields of an endpoint's final
// response, what Pick asked for: the Set-Cookie fields of
// RemoveResponseCookie and the fields EditResponse removes go, the fields
// of EditResponse, r's id (Config.RequestIDInResponse, replacing the
// endpoint's, unless those edits set or remove its field) and those of
// AddResponseField are added.
func (r *Request) EditResponseHeader(h http.Header) {
	if !r.dropSetCookies.empty() {
		kept := h["Set-Cookie"][:0]
		for _, v := range h["Set-Cookie"] {
			if !r.dropSetCookies.has(setCookieName([]byte(v))) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(h, "Set-Cookie")
		} else {
			h["Set-Cookie"] = kept
		}
	}
	if len(r.respEdits) > 0 {
		for k := range h {
			if dropped(r.respEdits, []byte(k)) {
				delete(h, k)
			}
		}
		addFieldLines(h, appendEdited(nil, r.respEdits))
	}
	if line := r.relayedIDLine(); line != nil {
		for k := range h {
			if strings.EqualFold(k, r.idName) {
				delete(h, k)
			}
		}
		addFieldLines(h, line)
	}
	addFieldLines(h, r.addResp)
}

// addFieldLines adds to h the complete field lines of b ("Name: value\r\n"
// each), as the edits and AddResponseField keep them.
func addFieldLines(h http.Header, b []byte) {
	for len(b) > 0 {
		i := indexByte(b, '\n')
		if i < 0 {
			return
		}
		line := b[:i]
		b = b[i+1:]
		line = line[:len(line)-1] // CR
		if c := indexByte(line, ':'); c > 0 {
			h.Add(string(line[:c]), string(trimOWS(line[c+1:])))
		}
	}
}

// AppendAnswer appends the HTTP/1.1 response of a (from Directed.Answer)
// to request r: what the HTTP/1.1 engine writes, for a client that keeps
// its connection. The other engine translates it into its own framing.
func (r *Request) AppendAnswer(b []byte, a *Answer) []byte {
	head := string(r.Method()) == "HEAD"
	if a.page != nil {
		return r.appendPage(b, a.page.bytes(1, true, head))
	}
	return a.redir.appendResponse(b, r, netip.AddrPort{}, 1, true)
}

// AppendError appends the HTTP/1.1 response the server gives for its own
// error status (502, 503, 504...) to request r: the configured error
// page, or a short text/plain body, with r's id when the client gets it
// (Config.RequestIDInResponse). head leaves the body out.
func (s *Server) AppendError(b []byte, r *Request, status int, text string, head bool) []byte {
	if page := s.cfg.Load().errorPage(status); page != nil {
		return r.appendPage(b, page.bytes(1, true, head))
	}
	return appendStatusResponse(b, &statusError{status: status, text: text}, r.idLine, 1, true, head)
}
