package health

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/snapshot"
)

// h2Check is httpCheck for the endpoints of a cluster with http2 (Spec.HTTP2),
// which may speak nothing but HTTP/2 (gRPC servers, h2c-only services): the
// same request as one HTTP/2 stream, over a fresh connection each time,
// h2 in ALPN over TLS, h2c with prior knowledge in clear, as the node's
// HTTP/2 engine speaks to them. The framing is net/http's client
// connection (Transport.NewClientConn, as dataplane/h2proxy uses), over
// the connection the check's connector opened (PROXY header, TLS). The
// endpoint passes iff the status of the response head is in expect; the
// body is not read.
type h2Check struct {
	connector
	timeout time.Duration
	expect  snapshot.StatusSpec
	addr    string // the endpoint's, naming the client connection
	// req is the request, built once; nil when it could not be sent as
	// configured (see httpCheck.req).
	req *http.Request
	t   *http.Transport
}

func newH2Check(s Spec, cn connector) *h2Check {
	if cn.tls != nil {
		cn.tls.NextProtos = []string{"h2"}
	}
	h := &h2Check{connector: cn, timeout: s.Timeout, expect: s.Expect, addr: s.Addr}
	var p http.Protocols
	// Prior knowledge over the connection given, TLS or not: ALPN, if
	// any, was the connector's.
	p.SetUnencryptedHTTP2(true)
	h.t = &http.Transport{
		Protocols:          &p,
		DisableCompression: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return ctx.Value(checkConnKey{}).(net.Conn), nil
		},
	}
	method, host, ok := s.httpTarget()
	if !ok {
		return h
	}
	path, query, _ := strings.Cut(s.HTTPPath, "?")
	h.req = &http.Request{
		Method: method,
		URL:    &url.URL{Scheme: "http", Host: host, Opaque: path, RawQuery: query},
		Host:   host,
		Header: http.Header{"User-Agent": {"sluice-health"}},
	}
	return h
}

// checkConnKey carries a check's connection to its transport's dial.
type checkConnKey struct{}

// plainConn hides a *tls.Conn from net/http, which would otherwise look
// at its ALPN itself: the connector checked it.
type plainConn struct{ net.Conn }

// errNoH2 fails the check of a TLS endpoint that did not choose h2.
var errNoH2 = errors.New("TLS: the endpoint did not choose h2 in ALPN")

func (h *h2Check) check(ctx context.Context) error {
	if h.req == nil {
		return errUnsendable
	}
	deadline := time.Now().Add(h.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := h.connect(ctx, deadline)
	if err != nil {
		return err
	}
	defer conn.Close()
	if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol != "h2" {
		return errNoH2
	}
	cc, err := h.t.NewClientConn(context.WithValue(ctx, checkConnKey{}, net.Conn(plainConn{conn})), "http", h.addr)
	if err != nil {
		return h2Failure(err, h.timedOut)
	}
	defer cc.Close()
	resp, err := cc.RoundTrip(h.req.WithContext(ctx))
	if err != nil {
		return h2Failure(err, h.timedOut)
	}
	resp.Body.Close()
	if !h.expect.Contains(resp.StatusCode) {
		return errors.New("status " + strconv.Itoa(resp.StatusCode))
	}
	return nil
}

// h2Failure says why an HTTP/2 exchange failed: as failure does for the
// errors of the socket, else net/http's text (an endpoint that answers
// HTTP/1.1 to the HTTP/2 preface, say) after "HTTP/2: ".
func h2Failure(err, timedOut error) error {
	if f := failure(err, timedOut); f != err {
		return f
	}
	return errors.New("HTTP/2: " + err.Error())
}

var _ prober = (*h2Check)(nil)
