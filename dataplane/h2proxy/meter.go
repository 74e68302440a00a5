package h2proxy

import (
	"net/http"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
)

// meterStart begins metering the request r in st (see the HTTP/1.1
// engine's meter.go): the access log's sampling is decided first, and
// what it needs of the request is copied only when it samples it.
func (cn *conn) meterStart(st *stream, m *meter.Listener, r *http.Request) {
	st.mx = meter.Exchange{Start: time.Now(), Client: cn.client, Proto: meter.ProtoHTTP2}
	if m == nil {
		return
	}
	if r.ProtoMajor == 1 {
		st.mx.Proto = meter.ProtoHTTP11
		if r.ProtoMinor == 0 {
			st.mx.Proto = meter.ProtoHTTP10
		}
	}
	if st.mx.Logged = m.Sample(); !st.mx.Logged {
		return
	}
	b := append(st.logBuf[:0], r.Method...)
	h := len(b)
	b = append(b, r.Host...)
	p := len(b)
	b = append(b, r.RequestURI...)
	st.logBuf = b
	st.mx.Method, st.mx.Host, st.mx.Path = b[:h], b[h:p], b[p:]
}

// meterDone counts the request metered in st. Its bytes are those of the
// request and response bodies: the connection's framing is shared by its
// streams.
func (cn *conn) meterDone(st *stream, m *meter.Listener) {
	if m == nil {
		return
	}
	st.mx.Total = time.Since(st.mx.Start)
	m.Done(&st.mx)
}

// meterRefused counts a request head that net/http refused and answered
// itself (refusal), as the HTTP/1.1 engine counts its own refusals: the
// status the client got, and the end of the connection. Its bytes are
// those of the bodies, as for streams: none read, and the answer's.
func (cn *conn) meterRefused(m *meter.Listener, r *refusal) {
	if m == nil {
		return
	}
	mx := meter.Exchange{Start: r.at, Client: cn.client, Proto: meter.ProtoHTTP11, Status: r.status,
		BytesOut: r.body, Cause: r.reason}
	mx.Logged = m.Sample()
	m.Done(&mx)
}
