package h2proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file tunnels the Upgrade requests (WebSocket, any protocol but h2c)
// of the HTTP/1.1 clients this engine serves (httpproxy.Config.Translate),
// as the HTTP/1.1 engine does on any other listener: the request goes to
// the endpoint with its Upgrade and "Connection: upgrade"; a 101 Switching
// Protocols goes to the client and the two connections become a tunnel,
// run by the HTTP/1.1 engine's relay (httpproxy.RelayTunnel: the same idle
// limit, half-closes and close reasons). Any other answer is an ordinary
// response, and the client connection goes on in HTTP/1.1.
//
// net/http's client connections would take an Upgrade request, but give
// back the tunnel as a bare io.ReadWriteCloser, without the deadlines the
// relay bounds idleness with, nor the socket the endpoint tracks (to shut
// it down, or close it when the endpoint is removed). So the request goes
// on a connection of its own, dialed as the HTTP/1.1 engine dials
// (Endpoint.DialWithHeader: its TLS, its PROXY header), never pooled: it
// becomes the tunnel or is closed after its answer.
//
// An upgrade routed to an http2 cluster would need extended CONNECT (RFC
// 8441), which the engine does not speak: the client is answered 501
// rather than have its request go on as a plain one.

// textUpgradeHTTP2 is the answer to an upgrade routed to an http2 cluster.
const textUpgradeHTTP2 = "upgrade to an HTTP/2 endpoint is not supported"

// upgrading is the endpoint connection of an Upgrade request.
type upgrading struct {
	ep *upstream.Endpoint
	c  net.Conn      // from ep.DialWithHeader
	br *bufio.Reader // c's reads: what came past the response head is here
	// unwatch stops tying c's deadline to the request's context (see
	// Upstream.upgrade); false: it had fired.
	unwatch func() bool
}

// upgradeFields returns the fields with which r, as Load read it into req,
// asks to switch protocols, or nil when it does not: only an HTTP/1.1
// client can ask (Load writes every head as HTTP/1.1), and an HTTP/2 one's
// Upgrade field has its stream reset before (headers.go).
func upgradeFields(r *http.Request, req *httpproxy.Request) http.Header {
	if _, ok := r.Header["Upgrade"]; !ok || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil
	}
	h := make(http.Header, 2)
	if !req.ForwardUpgrade(h) {
		return nil
	}
	return h
}

// close forgets the connection.
func (u *upgrading) close() {
	u.unwatch()
	u.ep.Close(u.c)
}

// upgrade sends req, an Upgrade request, to ep on a new connection and
// reads the response head, as roundTrip does for other requests. The end
// of req's context (the client gone, response_timeout) ends the wait, and
// a response body's reads. A 101 comes with the connection, to become the
// tunnel; any other response's body closes it when closed.
func (u *Upstream) upgrade(req *http.Request, listener context.Context, ep *upstream.Endpoint, client, local netip.AddrPort, connectTimeout time.Duration) (*http.Response, *upgrading, trip, error) {
	ctx := upstream.WithListener(req.Context(), listener)
	start := time.Now()
	c, err := ep.DialWithHeader(ctx, connectTimeout, false, ep.AppendProxyHeader(nil, client, local))
	if err != nil {
		if !errors.Is(err, upstream.ErrClosed) {
			err = &connectError{err}
		}
		return nil, nil, trip{connect: true}, err
	}
	dialed := time.Since(start)
	up := &upgrading{ep: ep, c: c, br: bufio.NewReader(c)}
	up.unwatch = context.AfterFunc(req.Context(), func() { c.SetDeadline(time.Unix(1, 0)) })
	resp, err := up.exchange(req)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols && !up.unwatch() {
		err = req.Context().Err() // given up as the tunnel began
	}
	if err != nil {
		shut := ep.WasShutDown(c)
		up.close()
		if shut {
			err = errShutdown
		}
		return nil, nil, trip{shut: shut}, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &upgradeBody{ReadCloser: resp.Body, up: up}
	}
	return resp, up, trip{dialed: dialed}, nil
}

// exchange writes req and reads the response head, past interim ones.
func (u *upgrading) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(u.c); err != nil {
		return nil, err
	}
	for range httpproxy.MaxInterim + 1 { // the interim responses (but 101), and the answer
		resp, err := http.ReadResponse(u.br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
	}
	return nil, errors.New("h2proxy: too many interim responses")
}

// upgradeBody closes the connection of a response that did not switch.
type upgradeBody struct {
	io.ReadCloser
	up *upgrading
}

func (b *upgradeBody) Close() error {
	err := b.ReadCloser.Close()
	b.up.close()
	return err
}

// tunnel relays the endpoint's 101 to the client of w, takes its
// connection from net/http, and runs the tunnel on the two until it ends.
// The connection's record takes the tunnel's close reason, and the client
// connection ends with it (ServeConn returns, and its caller closes it).
// The tunnel's bytes are the request's in the meter and the endpoint's
// counters (the relay counts them as they move), and the endpoint counts
// it in flight until it ends.
func (cn *conn) tunnel(w http.ResponseWriter, resp *http.Response, up *upgrading, st *stream, hcfg *httpproxy.Config) {
	defer up.close()
	h := w.Header()
	copyHeader(h, resp.Header)
	st.req.EditResponseHeader(h)
	h["Upgrade"] = resp.Header["Upgrade"] // the protocol switched to
	h.Set("Connection", "upgrade")
	st.mx.Status = resp.StatusCode

	_, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not an HTTP/1.x connection: a bug
	}
	if cn.nc.screen != nil {
		cn.nc.screen.tunnelled() // no more requests: the tunnel's bytes
	}
	// net/http is done with the connection: ServeHTTP tells ServeConn
	// when the tunnel is.
	st.hijacked = true

	reason := cn.switchProtocols(brw, resp, h, up, st, hcfg.TunnelIdleTimeout)
	up.ep.Transferred(st.mx.BytesOut, st.mx.BytesIn)
	if reason == 0 {
		in, out, why := httpproxy.RelayTunnel(halfCloser{cn.nc}, up.c, up.ep, hcfg.Meter, hcfg.TunnelIdleTimeout)
		st.mx.BytesIn += in
		st.mx.BytesOut += out
		st.mx.CountedIn, st.mx.CountedOut = in, out
		reason = why
	}
	st.mx.Cause = reason
	cn.mu.Lock()
	cn.tunneled = reason
	cn.mu.Unlock()
}

// switchProtocols writes the 101 head h to the client, then what each side
// sent past its head, which belongs to the tunnel already. A write that
// fails returns the close reason; 0 when all went.
func (cn *conn) switchProtocols(brw *bufio.ReadWriter, resp *http.Response, h http.Header, up *upgrading, st *stream, idle time.Duration) sluicev1.CloseReason {
	deadline := time.Now().Add(idle)
	cn.nc.SetWriteDeadline(deadline)
	brw.WriteString("HTTP/1.1 " + resp.Status + "\r\n")
	h.Write(brw)
	brw.WriteString("\r\n")
	if n := up.br.Buffered(); n > 0 {
		b, _ := up.br.Peek(n)
		brw.Write(b)
		st.mx.BytesOut += uint64(n)
	}
	if err := brw.Flush(); err != nil {
		return httpproxy.TunnelWriteReason(err, up.ep, up.c, false)
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		up.c.SetWriteDeadline(deadline)
		if _, err := up.c.Write(b); err != nil {
			return httpproxy.TunnelWriteReason(err, up.ep, up.c, true)
		}
		st.mx.BytesIn += uint64(n)
	}
	return 0
}

// halfCloser is the client connection of a tunnel: the relay passes a
// half-close on through CloseWrite. countConn does not have it itself,
// on purpose: net/http would half-close and linger on every connection it
// ends.
type halfCloser struct{ *countConn }

func (c halfCloser) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
