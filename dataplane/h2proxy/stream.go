package h2proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// stream is the per-request state, pooled: the Request the Director sees
// and the copy buffer.
type stream struct {
	req    httpproxy.Request
	buf    []byte
	mx     meter.Exchange // the request as metered (meter.go)
	logBuf []byte         // mx's method, host and path when logged
	// upgrade holds the fields of an HTTP/1.1 request that asks to switch
	// protocols (Upgrade, Connection: upgrade), nil for any other: it may
	// become a tunnel (upgrade.go).
	upgrade http.Header
	// hijacked: the request became a tunnel, which took the connection
	// from net/http (upgrade.go).
	hijacked bool
	// idle bounds the pauses of the request's body (nil: none).
	idle *idleBody
}

var streams = sync.Pool{New: func() any { return &stream{buf: make([]byte, 32<<10)} }}

// The proxy's own errors, with the texts of the HTTP/1.1 engine.
const (
	textNoEndpoint      = "no endpoint available"
	textConnectFailed   = "could not connect to the endpoint"
	textEndpointFailed  = "connection to the endpoint failed"
	textShutdown        = "the endpoint's connections were shut down"
	textResponseTimeout = "the endpoint did not answer in time"
	textDrained         = "the endpoint was removed"
	textBadResponse     = "invalid response from the endpoint"
	textEndpointCut     = "the endpoint cut its response short"
	textBadStatus       = "malformed status line"
	textUnaskedSwitch   = "unexpected 101 Switching Protocols"
	textHeadTooLarge    = "response head larger than 64 KiB"
)

// maxRepicks bounds how often one request picks again because its endpoint
// was retired under it (as the HTTP/1.1 engine does).
const maxRepicks = 3

// ServeHTTP proxies one request: a stream of an HTTP/2 connection, or a
// request of an HTTP/1.x one (Translate).
func (cn *conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hcfg := cn.srv.http.Config()
	last := cn.stream(hcfg)
	st := streams.Get().(*stream)
	if nc := cn.nc; nc.screen != nil {
		defer nc.served.Add(1) // see serving
		st.req.OnAbortOnClose(nc.abortsOnCloseFn)
	}
	cn.meterStart(st, hcfg.Meter, r)
	st.idle = idleBound(w, r, hcfg.IdleTimeout)
	defer func() {
		if !st.hijacked {
			st.idle.finish(r, cn.ending.Load() != 0)
		}
		cn.meterDone(st, hcfg.Meter)
		hijacked := st.hijacked
		st.upgrade, st.hijacked, st.idle = nil, false, nil
		st.req.OnAbortOnClose(nil)
		st.req.ForgetFailed()
		streams.Put(st)
		if hijacked {
			// Last, once the endpoint is released: ServeConn waits for
			// this, and then the connection's record is read.
			cn.closeOnce.Do(func() { close(cn.done) })
		}
	}()
	req := &st.req
	target, proto := r.RequestURI, ""
	if r.ProtoMajor == 2 && r.Method == http.MethodConnect {
		target = r.Host // CONNECT names its authority only; refused below
	}
	if r.ProtoMajor == 1 {
		proto = r.Proto // HTTP/1.0 may come without Host
	}
	err := req.Load(&httpproxy.Head{
		Method: r.Method, Target: target, Authority: r.Host, Proto: proto, Header: r.Header,
		Client: cn.client, TLS: cn.tls, SNI: cn.sni,
		Forwarded: hcfg.Forwarded, Trusted: hcfg.Trusts(cn.client.Addr().Unmap()),
		Config: hcfg, Context: r.Context(),
	})
	if err != nil {
		status, text := httpproxy.StatusOf(err)
		cn.refuse(st, w, r, status, text)
		return
	}
	if req.Canonical() && st.mx.Logged {
		// The access log writes the path the rules saw, as the HTTP/1.1
		// engine's does.
		p := len(st.mx.Method) + len(st.mx.Host)
		st.logBuf = append(st.logBuf[:p], req.Path()...)
		st.mx.Path = st.logBuf[p:]
	}
	if c := req.ClientAddr(); c != req.PeerAddr() {
		st.mx.Client, st.mx.Peer = netip.AddrPortFrom(c, req.ClientPort()), cn.client
	}
	st.logBuf = st.mx.KeepRequestID(st.logBuf, req.RequestID())
	if declaredTooLarge(r, hcfg) {
		cn.refuse(st, w, r, 413, textBodyTooLarge)
		return
	}
	forwardTrailers(r)
	limitBody(r, hcfg) // outermost: bodyTooLarge finds it
	st.upgrade = upgradeFields(r, req)

	failures, repicks := 0, 0 // connects that failed and were retried; retired picks
	var retried uint64
	var failed error // the last failure to connect, for the answer when nothing is left
	for {
		ep, d, err := req.Pick(hcfg.Director)
		if st.mx.Rule = req.Rule(); st.mx.Rule != "" {
			cn.ruled(st.mx.Rule)
		}
		if d.Answer != nil {
			cn.ruleAnswer(st, w, r, d.Answer, last)
			if st.mx.Status >= 400 || d.Answer.Refusal() != 0 {
				// A rule refused the request (deny, or a page of its own),
				// maybe with a redirect to an error page.
				cn.fail(sluicev1.CloseReason_CLOSE_REASON_DENIED)
			}
			return
		}
		if err != nil {
			if cn.unanswered(r) {
				return
			}
			status, text, why := 503, textNoEndpoint, sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT
			if failed != nil {
				status = 502
				text, why = failure(failed)
			}
			if m, name := req.Routed(); m != nil && st.mx.Cluster == nil {
				// No endpoint: the 503 is the cluster's all the same.
				st.mx.Cluster = m
				cn.routed(name, "", 0)
			}
			cn.fail(why)
			cn.errorAnswer(st, w, r, status, text, last)
			return
		}
		st.mx.Cluster, st.mx.Endpoint = ep.Meter(), ep.Name
		cn.routed(ep.Cluster, ep.Name, retried)
		retried = 0
		if st.upgrade != nil && cn.srv.up.protocol(ep).HTTP2 {
			ep.Release()
			cn.fail(closeBadRequest)
			cn.errorAnswer(st, w, r, 501, textUpgradeHTTP2, last)
			return
		}
		out := cn.outgoing(r, st, ep)
		ok, err := cn.forward(w, r, out, st, ep, d.ConnectTimeout, hcfg, last)
		if ok {
			return
		}
		if cn.unanswered(r) {
			return
		}
		// Nothing of the request reached an endpoint: pick again, around
		// ep, as the HTTP/1.1 engine does.
		switch {
		case errors.Is(err, upstream.ErrClosed) && repicks < maxRepicks:
			repicks++
		case isConnectError(err) && failures < ep.Retries(hcfg.Retries): // as many as ep's cluster asks
			failures++
			retried++
			st.mx.Retries++
		default:
			text, why := failure(err)
			cn.fail(why)
			cn.errorAnswer(st, w, r, 502, text, last)
			return
		}
		failed = err
		req.Fail(ep)
	}
}

// unanswered says whether a request that failed gets no answer because its
// client reset the stream or went. Once the server is closed (its listener
// was removed, or the node stops, which also shuts the endpoints'
// connections), it cuts the stream (RST_STREAM) instead, as the HTTP/1.1
// engine then closes its connections without an answer: a handler that
// returned without answering would send an empty 200.
func (cn *conn) unanswered(r *http.Request) bool {
	if cn.srv.http.Closed() {
		panic(http.ErrAbortHandler)
	}
	return r.Context().Err() != nil
}

// cut is why a response that started was cut, the error of its relay
// (copyBody) and whether response_timeout ran out: its text and the
// reason the connection's record gives for it, as the HTTP/1.1 engine
// closes its client connection for it.
func cut(err error, timedOut bool) (string, sluicev1.CloseReason) {
	switch {
	case timedOut:
		return textResponseTimeout, sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT
	case errors.Is(err, upstream.ErrClosed):
		return textDrained, sluicev1.CloseReason_CLOSE_REASON_DRAINED
	case errors.Is(err, errShutdown):
		return textShutdown, sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN
	}
	return textEndpointCut, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
}

// failure is what a client is told of a failure to reach an endpoint, and
// the reason its connection's record gives for it (as the HTTP/1.1
// engine's errors do).
// invalidResponse returns why resp cannot be passed on, in the words of
// the HTTP/1.1 engine, which refuses it too, or "": a status outside
// 100-599 (RFC 9110 §15), or a 101 to a request that asked for no upgrade
// (§15.2.2), which would leave the client's connection in no protocol,
// and with nobody bounding its wait.
func invalidResponse(resp *http.Response, upgrading bool) string {
	switch {
	case resp.StatusCode < 100 || resp.StatusCode > 599:
		return textBadStatus
	case resp.StatusCode == http.StatusSwitchingProtocols && !upgrading:
		return textUnaskedSwitch
	}
	return ""
}

func failure(err error) (string, sluicev1.CloseReason) {
	switch {
	case errors.Is(err, upstream.ErrClosed):
		return textDrained, sluicev1.CloseReason_CLOSE_REASON_DRAINED
	case isConnectError(err):
		return textConnectFailed, sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT
	case errors.Is(err, errShutdown):
		return textShutdown, sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN
	case errors.Is(err, errTooManyInterim):
		return textBadResponse, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
	case strings.Contains(err.Error(), "server response headers exceeded"):
		// net/http's words for a head past MaxResponseHeaderBytes; it
		// has no error value to match (TestInvalidResponsesRefused).
		return textHeadTooLarge, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
	}
	return textEndpointFailed, sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
}

// outgoing builds the request that goes to ep.
func (cn *conn) outgoing(r *http.Request, st *stream, ep *upstream.Endpoint) *http.Request {
	req := &st.req
	h := make(http.Header, len(r.Header)+4)
	req.ForwardHeader(h)
	for k, v := range st.upgrade {
		h[k] = v
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // net/http would add its own
	}
	u := &url.URL{Scheme: "http", Host: ep.Addr}
	path, query, hasQuery := strings.Cut(r.RequestURI, "?")
	if r.ProtoMajor == 1 && !strings.HasPrefix(path, "/") && path != "*" {
		// An absolute-form target of an HTTP/1.1 client: its path.
		path = r.URL.EscapedPath()
		if path == "" {
			path = "/"
		}
		query, hasQuery = r.URL.RawQuery, r.URL.RawQuery != "" || r.URL.ForceQuery
	}
	if req.Canonical() {
		// The listener made the path canonical: the rules judged that
		// one, so the endpoint gets it.
		path = string(req.URLPath())
	}
	setPath(u, path)
	u.RawQuery, u.ForceQuery = query, hasQuery && query == ""
	out := &http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          r.Host,
		ContentLength: r.ContentLength,
		Trailer:       r.Trailer,
	}
	if r.ContentLength != 0 {
		out.Body = r.Body
		if req.ExpectsContinue() {
			// The endpoint may refuse the body before it is sent (a 417,
			// a 401, a 413), as through the HTTP/1.1 engine: the
			// transport sends the body after the endpoint's 100, or
			// after expectContinueTimeout, and net/http answers the
			// client's expectation once the body is read.
			h["Expect"] = []string{"100-continue"}
		}
	}
	return out
}

// setPath makes path the path u sends, as the client sent it: the rules
// judged that path, so the endpoint must get it and nothing else.
//
// net/http sends URL.Opaque verbatim, but for one case: RequestURI turns
// an Opaque that starts with "//" into an absolute URL ("//x/admin" into
// "http://x/admin"), which an HTTP/1.1 endpoint serves as /admin on host x
// (RFC 9112 §3.2.2) and an HTTP/2 one gets as ":path /admin", or not at
// all: a deny rule on /admin would not hold. Such a path goes as Path and
// RawPath instead, which RequestURI sends as RawPath when it encodes Path,
// as it does for every path the HTTP/1.1 parser takes but one with bytes
// RFC 3986 does not allow in a path (a '{', a '"'), which go
// percent-encoded: the same path to anything that decodes it.
func setPath(u *url.URL, path string) {
	if !strings.HasPrefix(path, "//") {
		u.Opaque = path
		return
	}
	p, err := url.PathUnescape(path)
	if err != nil {
		p = path // not reached: Load refuses a stray '%'
	}
	u.Path, u.RawPath = p, path
}

// forward sends out to ep and relays the response to w. It returns false,
// with the error, when nothing of the request reached ep and the caller
// may pick again; true when the request was answered (or cut), ep
// released either way.
func (cn *conn) forward(w http.ResponseWriter, r, out *http.Request, st *stream, ep *upstream.Endpoint, connectTimeout time.Duration, hcfg *httpproxy.Config, last bool) (bool, error) {
	released := false
	release := func() {
		if !released {
			released = true
			ep.Release()
		}
	}
	defer release()

	start := time.Now()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(hcfg.ResponseTimeout, func() {
		timedOut.Store(true)
		cancel()
	})
	defer timer.Stop()
	body := &countBody{ReadCloser: out.Body}
	if out.Body != nil {
		out.Body = body
	}
	var interim interimRelay
	if st.upgrade == nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error { return interim.relay(w, r, code, h) },
		})
	}
	out = out.WithContext(ctx)
	if r.ProtoMajor == 2 {
		if te := r.Header.Values("Te"); len(te) > 0 && strings.EqualFold(te[0], "trailers") {
			out.Header.Set("Te", "trailers") // gRPC asks for trailers so
		}
	}
	var (
		resp *http.Response
		rt   trip
		err  error
		up   *upgrading
	)
	if st.upgrade != nil {
		resp, up, rt, err = cn.srv.up.upgrade(out, cn.srv.http.Context(), ep, cn.client, cn.local, connectTimeout)
	} else {
		resp, rt, err = cn.srv.up.roundTrip(out, cn.srv.http.Context(), ep, cn.client, cn.local, connectTimeout, req2idempotent(r))
		interim.finish() // w is this goroutine's alone from here on
	}
	st.mx.BytesIn = body.n.Load()
	if err != nil {
		ep.Transferred(0, body.n.Load())
		if rt.connectFailed() {
			return false, err
		}
		if st.idle.expired() {
			// First: on HTTP/1.x the read that timed out also ended the
			// request's context, as a client that went away does.
			cn.timeOut(st, w, r)
			return true, nil
		}
		if cn.unanswered(r) {
			return true, err
		}
		status := 502
		text, why := failure(err)
		if bodyTooLarge(r) {
			cn.refuse(st, w, r, 413, textBodyTooLarge)
			return true, nil
		}
		if timedOut.Load() {
			status, text, why = 504, textResponseTimeout, sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT
		} else if rt.shutDown() {
			text, why = textShutdown, sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN
		}
		if conntrack.EndpointsFault(why) {
			ep.Failed() // the client gets a 5xx in the endpoint's place
		}
		cn.fail(why)
		cn.errorAnswer(st, w, r, status, text, last)
		return true, nil
	}
	if text := invalidResponse(resp, up != nil); text != "" {
		// As the HTTP/1.1 engine judges it: a 502, and the client's
		// connection goes on.
		timer.Stop()
		resp.Body.Close() // for a 101, the endpoint's connection itself
		ep.Transferred(0, body.n.Load())
		why := sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
		if conntrack.EndpointsFault(why) {
			ep.Failed() // the client gets a 5xx in the endpoint's place
		}
		cn.fail(why)
		cn.errorAnswer(st, w, r, http.StatusBadGateway, text, last)
		return true, nil
	}
	st.mx.FirstByte = time.Since(st.mx.Start)
	st.mx.Connect = rt.dialed // 0 on a pooled connection: not observed
	ep.Responded(resp.StatusCode)
	if up != nil && resp.StatusCode == http.StatusSwitchingProtocols {
		timer.Stop()
		cn.tunnel(w, resp, up, st, hcfg)
		return true, nil
	}
	defer func() {
		if st.idle.unread() {
			// The endpoint answered before it took the whole body: the
			// rest is not sent. An HTTP/2 transport's Close would wait
			// for the client to send it first, if it held it back.
			cancel()
		}
		resp.Body.Close()
	}()
	timer.Reset(hcfg.ResponseTimeout) // now an inactivity bound on the body

	dst := w.Header()
	copyHeader(dst, resp.Header)
	if len(resp.Trailer) > 0 {
		// Trailers the endpoint announced are announced to the client:
		// an HTTP/1.1 one gets them only with a chunked body.
		for k := range resp.Trailer {
			dst.Add("Trailer", k)
		}
		dst.Del("Content-Length")
	}
	st.req.EditResponseHeader(dst)
	for _, k := range addedByNetHTTP {
		if _, ok := dst[k]; !ok {
			// Present but empty: net/http adds none, and writes none.
			// After the rules: one that removes the field removes it.
			dst[k] = nil
		}
	}
	if r.ProtoMajor == 1 && st.idle.unread() {
		// The endpoint answered before it took the whole body (an early
		// 413 or 401): the rest is not read, and the connection ends
		// after the answer, as on the HTTP/1.1 engine. net/http would
		// read the rest before a byte of the answer went, as long as the
		// client held it back.
		cn.ending.CompareAndSwap(0, int32(sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED))
		cn.nc.lingers.Store(true)
		last = true
	}
	if last {
		dst.Set("Connection", "close")
	}
	w.WriteHeader(resp.StatusCode)
	st.idle.responding()
	st.mx.Status = resp.StatusCode
	in, werr := copyBody(w, resp.Body, st.buf, timer, hcfg.ResponseTimeout)
	ep.Transferred(in, body.n.Load())
	st.mx.BytesIn, st.mx.BytesOut = body.n.Load(), in
	if werr != nil {
		var gone *clientGone
		if r.Context().Err() != nil || errors.As(werr, &gone) {
			return true, nil // the client went away: nothing to tell it
		}
		text, why := cut(werr, timedOut.Load())
		if bodyTooLarge(r) {
			cn.end(closeBadRequest)
			text, why = textBodyTooLarge, closeBadRequest
		}
		if r.ProtoMajor == 1 {
			// The connection ends with it, for why, as the HTTP/1.1
			// engine's does.
			cn.ending.CompareAndSwap(0, int32(why))
			st.mx.Cause = why
		} else {
			// The connection goes on: its record counts the stream
			// failed, for why.
			cn.fail(why)
		}
		if isGRPC(r) && r.ProtoMajor == 2 {
			endGRPC(w, r, st, start, text)
			return true, nil
		}
		// The response started: all that can be done is to cut the stream
		// (RST_STREAM on HTTP/2), so the client does not take a truncated
		// response for a whole one.
		release()
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		if len(vv) > 0 {
			// Announced or not (gRPC does not announce its own).
			dst[http.TrailerPrefix+k] = vv
		}
	}
	if isGRPC(r) {
		endedGRPC(st, resp)
	}
	return true, nil
}

// forwardTrailers has the trailers of a chunked HTTP/1.x request body
// forwarded, announced or not, as the HTTP/1.1 engine forwards them:
// net/http fills the request's Trailer as it reads the body's end, but
// only into a map that exists by then, and the endpoint's request shares
// it (outgoing). Fields no trailer may carry (framing, Host, hop-by-hop,
// and the others httpguts refuses, as Go's HTTP/2 server does) are left
// out.
func forwardTrailers(r *http.Request) {
	if r.ProtoMajor != 1 || r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	if r.Trailer == nil {
		r.Trailer = http.Header{}
	}
	r.Body = trailerBody{ReadCloser: r.Body, trailer: r.Trailer}
}

// trailerBody is a request body whose trailer fields are checked at its
// end (forwardTrailers).
type trailerBody struct {
	io.ReadCloser
	trailer http.Header
}

func (b trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		for k := range b.trailer {
			if !httpguts.ValidTrailerHeader(k) {
				delete(b.trailer, k)
			}
		}
	}
	return n, err
}

func req2idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return r.ContentLength == 0
	}
	return false
}

// copyBody copies an endpoint's response body to the client, flushing what
// comes as it comes (server streaming), with timer as the bound on the
// endpoint's silences. It returns the bytes read and the first error that
// cut the body short.
//
// The piece that comes with the body's end is not flushed: the handler
// returns right after, and net/http then sends it with the end (and the
// head, if nothing was sent yet) in one write. Flushed, a small response
// to an HTTP/2 client took two writes, its head and body, then an empty
// DATA frame that ended the stream; an HTTP/1.x client's took two too.
// net/http would then give a response whose endpoint sent no length a
// Content-Length of its own, which addedByNetHTTP stops.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, timer *time.Timer, silence time.Duration) (uint64, error) {
	rc := http.NewResponseController(w)
	var total uint64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			timer.Reset(silence)
			total += uint64(n)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, &clientGone{werr}
			}
			if err != io.EOF {
				if ferr := rc.Flush(); ferr != nil {
					return total, &clientGone{ferr}
				}
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// clientGone is copyBody's error when writing to the client failed, not
// reading the endpoint's body.
type clientGone struct{ err error }

func (e *clientGone) Error() string { return "h2proxy: writing to the client: " + e.err.Error() }
func (e *clientGone) Unwrap() error { return e.err }

// errorAnswer writes one of the proxy's own error answers, status with
// text: to a gRPC call as a gRPC status (grpcAnswer), to anything else as
// the HTTP/1.1 engine writes it, error pages included. It meters the
// answer in st: status, and the bytes of its body.
func (cn *conn) errorAnswer(st *stream, w http.ResponseWriter, r *http.Request, status int, text string, last bool) {
	if isGRPC(r) {
		grpcAnswer(w, st, status, text, last)
		st.mx.Status, st.mx.BytesOut = status, 0
		return
	}
	cn.answer(st, w, cn.srv.http.AppendError(nil, &st.req, status, text, r.Method == http.MethodHead), last)
}

// ruleAnswer writes the answer a of a rule (deny, respond, redirect): a
// refusal (4xx, 5xx) of a gRPC call as a gRPC status whose message is the
// answer's text body, anything else as it is. A refusal answered with a
// redirect to an error page is a gRPC status too, of the refusal's code:
// a gRPC client does not follow redirects. It meters the answer in st.
func (cn *conn) ruleAnswer(st *stream, w http.ResponseWriter, r *http.Request, a *httpproxy.Answer, last bool) {
	grpcCall := isGRPC(r)
	if status := a.Refusal(); grpcCall && status != 0 {
		grpcAnswer(w, st, status, http.StatusText(status), last)
		st.mx.Status, st.mx.BytesOut = status, 0
		return
	}
	b := st.req.AppendAnswer(nil, a)
	if grpcCall {
		if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil); err == nil && resp.StatusCode >= 400 {
			text := http.StatusText(resp.StatusCode)
			if body, err := io.ReadAll(io.LimitReader(resp.Body, 1024)); err == nil && len(body) > 0 &&
				strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				text = strings.TrimSpace(string(body))
			}
			grpcAnswer(w, st, resp.StatusCode, text, last)
			st.mx.Status, st.mx.BytesOut = resp.StatusCode, 0
			return
		}
	}
	cn.answer(st, w, b, last)
}

// answer writes one of the proxy's own responses, given as the HTTP/1.1
// bytes the HTTP/1.1 engine would write (httpproxy.AppendError,
// Request.AppendAnswer), in w's framing. It meters the answer in st as
// a relayed response is metered: its status, and the bytes of its body
// the client was sent.
func (cn *conn) answer(st *stream, w http.ResponseWriter, b []byte, last bool) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		panic(http.ErrAbortHandler) // a bug: our own bytes
	}
	dst := w.Header()
	for k, vv := range resp.Header {
		if k != "Connection" {
			dst[k] = vv
		}
	}
	if last {
		dst.Set("Connection", "close")
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	st.mx.Status, st.mx.BytesOut = resp.StatusCode, uint64(n)
}

// addedByNetHTTP are the fields net/http's server writes into a response
// that has none: a Content-Type guessed from the body's first bytes, its
// own Date, and a Content-Length when the handler returned before the
// first flush (copyBody leaves a body's last piece unflushed). The engine
// relays what the endpoint sent, as the HTTP/1.1 engine and HAProxy do: a
// guessed text/html on a body the endpoint left untyped (a user's upload)
// would have browsers run it, and a body the endpoint sent chunked stays
// chunked.
var addedByNetHTTP = []string{"Content-Type", "Date", "Content-Length"}

// interimRelay sends the client the 1xx responses of the endpoint (103
// Early Hints, 102 Processing) ahead of the final one, as the HTTP/1.1
// engine does: at most httpproxy.MaxInterim of them, past which the
// response is refused as invalid, and none to an HTTP/1.0 client (RFC 9110
// §15.2). 100 Continue is net/http's to send: it answers a client's Expect
// itself once the body is read, which the transport does once the
// endpoint sent its own 100 (outgoing).
//
// relay runs on the transport's goroutine, which may go on reading 1xx
// responses after RoundTrip returned (a response_timeout, a client that
// reset): once the handler's goroutine calls finish, w is its alone, and
// relay writes nothing more, as net/http/httputil.ReverseProxy guards its
// own relay.
type interimRelay struct {
	mu   sync.Mutex
	done bool
	n    int
}

// errTooManyInterim: an endpoint sent more than httpproxy.MaxInterim 1xx
// responses before its final one.
var errTooManyInterim = errors.New("h2proxy: too many 1xx responses from the endpoint")

func (in *interimRelay) relay(w http.ResponseWriter, r *http.Request, code int, h textproto.MIMEHeader) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil
	}
	if in.n++; in.n > httpproxy.MaxInterim {
		return errTooManyInterim
	}
	if code == http.StatusContinue || !r.ProtoAtLeast(1, 1) {
		return nil
	}
	dst := w.Header()
	copyHeader(dst, http.Header(h))
	w.WriteHeader(code)
	// WriteHeader of a 1xx leaves its fields in the map, where the final
	// response would send them again.
	clear(dst)
	return nil
}

// finish hands w back to the handler's goroutine: no 1xx is relayed
// after it returns.
func (in *interimRelay) finish() {
	in.mu.Lock()
	in.done = true
	in.mu.Unlock()
}

// hopByHop are the fields of one connection (RFC 9110 §7.6.1), not
// relayed from an endpoint's response.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// copyHeader copies an endpoint's response fields to dst, without the
// hop-by-hop ones and those Connection names.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = vv
	}
	for _, c := range src["Connection"] {
		for _, name := range strings.Split(c, ",") {
			dst.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range hopByHop {
		delete(dst, k)
	}
}

// countBody counts the request body bytes sent to the endpoint.
type countBody struct {
	io.ReadCloser
	n atomic.Uint64 // read by the handler while the transport may still send
}

func (b *countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(uint64(n))
	return n, err
}
