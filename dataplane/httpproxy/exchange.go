package httpproxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/internal/clock"
	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Sentinels of endpoint I/O that are not plain errors of the endpoint.
var (
	// errClientGone: the client connection was closed from outside while we
	// waited on the endpoint, or the server was closed (Close), which the
	// client connection's close follows. Nothing more is written.
	errClientGone = &statusError{0, "client connection closed", sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED}
	// errClientAbort: reading the request body from the client failed.
	errClientAbort = &statusError{0, "client aborted", sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED}
	// errClientLeft: the client left while its request waited, in the
	// Director (WatchClient) or at the endpoint (endpointStalled).
	errClientLeft = &statusError{0, "client left while its request waited", sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED}
)

const (
	// spliceMin is the body remainder from which a Content-Length body
	// between two TCP connections is spliced rather than copied, where
	// splicing pays (splicePays).
	spliceMin = 64 << 10
	// splicePiece bounds one splice call so deadlines are renewed between.
	splicePiece = 4 << 20
	// MaxInterim bounds the 1xx responses accepted before the final one
	// (the HTTP/2 engine's Upgrade path takes as many).
	MaxInterim = 16
)

// exchange forwards the request whose head is parsed in cc.x.req and its
// response. It returns whether the client connection stays open.
func (cc *clientConn) exchange(cfg *Config) bool {
	x := cc.x
	req := &x.req
	cc.info.Requests++
	x.headReq = string(req.Method()) == "HEAD"
	x.minor = req.minor
	x.keep = !req.closeConn
	x.cfg = cfg
	x.limit = 0
	if x.keep && cfg.MaxRequestsPerConnection > 0 && cc.info.Requests >= uint64(cfg.MaxRequestsPerConnection) {
		x.keep, x.limit = false, closeMaxRequests
	}
	x.reqBody = req.body
	x.reqLeft = req.contentLength
	x.bodySent, x.bodyInWB, x.respStarted, x.early = false, false, false, false
	x.newResponse()
	x.chunk.reset()
	cc.identify(cfg, req)

	if limit := cfg.MaxRequestBodyBytes; limit > 0 && req.body == bodyLength && req.contentLength > limit {
		// Refused before routing: no byte of it reaches an endpoint, and
		// the body, unread, ends the connection.
		x.rs += x.headLen
		x.keep = false
		return cc.answer(errBodyTooLarge)
	}
	idempotent := req.idempotent()
	// A request that will not be replayed if its pooled connection turns
	// out dead first checks the connection (see connect).
	probe := !idempotent || req.body == bodyChunked || req.body == bodyLength && req.contentLength > 0
	ep, e := cc.pick(cfg, req)
	if e != nil {
		x.rs += x.headLen
		if e == errAnswered {
			return cc.respond(req.answer)
		}
		return cc.answer(e)
	}
	x.wb = appendRequestHead(x.wb[:0], req, ep.Addr)
	x.headOut = len(x.wb)
	x.rs += x.headLen
	// From here on the body may follow the head in rb; req's slices stay
	// valid until rb is reused for reading more of it (sendBody).

	// With Expect: 100-continue and no body byte sent yet, the head goes
	// alone and the body follows the endpoint's 100 (or never, if it
	// answers first). A Content-Length of 0 has nothing to wait for.
	expect := req.expect100 && x.minor == 1 && x.reqBody != bodyNone && x.rs == x.re &&
		!(x.reqBody == bodyLength && x.reqLeft == 0)
	if !expect {
		if e := cc.bufferedBody(); e != nil {
			cc.endpointDone(nil, false)
			return cc.answer(e)
		}
	}

	x.start = clock.Now()
	x.hard = x.start.Add(cfg.ResponseTimeout)
	failures, repicks := 0, 0 // connects that failed and were retried; retired picks
	for {
		bc, reused, e := cc.connect(ep, x.connTimeout, probe)
		if e == nil {
			var keep bool
			if keep, e = cc.forward(cfg, ep, bc, reused, expect, idempotent); e == nil {
				cc.endpointDone(nil, false)
				req.forgetFailed()
				return keep
			}
		}
		// Connecting to ep failed (errConnectFailed), or an apply retired
		// ep between the pick and the connect (errDrained). What the
		// endpoint may have received can be sent again (see forward): pick
		// again, from the configuration current now, and around ep
		// (Request.Failed). The head is built again for the new pick (what
		// the Director asks for, and the Host of an HTTP/1.0 request that
		// had none, may differ); the body bytes after it stay. A retired
		// endpoint is picked around a few times so that applies do not
		// fail requests; a failed connect, as many times as the cluster
		// of the endpoint that failed last asks (Config.Retries when it
		// does not say).
		switch {
		case e == errDrained && repicks < maxRepicks:
			repicks++
		case e == errConnectFailed && failures < ep.Retries(cfg.Retries):
			failures++
		default:
			cc.endpointDone(nil, false)
			req.forgetFailed()
			return cc.answer(e)
		}
		req.failed = append(req.failed, ep)
		cc.endpointDone(nil, false)
		if cc.c.SetWriteDeadline(time.Time{}) != nil {
			// The listener closed the client connection while we dialed.
			req.forgetFailed()
			return cc.answer(errClientGone)
		}
		cfg = cc.srv.cfg.Load()
		var pe *statusError
		if ep, pe = cc.pick(cfg, req); pe != nil {
			req.forgetFailed()
			if pe == errAnswered {
				return cc.respond(req.answer)
			}
			if e == errConnectFailed && pe != errClientLeft {
				// Nothing left to try: the answer is the connect failure.
				return cc.answer(e)
			}
			return cc.answer(pe)
		}
		if e == errConnectFailed {
			cc.info.Retries++
			x.mx.Retries++
		}
		x.rebuildRequestHead(ep.Addr)
		// The response wait starts when the request goes out, not before
		// the connects that failed.
		x.start = clock.Now()
		x.hard = x.start.Add(cfg.ResponseTimeout)
	}
}

// identify tells req, a request just parsed, what the Director and the
// forwarded head need of its connection: TLS, the peer and whether it is
// trusted, the client (Config.ClientFromHeaders) and the request's id,
// which the meter gets too. A request refused before its pick (413) is
// logged with its client and id all the same.
func (cc *clientConn) identify(cfg *Config, req *Request) {
	x := cc.x
	req.tls, req.sni, req.ctx = cc.tls, cc.sni, cc.srv.ctx
	req.fwd.on, req.fwd.style, req.fwd.trusted = true, cfg.Forwarded, cc.trustedPeer(cfg)
	req.setClient(netip.AddrPortFrom(cc.ip, cc.port), cfg)
	if req.client != cc.ip {
		x.mx.Client, x.mx.Peer = netip.AddrPortFrom(req.client, req.clientPort), netip.AddrPortFrom(cc.ip, cc.port)
	}
	if cfg.RequestID != "" {
		req.setRequestID(cfg)
		x.logBuf = x.mx.KeepRequestID(x.logBuf, req.id)
	}
}

// pick asks the Director for an endpoint and makes it the exchange's, or
// returns errAnswered when the Director had the proxy answer itself
// (Request.Respond). What an earlier Pick of the request asked for
// (RemoveCookie...) is forgotten first.
func (cc *clientConn) pick(cfg *Config, req *Request) (*upstream.Endpoint, *statusError) {
	x := cc.x
	var ep *upstream.Endpoint
	err := ErrNoEndpoint
	req.watch, req.clientGone = cc, false
	req.resetDirectives() // a pick again starts afresh
	if cfg.Director != nil {
		ep, x.connTimeout, err = cfg.Director.Pick(req)
	}
	req.watch = nil // WatchClient is for the Director's wait only
	if x.mx.Rule = req.rule; req.rule != "" {
		cc.info.Rule = req.rule
	}
	if req.answer != nil {
		if ep != nil && err == nil {
			ep.Release() // the answer wins
		}
		return nil, errAnswered
	}
	if err != nil && req.clientGone {
		return nil, errClientLeft // the Director gave up on it (WatchClient)
	}
	if err != nil || ep == nil {
		if req.routed != nil && x.mx.Cluster == nil {
			// No endpoint: the 503 is the cluster's all the same.
			x.mx.Cluster = req.routed
			cc.info.Cluster = req.routedName
		}
		return nil, errNoEndpointStatus
	}
	x.ep = ep
	x.epIn, x.epOut = 0, 0
	cc.info.Cluster, cc.info.Endpoint = ep.Cluster, ep.Name
	x.mx.Cluster, x.mx.Endpoint = ep.Meter(), ep.Name
	return ep, nil
}

// maxRepicks bounds how often one request picks again because its endpoint
// was retired under it.
const maxRepicks = 3

// endpointDone ends the exchange's use of its endpoint, once: bc (if any) is
// pooled when reusable or closed, and the endpoint's in-flight count is
// released. The relays call it as soon as the response was read in full,
// before its last bytes go to the client, so that the connection is back in
// the pool (and the count right for LEAST_CONN) by the time the client can
// send its next request.
func (cc *clientConn) endpointDone(bc net.Conn, reusable bool) {
	x := cc.x
	ep := x.ep
	if ep == nil {
		return
	}
	x.ep = nil
	ep.Transferred(x.epIn, x.epOut)
	x.epIn, x.epOut = 0, 0
	pooled := upstream.Pooled{Raw: x.epRaw, Deadline: x.epArmed}
	if bc != x.epConn {
		pooled = upstream.Pooled{}
	}
	// Only a response read in full pools its connection.
	pooled.Probe = reusable && (x.headReq || x.resp.status == 204 || x.resp.status == 304)
	x.epConn, x.epRaw, x.epArmed = nil, nil, time.Time{}
	switch {
	case bc == nil:
	case reusable && x.private:
		cc.park(ep, bc, pooled.Raw, pooled.Probe)
	case reusable:
		ep.PutIdle(bc, pooled)
	default:
		ep.Close(bc)
	}
	ep.Release()
}

// bodyRead is endpointDone for a response read in full: the connection is
// reusable if the endpoint said so and sent nothing beyond the body.
func (cc *clientConn) bodyRead(bc net.Conn) {
	x := cc.x
	cc.endpointDone(bc, x.reusable && x.be == x.bs)
}

// answer ends the exchange with the proxy's own response e, or the error
// page configured for its status. The connection stays open if the client
// wants it, its request was read in full and no connection limit ends it.
// Once the server is closed (its listener removed, or the node stopping,
// which also shuts the endpoints' connections and ends the waits in the
// Director), no answer goes out: the client connection closes, as every
// other one of the server's does.
func (cc *clientConn) answer(e *statusError) bool {
	x := cc.x
	if e.status != 0 && cc.srv.closed.Load() {
		e = errClientGone
	}
	if e.status == 0 {
		cc.reason = e.reason
		return false
	}
	if x.respStarted {
		// Part of the response went out: all we can do is cut it short.
		cc.reason = e.reason
		return false
	}
	cc.info.Fail(e.reason)
	keep := x.keep && cc.skipBufferedBody()
	if keep && cc.ending() {
		keep = false
	}
	var err error
	x.mx.Status = e.status
	if page := x.cfg.errorPage(e.status); page != nil {
		out := page.bytes(x.minor, keep, x.headReq)
		x.mx.Status = ResponseStatus(out) // a page may redirect
		err = cc.write(x.withOwnFields(out))
	} else {
		x.wb = appendStatusResponse(x.wb[:0], e, x.req.idLine, x.minor, keep, x.headReq)
		err = cc.write(x.wb)
	}
	x.wb = x.wb[:0]
	if err != nil {
		cc.reason = clientReason(err)
		return false
	}
	if !keep {
		cc.reason = e.reason
		cc.linger = true
	}
	return keep
}

// withOwnFields returns page, a fixed answer to the exchange's request,
// with the request's own fields (Request.appendPage), in x.wb when it has
// any.
func (x *exchange) withOwnFields(page []byte) []byte {
	if !x.req.addsOwnFields() {
		return page
	}
	x.wb = x.req.appendPage(x.wb[:0], page)
	return x.wb
}

// errAnswered is pick's "the Director answered the request: see
// Request.Respond".
var errAnswered = &statusError{0, "answered by the director", 0}

// respond ends the exchange with the Director's answer a, which keeps the
// connection open as answer does.
func (cc *clientConn) respond(a *Answer) bool {
	x := cc.x
	keep := x.keep && cc.skipBufferedBody()
	if keep && cc.ending() {
		keep = false
	}
	var out []byte
	if a.page != nil {
		out = x.withOwnFields(a.page.bytes(x.minor, keep, x.headReq))
	} else {
		var local netip.AddrPort // only a request without Host needs it
		if len(x.req.Host()) == 0 {
			local = cc.local()
		}
		x.wb = a.redir.appendResponse(x.wb[:0], &x.req, local, x.minor, keep)
		out = x.wb
	}
	x.mx.Status = ResponseStatus(out)
	if x.mx.Status >= 400 || a.refusal != 0 {
		// A rule refused the request (deny, or a page of its own), maybe
		// with a redirect to an error page.
		cc.info.Fail(sluicev1.CloseReason_CLOSE_REASON_DENIED)
	}
	err := cc.write(out)
	x.wb = x.wb[:0]
	if err != nil {
		cc.reason = clientReason(err)
		return false
	}
	if !keep {
		cc.reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
		if x.limit != 0 {
			cc.reason = x.limit
		}
		cc.linger = true
	}
	return keep
}

// Close reasons of the connection limits.
const (
	closeMaxAge      = sluicev1.CloseReason_CLOSE_REASON_MAX_AGE
	closeMaxRequests = sluicev1.CloseReason_CLOSE_REASON_MAX_REQUESTS
)

// ending reports whether the connection ends after this exchange although
// the client wants it kept: the server is draining (Server.Drain), or the
// connection reached its MaxConnectionAge. It is asked when the response
// head is built, so that a request already in flight when Drain is called
// gets Connection: close. x.limit gets the reason unless set.
func (cc *clientConn) ending() bool {
	if cc.srv.draining.Load() {
		if cc.x.limit == 0 {
			cc.x.limit = cc.srv.drainedAs()
		}
		return true
	}
	return cc.aged()
}

// aged reports whether the connection has reached the MaxConnectionAge of
// the exchange's configuration, which then ends it after this exchange. It
// reads the clock only when the limit is set.
func (cc *clientConn) aged() bool {
	x := cc.x
	age := x.cfg.MaxConnectionAge
	if age <= 0 || time.Since(cc.info.Start) < age {
		return false
	}
	if x.limit == 0 {
		x.limit = closeMaxAge
	}
	return true
}

// skipBufferedBody consumes what is left of the request body if it is all
// in the read buffer, and reports whether the request is now read in full.
func (cc *clientConn) skipBufferedBody() bool {
	x := cc.x
	switch x.reqBody {
	case bodyNone:
		return true
	case bodyLength:
		if x.reqLeft <= int64(x.re-x.rs) {
			x.rs += int(x.reqLeft)
			x.reqLeft = 0
			x.reqBody = bodyNone
			return true
		}
	}
	return false
}

// forward sends the request (its head, and what of its body is buffered,
// are in x.wb) to ep over bc and relays the response. It returns whether
// the client connection stays open; or, with keep false, errConnectFailed
// or errDrained when a request sent again on a fresh connection (see
// below) could not connect, in which case nothing was answered, x.wb still
// holds the head and the buffered body, and the caller may pick again.
// Release of ep is the caller's.
func (cc *clientConn) forward(cfg *Config, ep *upstream.Endpoint, bc net.Conn, reused, expect, idempotent bool) (keep bool, redial *statusError) {
	x := cc.x
	retried := false
	for {
		gotByte := false
		e := cc.send(bc, expect)
		if e != nil && cc.answeredEarly(bc, e, reused) {
			e = nil
		}
		if e == nil {
			if expect {
				cc.watchBody(bc)
			}
			e, gotByte = cc.readResponseHead(bc, expect)
			cc.endBodyWatch(bc)
			if e == errContinue || e == errBodyCame {
				// The endpoint wants the body, or the client sent it
				// without waiting any longer (HAProxy forwards it then
				// too: an endpoint may read it without sending 100). A
				// 100 that comes later goes to the client as any 1xx.
				gotByte = gotByte || e == errContinue
				expect = false
				if e = cc.sendBody(bc); e == nil {
					x.hard = time.Now().Add(cfg.ResponseTimeout)
					cc.armEndpoint(bc, time.Now())
				}
				// (answeredEarly arms the wait for the answer itself.)
				if e == nil || cc.answeredEarly(bc, e, reused) {
					e, _ = cc.readResponseHead(bc, false)
				}
			}
		}
		// What a reused connection gives first may have been sent before
		// the request arrived, not for it (see probeIdleAfter): a 408 that
		// times the connection out, or bytes that are not an answer at
		// all, such as a body that came after the head of an answer to
		// HEAD. Neither goes to the client when the request can be sent
		// again, as Go's Transport does with the 408. A 408 to a request
		// that cannot is its answer: such a request was sent right after
		// a check that the connection held nothing (connect).
		stale := reused && (e == nil && x.resp.status == 408 || e == errRespStatus || e == errRespMalformed)
		retry := reused && !retried && (!gotByte || stale) && !x.bodySent && idempotent && !ep.Draining() && len(x.wb) == x.headOut
		if e == nil && !(stale && retry) {
			x.mx.FirstByte = time.Since(x.mx.Start)
			ep.Responded(x.resp.status)
			if x.resp.status == 101 {
				return cc.tunnel(ep, bc), nil
			}
			return cc.relayResponse(ep, bc), nil
		}
		if retry && (stale || e.status == 502 && ep.ClosedBy(bc) == upstream.NotClosedHere) {
			// A pooled connection the endpoint had closed while idle, or
			// that held stale bytes: try once more on a fresh one. Nothing
			// of the body was consumed, but the endpoint may have acted on
			// the head before closing, so only idempotent requests (RFC
			// 9110 §9.2.2) are sent again. x.wb must still hold the head
			// (sendChunkedBody reuses it; so does a 1xx forwarded to the
			// client). A request whose connection an operator shut down,
			// or that was closed because its endpoint went down, is not
			// sent again: ending it was the point.
			ep.Close(bc)
			retried, x.early = true, false
			x.bs, x.be, x.bscan = 0, 0, 0
			bc, reused, e = cc.dial(ep, x.connTimeout)
			if e != nil {
				// As safe to send to another endpoint as to this one.
				return false, e
			}
			continue
		}
		e = cc.endpointFailed(ep, bc, e)
		if conntrack.EndpointsFault(e.reason) {
			// The client gets a 5xx in the endpoint's place. (One cut
			// short after its head went out is not counted here: its
			// status was.)
			ep.Failed()
		}
		return cc.answer(e), nil
	}
}

// endpointFailed ends the exchange's use of ep and bc after e, and returns
// the error as the client should hear it: a connection that an operator
// shut down (sluicectl shutdown-sessions), that was closed because its
// endpoint went down (on_down: SHUTDOWN_SESSIONS), or that the drain of
// its endpoint closed, did not fail by the endpoint's fault. (A drain
// closes connections here, which fails their use with net.ErrClosed, an
// errServerIO; one that the endpoint closed or reset meanwhile, an
// errServerClosed, was the endpoint's doing.)
func (cc *clientConn) endpointFailed(ep *upstream.Endpoint, bc net.Conn, e *statusError) *statusError {
	by := upstream.NotClosedHere
	if e.status == 502 {
		by = ep.ClosedBy(bc)
	}
	cc.endpointDone(bc, false)
	switch {
	case by == upstream.ClosedByShutdown:
		return errShutdown
	case by == upstream.ClosedOnDown:
		return errEndpointDown
	case e == errServerIO && ep.Draining():
		return errDrained
	}
	return e
}

// errAnsweredEarly is bodyStalled's "the endpoint stopped taking the
// request and its answer waits": forward reads the answer (answeredEarly).
var errAnsweredEarly = &statusError{502, "the endpoint answered before it took the request", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}

// answeredEarly reports whether e, which ended the sending of the request
// over bc, is the endpoint answering before it took all of it, as RFC 9112
// §9.5 lets it (a 413, a 401 to an upload): it stopped reading and its
// final answer waits (errAnsweredEarly), or the write or the response
// timeout met the close or the reset that came after the answer, which
// stays readable. Only paths that failed or stalled look (earlyAnswer);
// on a pooled connection (reused) bytes that came before any of the body
// went may be stale rather than an answer, and what failed there is left
// to forward's retry. The wait for the answer starts now. The request,
// answered, is not sent again (the response has come); relayResponse
// closes the client connection after it unless the client's body was read
// in full, and never pools the endpoint connection (x.early).
func (cc *clientConn) answeredEarly(bc net.Conn, e *statusError, reused bool) bool {
	x := cc.x
	switch e {
	case errAnsweredEarly:
	case errServerClosed, errServerIO, errResponseTimeout:
		if reused && !x.bodySent || !cc.earlyAnswer(bc) {
			return false
		}
	default:
		return false
	}
	x.early = true
	x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
	cc.armEndpoint(bc, time.Now())
	return true
}

// earlyAnswer reports whether the endpoint connection bc holds, unread,
// the start of a final answer (finalAnswerStarts): the endpoint answered
// while the request was still going to it (see answerSeen).
func (cc *clientConn) earlyAnswer(bc net.Conn) bool {
	return finalAnswerStarts(cc.answerSeen(bc))
}

// finalAnswerStarts reports whether b, the start of what the endpoint sent,
// goes past its interim (1xx) responses, which are no answer: they are
// forwarded once the request went, as ever (readResponseHead). Bytes that
// are no response at all count, for readResponseHead to refuse.
func finalAnswerStarts(b []byte) bool { return finalAnswerAt(b) >= 0 }

// finalAnswerAt is where in b the final answer starts (finalAnswerStarts),
// or -1 when b does not go past its interim responses yet.
func finalAnswerAt(b []byte) int {
	at := 0
	for len(b) > at {
		if len(b)-at < len("HTTP/1.1 1") {
			return -1 // more to come, or nothing to tell an answer by
		}
		if b[at+9] != '1' {
			return at
		}
		end, _ := findHeadEnd(b, at)
		if end <= 0 {
			return -1
		}
		at = end
	}
	return -1
}

// refusalCloses reports whether b, the start of what the endpoint sent,
// goes on to the whole of a final answer that refuses the request and
// closes the connection: an error status (a 413 or a 401 to an upload)
// with Connection: close, or from HTTP/1.0 without keep-alive, and no body
// or all of its Content-Length. That is the answer RFC 9112 §9.5 has a
// client stop sending the body at, as nginx, Go's net/http and Python's
// http.server give it to a body they will not read. Any other answer may
// still want the body: an endpoint that answers as it reads, or one that
// keeps the connection and so reads the rest. So may one whose end is not
// in b yet: an endpoint may read the body before it ends its answer.
func refusalCloses(b []byte) bool {
	at := finalAnswerAt(b)
	if at < 0 {
		return false
	}
	end, _ := findHeadEnd(b, at)
	if end < 0 {
		return false
	}
	r := response{fields: make([]field, maxFields)} // not x.resp's: they are the request's too
	if r.parse(b[at:end], false) != nil || r.status < 400 || r.reusable {
		return false
	}
	return r.body == bodyNone || r.body == bodyLength && int64(len(b)-end) >= r.contentLength
}

// errContinue is readResponseHead's "100 Continue came, send the body";
// errBodyCame its "the client sent the body it was asked to hold back"
// (watchBody).
var (
	errContinue = &statusError{100, "continue", 0}
	errBodyCame = &statusError{100, "request body sent without 100 Continue", 0}
)

// endBodyWatch ends the watch watchBody started, if any, once its
// goroutine is done: the client may then be read again, and bc has its
// slice deadline back if the watch had moved it.
func (cc *clientConn) endBodyWatch(bc net.Conn) {
	x := cc.x
	if x.bodyWatch == nil {
		return
	}
	cc.c.SetReadDeadline(aLongTimeAgo) // wakes the watch
	<-x.bodyWatch
	x.bodyWatch = nil
	cc.rdl = aLongTimeAgo   // the next read of the client arms its own
	x.epArmed = time.Time{} // and bc's, as the watch may have moved it
	if x.bodyCame.Swap(false) {
		cc.armEndpoint(bc, time.Now())
	}
}

// bufferedBody appends to x.wb the part of the request body already read
// with the head, as far as it fits, so that head and a small body leave in
// one write.
func (cc *clientConn) bufferedBody() *statusError {
	x := cc.x
	switch x.reqBody {
	case bodyLength:
		n := x.re - x.rs
		if int64(n) > x.reqLeft {
			n = int(x.reqLeft)
		}
		if room := cap(x.wb) - len(x.wb); n > room {
			n = room
		}
		x.wb = append(x.wb, x.rb[x.rs:x.rs+n]...)
		x.rs += n
		x.reqLeft -= int64(n)
		x.bodyInWB = n > 0
		if x.reqLeft == 0 {
			x.reqBody = bodyNone
		}
	case bodyChunked:
		n, out, err := x.chunk.decode(x.rb[x.rs:x.re], x.wb, true)
		x.wb = out
		x.rs += n
		x.bodyInWB = n > 0
		if err != nil {
			return errChunked
		}
		if x.bodyOverLimit() {
			return errBodyTooLarge
		}
		if x.chunk.done() {
			x.reqBody = bodyNone
		}
	}
	return nil
}

// probeIdleAfter is how long a connection sits pooled before it is checked
// (alive) for every request, and not only for those that cannot be
// replayed. An endpoint writes on an idle connection when it times it out
// (a 408 before it closes), and an answer's body that followed its head to
// HEAD, 204 or 304 may arrive late: the next request on the connection
// would read those bytes as its answer. The check is one system call, so
// the keep-alive path, where a connection goes out again within
// milliseconds of its last answer, does without it; what arrives that
// early is caught after the fact (see forward), but for a whole answer,
// which would pass for the next request's: so a connection whose last
// answer had no body by its method or status, after which a late body
// is the likely fault, is checked however soon it goes out (Pooled.Probe).
// A connection that sat for probeIdleAfter costs at most four checks a
// second; endpoints time out idle connections after a second or more.
const probeIdleAfter = 250 * time.Millisecond

// connect takes a pooled connection to ep, or dials one. probe checks a
// pooled connection is still open, and holds no bytes, before a request
// that cannot be replayed is sent on it; one pooled for probeIdleAfter, or
// whose last answer had no body by its method or status (Pooled.Probe),
// is checked whatever the request.
func (cc *clientConn) connect(ep *upstream.Endpoint, timeout time.Duration, probe bool) (net.Conn, bool, *statusError) {
	if ep.SendProxy() != 0 {
		// Only a connection that carried this client's header will do.
		if bc, raw, idle, lateBody := cc.unpark(ep, cc.x.start); bc != nil {
			if !probe && !lateBody && idle < probeIdleAfter || alive(bc) {
				cc.x.private = true
				cc.x.epConn, cc.x.epRaw, cc.x.epArmed = bc, raw, time.Time{}
				return bc, true, nil
			}
			ep.Close(bc)
		}
		return cc.dial(ep, timeout)
	}
	for {
		c, pooled, since := ep.GetIdleSince()
		if c == nil {
			break
		}
		if (probe || pooled.Probe || cc.x.start.Sub(since) >= probeIdleAfter) && !alive(c) {
			ep.Close(c)
			continue
		}
		cc.x.private = false
		cc.x.epConn, cc.x.epRaw, cc.x.epArmed = c, pooled.Raw, pooled.Deadline
		return c, true, nil
	}
	return cc.dial(ep, timeout)
}

func (cc *clientConn) dial(ep *upstream.Endpoint, timeout time.Duration) (net.Conn, bool, *statusError) {
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	var hb [proxyproto.MaxV1]byte
	hdr := ep.AppendProxyHeader(hb[:0], netip.AddrPortFrom(cc.ip, cc.port), cc.local())
	cc.x.private = len(hdr) > 0
	start := time.Now()
	bc, err := ep.DialWithHeader(cc.srv.ctx, timeout, false, hdr)
	if err == nil {
		cc.x.mx.Connect = time.Since(start)
	} else {
		if cc.srv.closed.Load() {
			return nil, false, errClientGone // Close ended the dial
		}
		if errors.Is(err, upstream.ErrClosed) {
			return nil, false, errDrained
		}
		return nil, false, errConnectFailed
	}
	cc.x.epConn, cc.x.epRaw, cc.x.epArmed = bc, cc.rawConnOf(bc), time.Time{}
	return bc, false, nil
}

// send writes x.wb (the head, maybe with the start of the body) and, unless
// expect, the rest of the request body.
func (cc *clientConn) send(bc net.Conn, expect bool) *statusError {
	x := cc.x
	cc.armEndpoint(bc, x.start) // one clock read per exchange on the fast path
	if x.bodyInWB {
		x.bodySent = true
	}
	pace.Batch()
	// All of the request, or all of it before 100 Continue: the response
	// comes next. The wait for it is writeEndpoint's, but for a request
	// with Expect, whose wait watches the client too (watchBody).
	whole := expect || x.reqBody == bodyNone
	if err := cc.writeEndpoint(bc, x.wb, whole && !expect); err != nil {
		return endpointError(err)
	}
	if whole {
		return nil
	}
	if e := cc.sendBody(bc); e != nil {
		return e
	}
	// The body streamed for a while: the response wait starts now.
	x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
	cc.armEndpoint(bc, time.Now())
	return nil
}

// answerWatchDelay is how long a request body may stream before the
// endpoint is watched for an early answer (watchAnswer): a body that is
// all sent sooner, as nearly every body is, costs no watch, and an answer
// to a longer one reaches its client at most this much later than it
// could.
const answerWatchDelay = 10 * time.Millisecond

// maxAnswerWatches bounds how many times one body is watched for an early
// answer: what woke a watch may be no refusal yet (a 100 Continue, a head
// that is still coming, TLS records that carry no answer).
const maxAnswerWatches = 3

// sendBody forwards the rest of the request body from the client.
//
// An endpoint may answer before it took the whole body (RFC 9112 §9.5):
// a 413 or a 401 to an upload, from an endpoint that then reads on and
// discards what comes (nginx's lingering close) or stops reading. Once
// the body streamed for answerWatchDelay, the first wait for more of it
// starts a watch of the endpoint connection (watchAnswer). An answer that
// refuses the request and closes (refusalCloses) ends the sending:
// forward reads it, and it reaches the client now rather than once the
// client sent the rest. The client connection closes after it, its body
// not all read, as nginx closes one it refused. Other bytes wait for the
// body to end, as before: a 100 Continue, a success sent early, an answer
// that keeps the connection.
func (cc *clientConn) sendBody(bc net.Conn) *statusError {
	x := cc.x
	if x.reqBody == bodyNone {
		return nil
	}
	x.answerBC, x.answerDue = bc, time.Now().Add(answerWatchDelay)
	for watches := 1; ; watches++ {
		var e *statusError
		switch x.reqBody {
		case bodyLength:
			e = cc.sendLengthBody(bc)
		case bodyChunked:
			e = cc.sendChunkedBody(bc)
		}
		cc.endAnswerWatch()
		if e != errAnswerCame {
			return e
		}
		seen := cc.answerSeen(bc)
		if refusalCloses(seen) {
			return errAnsweredEarly
		}
		if watches < maxAnswerWatches {
			// Watched for more than what is there: over plain TCP, the
			// bytes looked at are still on the socket.
			queued := 0
			if _, plain := bc.(*net.TCPConn); plain {
				queued = len(seen) - (x.be - x.bs)
			}
			cc.watchAnswer(bc, queued)
		}
	}
}

// errAnswerCame is a body read's "the endpoint sent something while the
// client was waited for" (watchAnswer): sendBody looks at what it sent.
// It never reaches a client.
var errAnswerCame = &statusError{502, "the endpoint sent bytes while the request body came", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}

// answerWatchDue starts the watch of the endpoint for an early answer
// when err, which ended a wait for more of the request body, is the
// deadline that armBodyRead set for it, and reports whether it did: the
// wait then goes on.
func (cc *clientConn) answerWatchDue(err error) bool {
	x := cc.x
	if x.answerDue.IsZero() || !cc.rdl.Equal(x.answerDue) || !isTimeout(err) {
		return false
	}
	x.answerDue = time.Time{}
	cc.watchAnswer(x.answerBC, 0)
	return true
}

// answerCame reports whether the watch of the endpoint saw it send
// (watchAnswer), which ends the wait for the client with errAnswerCame.
// Asked once the client's read deadline is armed: the watch may have moved
// it before, to wake a wait that had not started yet.
func (cc *clientConn) answerCame() bool { return cc.x.answerCame.Load() }

// endAnswerWatch ends the watch of the endpoint, if any, and the wait to
// start one.
func (cc *clientConn) endAnswerWatch() {
	cc.x.answerDue, cc.x.answerBC = time.Time{}, nil
	cc.stopAnswerWatch()
}

// stopAnswerWatch ends the watch of the endpoint, if any, once its
// goroutine is done. The endpoint connection's read deadline is the next
// read's to arm (armEndpoint), and the client's too: the watch may have
// moved it.
func (cc *clientConn) stopAnswerWatch() {
	x := cc.x
	if x.answerWatch == nil {
		return
	}
	x.answerWatch()
	x.answerWatch = nil
	x.answerCame.Store(false)
	cc.rdl = aLongTimeAgo
}

func (cc *clientConn) sendLengthBody(bc net.Conn) *statusError {
	x := cc.x
	// Buffered bytes that did not fit next to the head.
	if n := x.re - x.rs; n > 0 && x.reqLeft > 0 {
		if int64(n) > x.reqLeft {
			n = int(x.reqLeft)
		}
		x.bodySent = true
		if err := cc.writeEndpoint(bc, x.rb[x.rs:x.rs+n], false); err != nil {
			return endpointError(err)
		}
		x.rs += n
		x.reqLeft -= int64(n)
	}
	if x.rs == x.re {
		x.rs, x.re = 0, 0
	}
	x.epMSS, x.askEpMSS = 0, false // this body's endpoint connection is asked anew
	// A body larger than the client read buffer (4 KiB) that is copied
	// goes through a buffer of a response body's size (16 KiB): through
	// the read buffer, 1 MiB uploads cost the node twice the CPU, and
	// 32 KiB ones took eight reads where they now take two. Once a read
	// fills that one, the rest goes through a big buffer (68 KiB), as a
	// large response body does (bulkBuffer): a client that sends slowly
	// holds no more than 16 KiB while it is waited for.
	buf, own := x.rb, false
	defer func() {
		if own {
			putBuffer(buf)
		}
	}()
	filled := false // the last read filled buf
	// Whether splicing pays is the client's to say, once per body.
	splices := x.reqLeft >= spliceMin && cc.tcp != nil && splicePays(cc.tcp)
	for x.reqLeft > 0 {
		x.bodySent = true
		if splices && x.reqLeft >= spliceMin && !pipesShort() {
			// Splice from the client to the endpoint (spliceRequest).
			in, err, clientSide, ok := cc.spliceRequest(bc, min(x.reqLeft, splicePiece))
			if ok {
				cc.info.BytesIn += uint64(in)
				x.reqLeft -= in
				switch {
				case err == nil:
					x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
					continue
				case clientSide:
					return cc.bodyError(err)
				case errors.Is(err, net.ErrClosed):
					return cc.bodyError(err) // closed under us: see there
				}
				return endpointError(err)
			}
		}
		switch {
		case x.reqLeft <= int64(len(buf)):
		case !own:
			buf, own = bbClass.get(), true
		case filled && len(buf) < bigBufSize:
			putBuffer(buf)
			buf = bigClass.get()
		}
		// Out of the big buffer, whole segments of the endpoint's
		// socket, as readBody reads for the client.
		room := len(buf)
		bulk := room >= bigBufSize && x.epRaw != nil && bc == x.epConn
		if bulk {
			room = tcpseg.Fit(room, int(x.epMSS))
		}
		p := buf[:min(int64(room), x.reqLeft)]
		n, err := cc.readClient(p)
		if err != nil {
			return cc.bodyError(err)
		}
		filled = n == len(p)
		if x.askEpMSS = bulk && n == room; x.askEpMSS {
			fullRead(n)
		}
		// The wait for the client was the client's: the endpoint's
		// starts now (a TLS write would fail at a deadline passed
		// meanwhile, and leave the connection unusable).
		x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
		if err := cc.writeEndpoint(bc, p[:n], false); err != nil {
			return endpointError(err)
		}
		x.reqLeft -= int64(n)
	}
	x.reqBody = bodyNone
	return nil
}

func (cc *clientConn) sendChunkedBody(bc net.Conn) *statusError {
	x := cc.x
	x.wb = x.wb[:0]
	// The last read: whether it filled the room it had, and what it
	// brought.
	filled, last := false, bbSize
	for {
		n, out, err := x.chunk.decode(x.rb[x.rs:x.re], x.wb, true)
		x.wb = out
		x.rs += n
		if err != nil {
			return errChunked
		}
		if x.bodyOverLimit() {
			return errBodyTooLarge // before the bytes past it go out
		}
		if x.chunk.done() || len(x.wb) > 0 {
			x.bodySent = true
			if err := cc.writeEndpoint(bc, x.wb, false); err != nil {
				return endpointError(err)
			}
			x.wb = x.wb[:0]
			if x.chunk.done() {
				x.reqBody = bodyNone
				return nil
			}
			continue
		}
		// The decoder needs more input.
		x.bulkChunked(filled, last, true)
		if x.re == len(x.rb) || x.rs == x.re {
			x.rb, x.rs, x.re = growRead(x.rb, x.rs, x.re)
		}
		p := x.rb[x.re:]
		m, rerr := cc.readClient(p)
		if rerr != nil {
			return cc.bodyError(rerr)
		}
		filled, last = m == len(p), m
		x.re += m
		x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
	}
}

// bodyOverLimit reports whether the chunked request body decoded so far
// passed Config.MaxRequestBodyBytes.
func (x *exchange) bodyOverLimit() bool {
	limit := x.cfg.MaxRequestBodyBytes
	return limit > 0 && x.chunk.data > limit
}

// bodyError maps a failure to read the request body from the client.
func (cc *clientConn) bodyError(err error) *statusError {
	if isTimeout(err) {
		if cc.answerCame() {
			return errAnswerCame
		}
		return errBodyTimeout
	}
	if errors.Is(err, net.ErrClosed) {
		// A closed client connection refuses deadlines; otherwise the
		// endpoint's was closed under us (drain or shutdown) while the
		// body was spliced.
		if cc.c.SetWriteDeadline(time.Time{}) != nil {
			return errClientGone
		}
		return errDrained
	}
	return errClientAbort
}

// armEndpoint sets bc's deadline for the next step: the hard deadline, but
// at most closeCheckInterval away so that a client closed from outside is
// noticed (endpointStalled).
//
// A deadline already set on the connection (x.epArmed), at most an eighth
// of the wait before the one wanted, is kept: the wait's slice then ends
// that much early at worst, and endpointStalled arms the next. A pooled
// connection that goes out again within milliseconds, as on the
// keep-alive path, so costs no timer update per request.
func (cc *clientConn) armEndpoint(bc net.Conn, now time.Time) {
	x := cc.x
	dl := now.Add(closeCheckInterval)
	if x.hard.Before(dl) {
		dl = x.hard
	}
	if x.answerWatch != nil {
		// The read deadline is the watch's (watchAnswer); a TLS write's
		// is set before it (see below).
		if _, ok := bc.(*net.TCPConn); ok {
			bc.SetWriteDeadline(dl)
		}
		return
	}
	if _, ok := bc.(*net.TCPConn); ok {
		if bc == x.epConn {
			if !x.epArmed.After(dl) && dl.Sub(x.epArmed) <= dl.Sub(now)/8 {
				return
			}
			x.epArmed = dl
		}
		bc.SetDeadline(dl)
		return
	}
	// A TLS write that times out leaves the connection unusable: writes
	// get the hard deadline, which writeEndpoint sets before each, so a
	// client closed from outside is noticed only when a read slice ends,
	// or at the hard deadline.
	bc.SetReadDeadline(dl)
}

// endpointStalled runs when an endpoint operation hit its slice deadline. It
// returns the error that ends the wait, or nil after arming the next slice.
func (cc *clientConn) endpointStalled(bc net.Conn) *statusError {
	cc.srv.stalls.Add(1)
	if !time.Now().Before(cc.x.hard) {
		return errResponseTimeout
	}
	// A closed connection refuses deadlines: a cheap way to ask whether
	// the listener closed the client connection under us. A request
	// served inline holds the connection's read lock, under which a Close
	// from outside waits for it to end: it ends once its server is
	// closed too, which comes first (see Server.Close).
	if err := cc.c.SetWriteDeadline(time.Time{}); err != nil || cc.srv.closed.Load() {
		return errClientGone
	}
	// A client that left gets nothing more: closing the endpoint's
	// connection (endpointFailed) ends the request there too.
	if cc.clientLeft(cc.x.req.abortOnClose) {
		return errClientLeft
	}
	cc.armEndpoint(bc, time.Now())
	return nil
}

// stallBytes is what an endpoint may take of a request during a whole
// closeCheckInterval and still count as having stopped reading it
// (bodyStalled): the kernel of one that stopped still takes a little now
// and then, as it compacts its receive queue.
const stallBytes = 64 << 10

// bodyStalled runs when a write of the request to the endpoint hit its
// slice deadline. It returns the error that ends the write,
// errAnsweredEarly when the endpoint stopped taking the request and its
// answer waits (earlyAnswer), or nil after arming the next slice
// (endpointStalled).
//
// The endpoint stopped if it took less than stallBytes during a whole
// slice: one that this call armed (or spliceRequest, when the endpoint
// filled up), during this exchange, and that ended while a write waited
// on the endpoint: a write that started long after its deadline, the
// client having been waited for meanwhile, tells nothing. A stall is so
// told within two slices, and the clock is read only here.
func (cc *clientConn) bodyStalled(bc net.Conn) *statusError {
	x := cc.x
	now := time.Now()
	// stallAt and stallOut may be another exchange's: this one's first
	// stall is where its count starts. (What went before it, the head
	// included, already moved x.hard as it went.)
	ours := !x.stallAt.Before(x.start)
	if !ours {
		x.stallOut = x.epOut
	}
	took := x.epOut - x.stallOut
	whole := ours && now.Sub(x.stallAt) < closeCheckInterval+closeCheckInterval/2
	if took > 0 {
		x.hard = now.Add(cc.srv.cfg.Load().ResponseTimeout)
	}
	if whole && took < stallBytes && cc.earlyAnswer(bc) {
		return errAnsweredEarly
	}
	x.stallAt, x.stallOut = now, x.epOut
	return cc.endpointStalled(bc)
}

// writeEndpoint writes p to the endpoint, renewing slices while it makes
// progress. Errors are returned raw for endpointError. With await, p ends
// the request and the response comes next: when p goes in one go,
// writeEndpoint also waits for the endpoint to answer
// (sendAwaitEndpointRaw).
func (cc *clientConn) writeEndpoint(bc net.Conn, p []byte, await bool) error {
	for len(p) > 0 {
		var n int
		var err error
		if raw := cc.x.epRaw; raw != nil && bc == cc.x.epConn {
			if await {
				n, err = cc.sendAwaitEndpointRaw(raw, p)
				await = false // out of room: the rest waits for it
			} else {
				n, err = cc.writeEndpointRaw(raw, p)
			}
		} else {
			if _, ok := bc.(*net.TCPConn); !ok {
				// TLS: the write waits up to the hard deadline, as
				// progress left it (bodyStalled, and the body loops
				// as the client's bytes come); see armEndpoint.
				bc.SetWriteDeadline(cc.x.hard)
			}
			n, err = bc.Write(p)
		}
		p = p[n:]
		cc.x.epOut += uint64(n)
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return err
		}
		if e := cc.bodyStalled(bc); e != nil {
			return stalledError{e}
		}
	}
	return nil
}

// readEndpoint reads from the endpoint into p, waiting across slices.
func (cc *clientConn) readEndpoint(bc net.Conn, p []byte) (int, error) {
	for {
		var n int
		var err error
		if raw := cc.x.epRaw; raw != nil && bc == cc.x.epConn {
			n, err = cc.readEndpointRaw(raw, p)
		} else {
			n, err = bc.Read(p)
		}
		if n > 0 {
			cc.x.epIn += uint64(n)
			return n, nil
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return 0, err
		}
		e := cc.endpointStalled(bc)
		if e == nil && cc.x.bodyCame.Load() {
			// Checked once bc's deadline was set again: a watch that moved
			// it before is not missed.
			e = errBodyCame
		}
		if e != nil {
			return 0, stalledError{e}
		}
	}
}

// stalledError carries a statusError decided while waiting on the endpoint.
type stalledError struct{ e *statusError }

func (s stalledError) Error() string { return s.e.Error() }

// endpointError maps an endpoint I/O error to the answer the client gets.
func endpointError(err error) *statusError {
	var s stalledError
	if errors.As(err, &s) {
		return s.e
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return errServerClosed
	}
	return errServerIO
}

// readResponseHead reads the endpoint's response head into x.resp. Interim
// 1xx responses are forwarded to an HTTP/1.1 client and skipped; with
// stopAt100 a 100 Continue returns errContinue. gotByte says whether any
// response byte arrived (a request is never replayed after one).
func (cc *clientConn) readResponseHead(bc net.Conn, stopAt100 bool) (*statusError, bool) {
	x := cc.x
	interim := 0
	gotByte := x.be > x.bs
	for {
		if x.be > x.bs {
			end, next := findHeadEnd(x.bb[x.bs:x.be], x.bscan)
			if end > 0 {
				x.bscan = 0
				if end > maxHead {
					return errRespTooLarge, true
				}
				if e := x.resp.parse(x.bb[x.bs:x.bs+end], x.headReq); e != nil {
					return e, true
				}
				x.respLen = end
				st := x.resp.status
				if st == 101 {
					if x.req.tunnel && x.reqBody == bodyNone {
						return nil, true // see tunnel
					}
					return errRespSwitching, true
				}
				if st >= 200 {
					return nil, true
				}
				x.bs += end
				if interim++; interim > MaxInterim {
					return errRespInterims, true
				}
				if x.minor == 1 {
					x.wb = appendInterimHead(x.wb[:0], &x.resp)
					err := cc.write(x.wb)
					x.wb = x.wb[:0]
					if err != nil {
						cc.reason = clientReason(err)
						return errClientAbort, true
					}
				}
				if st == 100 && stopAt100 {
					return errContinue, true
				}
				continue
			}
			x.bscan = next
			if x.be-x.bs > maxHead {
				return errRespTooLarge, true
			}
			if x.be == len(x.bb) {
				x.bb, x.bs, x.be = growRead(x.bb, x.bs, x.be)
				x.bscan = 0
			}
		} else {
			x.bs, x.be, x.bscan = 0, 0, 0
		}
		n, err := cc.readEndpoint(bc, x.bb[x.be:])
		if err != nil {
			e := endpointError(err)
			if gotByte && e == errServerClosed {
				e = errBadResponse // cut short in the middle of a head
			}
			return e, gotByte || interim > 0
		}
		x.be += n
		gotByte = true
	}
}

// Output framings of a response body.
const (
	outNone    uint8 = iota // no body
	outLength               // Content-Length, copied
	outChunked              // chunked, re-encoded or encoded from close-delimited
	outClose                // close-delimited: copied until the endpoint closes
	outDechunk              // chunked in, close-delimited out (HTTP/1.0 client)
	outTunnel               // a 101: no body, the connection becomes a tunnel
)

// relayResponse forwards the parsed final response head and its body to
// the client; the endpoint connection is pooled or closed on the way
// (bodyRead). It returns whether the client connection stays open.
func (cc *clientConn) relayResponse(ep *upstream.Endpoint, bc net.Conn) bool {
	x := cc.x
	resp := &x.resp
	keep := x.keep && x.reqBody == bodyNone
	if keep && cc.ending() {
		keep = false
	}
	x.reusable = resp.reusable && x.reqBody == bodyNone && !x.early
	var out uint8
	switch resp.body {
	case bodyNone:
		out = outNone
	case bodyLength:
		out = outLength
	case bodyChunked:
		out = outChunked
		if x.minor == 0 {
			out, keep = outDechunk, false
		}
	case bodyClose:
		out = outChunked
		if x.minor == 0 {
			out, keep = outClose, false
		}
	}
	if !keep && (x.reqBody != bodyNone || x.limit != 0 && x.rs < x.re) {
		// The client's body was never read, or not all of it (the
		// endpoint answered an Expect: 100-continue request without
		// asking for it, or answered early), or a connection limit ends
		// a connection on which the client already pipelined more: what
		// it sends must not reset the connection before it read this
		// response.
		cc.linger = true
	}
	x.finalHead(keep, out)

	var e *statusError
	switch out {
	case outNone:
		cc.bodyRead(bc)
		e = cc.flush()
	case outLength:
		e = cc.relayLength(bc, resp.contentLength)
	case outChunked, outDechunk:
		if resp.body == bodyClose {
			e = cc.relayCloseChunked(bc)
		} else {
			e = cc.relayChunked(bc, out == outChunked)
		}
	case outClose:
		e = cc.relayClose(bc)
	}
	x.bs, x.be = 0, 0
	if e != nil {
		return cc.answer(cc.endpointFailed(ep, bc, e))
	}
	cc.endpointDone(bc, false) // no-op: bodyRead ran
	if !keep {
		cc.reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
		if x.limit != 0 {
			cc.reason = x.limit
		}
		if resp.body == bodyClose || out == outDechunk {
			cc.reason = sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
		}
	}
	return keep
}

// finalHead writes into x.wb the head of the endpoint's final response as
// the client gets it, with what Pick asked for (RemoveResponseCookie,
// EditResponse, AddResponseField), and consumes it from the endpoint read
// buffer.
func (x *exchange) finalHead(keep bool, out uint8) {
	resp := &x.resp
	x.mx.Status = resp.status
	if !x.req.dropSetCookies.empty() {
		dropSetCookies(resp, &x.req.dropSetCookies)
	}
	if len(x.req.respEdits) > 0 {
		dropEditedFields(resp, x.req.respEdits)
	}
	x.wb = appendResponseHead(x.wb[:0], resp, &x.req, x.minor, keep, out)
	x.bs += x.respLen
}

// flush writes x.wb to the client; the final response has then started.
// Only its first write, the one with the response head, waits for the
// round's reads (pace.Batch): the pieces of a body go out as they come.
func (cc *clientConn) flush() *statusError {
	x := cc.x
	if len(x.wb) == 0 {
		return nil
	}
	if !x.respStarted {
		pace.Batch()
	}
	x.respStarted = true
	err := cc.write(x.wb)
	x.wb = x.wb[:0]
	if err != nil {
		cc.reason = clientReason(err)
		return &statusError{0, "client write failed", cc.reason}
	}
	return nil
}

// relayLength forwards a Content-Length body: what came with the head goes
// in the same write as the head; a large remainder is spliced where that
// pays (splicePays), and copied through x.bb otherwise.
func (cc *clientConn) relayLength(bc net.Conn, left int64) *statusError {
	x := cc.x
	n := x.be - x.bs
	if int64(n) > left {
		n = int(left)
	}
	if room := cap(x.wb) - len(x.wb); n <= room {
		x.wb = append(x.wb, x.bb[x.bs:x.bs+n]...)
		if int64(n) == left {
			// The usual small response: read in full with its head.
			x.bs += n
			cc.bodyRead(bc)
			return cc.flush()
		}
		if e := cc.flush(); e != nil {
			return e
		}
	} else {
		if e := cc.flush(); e != nil {
			return e
		}
		if err := cc.write(x.bb[x.bs : x.bs+n]); err != nil {
			cc.reason = clientReason(err)
			return &statusError{0, "client write failed", cc.reason}
		}
	}
	x.bs += n
	left -= int64(n)
	if left == 0 {
		cc.bodyRead(bc)
		return nil
	}
	x.bs, x.be = 0, 0
	cfg := cc.srv.cfg.Load()
	x.hard = time.Now().Add(cfg.ResponseTimeout)
	cc.armEndpoint(bc, time.Now())
	tc, spliceable := bc.(*net.TCPConn) // not over TLS
	spliceable = spliceable && cc.tcp != nil && splicePays(tc)
	if !spliceable && left > int64(len(x.bb)) {
		x.bulkBuffer()
	}
	for left > 0 {
		if left >= spliceMin && spliceable && !pipesShort() {
			wdl := time.Now().Add(cfg.IdleTimeout)
			cc.c.SetWriteDeadline(wdl)
			piece := min(left, splicePiece)
			n, err, clientSide, ok := cc.spliceResponse(bc, piece)
			if !ok && pipesShort() {
				// spliceResponse's pipe came short, and net's splice
				// would get one as short: copy.
				cc.c.SetWriteDeadline(time.Time{})
				continue
			}
			if !ok {
				x.lr.R, x.lr.N = bc, piece
				n, err = cc.tcp.ReadFrom(&x.lr)
				x.lr.R = nil
			}
			cc.info.BytesOut += uint64(n)
			x.epIn += uint64(n)
			left -= n
			cc.c.SetWriteDeadline(time.Time{})
			if n > 0 {
				x.hard = time.Now().Add(cfg.ResponseTimeout)
			}
			if err != nil && clientSide && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				cc.reason = clientReason(err) // the client went away
				return &statusError{0, "client write failed", cc.reason}
			}
			if err != nil {
				if isTimeout(err) && time.Now().Before(wdl) {
					if e := cc.endpointStalled(bc); e != nil {
						return e
					}
					continue
				}
				return cc.relayError(err)
			}
			if n == 0 {
				return errServerClosed // EOF before the declared length
			}
			continue
		}
		n, err := cc.readBody(bc, left)
		if err != nil {
			return endpointError(err)
		}
		x.hard = time.Now().Add(cfg.ResponseTimeout)
		left -= int64(n)
		if left == 0 {
			cc.bodyRead(bc)
		}
		if err := cc.write(x.bb[:n]); err != nil {
			cc.reason = clientReason(err)
			return &statusError{0, "client write failed", cc.reason}
		}
	}
	cc.bodyRead(bc)
	return nil
}

// readBody reads at most limit bytes of a response body from the endpoint
// into the start of x.bb, to be written to the client as they are. Out of
// a big buffer (bulkBuffer) it reads as many whole segments of the client's
// socket as fit (tcpseg): over loopback, a write of all 68 KiB went out as
// a full segment and a short one, which under BBR cost the node about
// twice the CPU per MiB. The segment's size is asked again after each read
// that filled its room, since it grows with the client's window.
func (cc *clientConn) readBody(bc net.Conn, limit int64) (int, error) {
	x := cc.x
	room := len(x.bb)
	bulk := room >= bigBufSize && cc.raw != nil
	if bulk {
		room = tcpseg.Fit(room, int(cc.mss))
	}
	n, err := cc.readEndpoint(bc, x.bb[:min(int64(room), limit)])
	if bulk && n == room {
		cc.askMSS = true // by the write of these bytes (initRaw's writeFn)
		fullRead(n)
	}
	return n, err
}

// onFullRead, if set, is told the size of each read of a large body that
// filled its room (readBody, sendLengthBody): tests see by it what the
// reads took.
var onFullRead atomic.Pointer[func(n int)]

func fullRead(n int) {
	if f := onFullRead.Load(); f != nil {
		(*f)(n)
	}
}

// relayError maps a splice failure, which does not say which side failed.
func (cc *clientConn) relayError(err error) *statusError {
	if errors.Is(err, net.ErrClosed) && cc.c.SetWriteDeadline(time.Time{}) != nil {
		return errClientGone // the listener closed the client connection
	}
	if errors.Is(err, syscall.EPIPE) || isTimeout(err) {
		cc.reason = clientReason(err)
		return &statusError{0, "client write failed", cc.reason}
	}
	return endpointError(err)
}

// relayChunked forwards a chunked body, re-encoded (rechunk) or decoded for
// an HTTP/1.0 client.
func (cc *clientConn) relayChunked(bc net.Conn, rechunk bool) *statusError {
	x := cc.x
	x.chunk.reset()
	armed := false
	filled, last := false, bbSize // the last read, as in sendChunkedBody
	for {
		n, out, err := x.chunk.decode(x.bb[x.bs:x.be], x.wb, rechunk)
		x.wb = out
		x.bs += n
		if err != nil {
			return errRespChunked
		}
		if x.chunk.done() {
			cc.bodyRead(bc)
			return cc.flush()
		}
		if len(x.wb) > 0 {
			if e := cc.flush(); e != nil {
				return e
			}
			continue
		}
		x.bulkChunked(filled, last, false)
		if x.be == len(x.bb) || x.bs == x.be {
			x.bb, x.bs, x.be = growRead(x.bb, x.bs, x.be)
		}
		if !armed {
			x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
			cc.armEndpoint(bc, time.Now())
			armed = true
		}
		p := x.bb[x.be:]
		m, rerr := cc.readEndpoint(bc, p)
		if rerr != nil {
			return endpointError(rerr)
		}
		filled, last = m == len(p), m
		x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
		x.be += m
	}
}

// relayCloseChunked forwards a close-delimited body to an HTTP/1.1 client as
// chunks, so its connection can stay open.
func (cc *clientConn) relayCloseChunked(bc net.Conn) *statusError {
	x := cc.x
	x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
	cc.armEndpoint(bc, time.Now())
	for {
		if n := x.be - x.bs; n > 0 {
			for n > 0 {
				room := cap(x.wb) - len(x.wb) - 32
				if room <= 0 {
					if e := cc.flush(); e != nil {
						return e
					}
					continue
				}
				k := min(n, room)
				x.wb = strconv.AppendUint(x.wb, uint64(k), 16)
				x.wb = append(x.wb, '\r', '\n')
				x.wb = append(x.wb, x.bb[x.bs:x.bs+k]...)
				x.wb = append(x.wb, '\r', '\n')
				x.bs += k
				n -= k
			}
		}
		if e := cc.flush(); e != nil {
			return e
		}
		x.bs, x.be = 0, 0
		m, err := cc.readEndpoint(bc, x.bb)
		if err != nil {
			if x.closeEnded(err) {
				cc.bodyRead(bc)
				x.wb = append(x.wb, "0\r\n\r\n"...)
				return cc.flush()
			}
			return endpointError(err)
		}
		x.hard = time.Now().Add(cc.srv.cfg.Load().ResponseTimeout)
		x.be = m
	}
}

// closeEnded reports whether err, met reading a close-delimited body from
// the endpoint, ends the body: the endpoint closed; or, after an early
// answer (answeredEarly), it reset the connection, as an endpoint that
// closes with the request unread does: what it sent before was read.
func (x *exchange) closeEnded(err error) bool {
	return errors.Is(err, io.EOF) || x.early && errors.Is(err, syscall.ECONNRESET)
}

// relayClose forwards a close-delimited body to an HTTP/1.0 client verbatim
// (spliced by net's ReadFrom when both sides are TCP and splicing pays);
// the client connection closes after.
func (cc *clientConn) relayClose(bc net.Conn) *statusError {
	x := cc.x
	x.wb = append(x.wb, x.bb[x.bs:x.be]...)
	x.bs = x.be
	if e := cc.flush(); e != nil {
		return e
	}
	x.bs, x.be = 0, 0
	cfg := cc.srv.cfg.Load()
	x.hard = time.Now().Add(cfg.ResponseTimeout)
	cc.armEndpoint(bc, time.Now())
	tc, spliceable := bc.(*net.TCPConn) // not over TLS
	spliceable = spliceable && cc.tcp != nil && splicePays(tc)
	for {
		if spliceable && !pipesShort() {
			wdl := time.Now().Add(cfg.IdleTimeout)
			cc.c.SetWriteDeadline(wdl)
			x.lr.R, x.lr.N = bc, splicePiece
			n, err := cc.tcp.ReadFrom(&x.lr)
			x.lr.R = nil
			cc.info.BytesOut += uint64(n)
			x.epIn += uint64(n)
			cc.c.SetWriteDeadline(time.Time{})
			if err != nil {
				if isTimeout(err) && time.Now().Before(wdl) {
					if e := cc.endpointStalled(bc); e != nil {
						return e
					}
					continue
				}
				return cc.relayError(err)
			}
			if x.lr.N > 0 {
				cc.bodyRead(bc) // EOF: the body is complete
				return nil
			}
			x.hard = time.Now().Add(cfg.ResponseTimeout)
			continue
		}
		n, err := cc.readBody(bc, int64(len(x.bb)))
		if err != nil {
			if x.closeEnded(err) {
				cc.bodyRead(bc)
				return nil
			}
			return endpointError(err)
		}
		x.hard = time.Now().Add(cfg.ResponseTimeout)
		if err := cc.write(x.bb[:n]); err != nil {
			cc.reason = clientReason(err)
			return &statusError{0, "client write failed", cc.reason}
		}
		if n == len(x.bb) { // more than the buffer holds: a large body
			x.bulkBuffer()
		}
	}
}

// appendRequestHead writes the request head that goes to the endpoint:
// HTTP/1.1, the authority of an absolute-form target as Host, hop-by-hop
// fields removed (but for the Upgrade of a tunnel request, which goes with
// Connection: upgrade), framing re-done, the forwarding headers written
// (forwarded.go), the cookies Pick removed (RemoveCookie) taken out of the
// Cookie fields, and the header edits of Pick (EditRequest) applied, last.
func appendRequestHead(b []byte, r *Request, addr string) []byte {
	h := r.head
	b = append(b, r.method.of(h)...)
	b = append(b, ' ')
	b = append(b, r.target.of(h)...)
	b = append(b, " HTTP/1.1\r\n"...)
	hasHost := false
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if f.drop {
			continue
		}
		if f.kind == fieldHost {
			hasHost = true
		}
		if len(r.reqEdits) > 0 && dropped(r.reqEdits, f.name.of(h)) || r.sendsID(f.name.of(h)) {
			continue
		}
		if isForwarding(f.kind) {
			if r.fwd.keeps(f.kind) {
				b = appendForwardedField(b, r, i, f)
			}
			continue
		}
		if !r.dropCookies.empty() && equalFold(f.name.of(h), "cookie") {
			b = appendCookieField(b, f.name.of(h), f.value.of(h), &r.dropCookies)
			continue
		}
		b = appendFieldLine(b, f.name.of(h), r.valueOf(f)) // Host: an absolute-form target's authority
	}
	if r.fwd.writes() {
		b = appendForwardingFields(b, r)
	}
	b = r.appendIDField(b)
	if len(r.reqEdits) > 0 {
		b = appendEdited(b, r.reqEdits)
	}
	if r.tunnel {
		b = append(b, "Connection: upgrade\r\n"...)
	}
	if !hasHost {
		// HTTP/1.0 without Host: the authority of an absolute-form
		// target, else the endpoint's address.
		b = append(b, "Host: "...)
		if r.host.len() > 0 {
			b = append(b, r.host.of(h)...)
		} else {
			b = append(b, addr...)
		}
		b = append(b, '\r', '\n')
	}
	switch r.body {
	case bodyLength:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.contentLength, 10)
		b = append(b, '\r', '\n')
	case bodyChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, '\r', '\n')
}

// appendResponseHead writes the response head that goes to the client,
// for request req: the endpoint's fields, then those req's edits put in
// (Request.EditResponse), its id (Config.RequestIDInResponse) and the
// fields of Request.AddResponseField.
func appendResponseHead(b []byte, r *response, req *Request, clientMinor uint8, keep bool, out uint8) []byte {
	id := req.responseID(r) // before the endpoint's fields: it drops its own
	h := r.head
	b = append(b, "HTTP/1.1 "...)
	b = append(b, h[9:12]...)
	b = append(b, ' ')
	b = append(b, r.reason.of(h)...)
	b = append(b, '\r', '\n')
	b = appendFields(b, r)
	if len(req.respEdits) > 0 {
		b = appendEdited(b, req.respEdits)
	}
	b = append(b, id...)
	b = append(b, req.addResp...)
	switch out {
	case outLength:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.contentLength, 10)
		b = append(b, '\r', '\n')
	case outNone:
		switch {
		case r.chunkedHead:
			if clientMinor == 1 { // HTTP/1.0 has no transfer codings
				b = append(b, "Transfer-Encoding: chunked\r\n"...)
			}
		case r.contentLength >= 0:
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, r.contentLength, 10)
			b = append(b, '\r', '\n')
		}
	case outChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case out == outTunnel:
		b = append(b, "Connection: upgrade\r\n"...)
	case !keep:
		b = append(b, "Connection: close\r\n"...)
	case clientMinor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, '\r', '\n')
}

// appendInterimHead writes a 1xx response for the client.
func appendInterimHead(b []byte, r *response) []byte {
	h := r.head
	b = append(b, "HTTP/1.1 "...)
	b = append(b, h[9:12]...)
	b = append(b, ' ')
	b = append(b, r.reason.of(h)...)
	b = append(b, '\r', '\n')
	b = appendFields(b, r)
	return append(b, '\r', '\n')
}

func appendFields(b []byte, r *response) []byte {
	h := r.head
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if f.drop {
			continue
		}
		b = appendFieldLine(b, f.name.of(h), f.value.of(h))
	}
	return b
}

// rebuildRequestHead replaces the request head at the start of x.wb, built
// for an earlier pick, with one for the current pick of x.req. The request
// body bytes that bufferedBody put after the head stay. Only the rare pick
// again after a retired endpoint gets here.
func (x *exchange) rebuildRequestHead(addr string) {
	old, n := x.headOut, len(x.wb)
	body := n - old
	// x.wb becomes old head, body, new head; rotating the tail gives new
	// head, body, which then moves to the front.
	x.wb = appendRequestHead(x.wb, &x.req, addr)
	tail := x.wb[old:]
	slices.Reverse(tail[:body])
	slices.Reverse(tail[body:])
	slices.Reverse(tail)
	x.wb = x.wb[:copy(x.wb, tail)]
	x.headOut = len(x.wb) - body
}
