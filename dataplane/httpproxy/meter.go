package httpproxy

import (
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
)

// Metering: every request a client connection carries is counted in the
// listener's meter (Config.Meter) and, when the access log samples it,
// logged. The exchange keeps the meter.Exchange it fills (x.mx), and the
// copies of the request's method, host and path the log needs (x.logBuf),
// so that metering allocates nothing; the client connection keeps where
// its byte counts stood at the end of the previous request.

// meterStart begins metering the request whose head was just parsed (with
// parsed false, a request refused before its head could be). The access
// log's sampling is decided here, before anything is copied for it.
func (cc *clientConn) meterStart(m *meter.Listener, parsed bool) {
	if m == nil {
		return
	}
	x := cc.x
	mx := &x.mx
	*mx = meter.Exchange{Start: time.Now(), Client: netip.AddrPortFrom(cc.ip, cc.port), Proto: meter.ProtoHTTP11}
	if parsed && x.req.minor == 0 {
		mx.Proto = meter.ProtoHTTP10
	}
	if mx.Logged = m.Sample(); !mx.Logged || !parsed {
		return
	}
	// The request's slices go stale once its body is read: copy them.
	req := &x.req
	b := append(x.logBuf[:0], req.Method()...)
	h := len(b)
	b = append(b, req.Host()...)
	p := len(b)
	b = append(b, req.Path()...)
	x.logBuf = b
	mx.Method, mx.Host, mx.Path = b[:h], b[h:p], b[p:]
}

// meterDone counts the request metered since meterStart; keep is whether
// the client connection stays open after it (when not, cc.reason says why
// it ends).
func (cc *clientConn) meterDone(m *meter.Listener, keep bool) {
	if m == nil {
		return
	}
	x := cc.x
	mx := &x.mx
	mx.Total = time.Since(mx.Start)
	in := cc.info.BytesIn
	if keep {
		// Bytes of the next requests, read with this one (pipelined),
		// are theirs.
		in -= uint64(x.re - x.rs)
	}
	mx.BytesIn, mx.BytesOut = in-cc.inMark, cc.info.BytesOut-cc.outMark
	cc.inMark, cc.outMark = in, cc.info.BytesOut
	if !keep {
		mx.Cause = cc.reason
	}
	m.Done(mx)
}

// meterRefused counts a request the proxy refused before it was routed
// (400, 408, 413, 414, 431...): the client got status, and the connection
// ends.
func (cc *clientConn) meterRefused(status int) {
	m := cc.srv.cfg.Load().Meter
	if m == nil {
		return
	}
	cc.meterStart(m, false)
	cc.x.mx.Status = status
	cc.meterDone(m, false)
}

// ResponseStatus reads the status code of a status line "HTTP/1.x NNN ...", as
// the proxy's own answers start; 0 if b is not one.
func ResponseStatus(b []byte) int {
	if len(b) < 12 {
		return 0
	}
	n := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
