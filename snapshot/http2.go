package snapshot

import (
	"fmt"
	"slices"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// H2C reports whether listener l takes cleartext HTTP/2 with prior
// knowledge: an HTTP listener without tls does unless its http.h2c is
// false (HAProxy and Envoy tell the HTTP/2 preface from HTTP/1.1 by
// default too).
func H2C(l *sluicev1.Listener) bool {
	h := l.GetHttp()
	return l.GetProtocol() == sluicev1.Protocol_PROTOCOL_HTTP && l.GetTls() == nil && (h == nil || h.H2C == nil || *h.H2C)
}

// http2Errors checks how listener l speaks HTTP/2: h2c is cleartext
// HTTP/2, so not on a TLS listener (which offers h2 in ALPN instead); ALPN
// names each protocol once; a stream limit needs a listener that speaks
// HTTP/2 at all.
func http2Errors(l *sluicev1.Listener, p string, add func(path, format string, args ...any)) {
	h, t := l.GetHttp(), l.GetTls()
	if h.GetH2C() && t != nil {
		add(p+".http.h2c", "h2c is HTTP/2 without TLS; on a listener with tls, HTTP/2 is offered in tls.alpn (\"h2\", the default)")
	}
	alpn := t.GetAlpn()
	for i, proto := range alpn {
		if first := slices.Index(alpn, proto); first < i {
			add(fmt.Sprintf("%s.tls.alpn[%d]", p, i), "%q is already listed at tls.alpn[%d]", proto, first)
		}
	}
	speaks := H2C(l) || t != nil && (len(alpn) == 0 || slices.Contains(alpn, "h2"))
	switch {
	case h.GetMaxConcurrentStreams() == 0 || speaks:
	case t == nil:
		add(p+".http.max_concurrent_streams", "the listener does not speak HTTP/2: its http.h2c is false")
	default:
		add(p+".http.max_concurrent_streams", "the listener does not speak HTTP/2: its tls.alpn does not offer \"h2\"")
	}
}
