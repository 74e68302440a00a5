package httpproxy

import (
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// BenchmarkProxyKeepAliveSendProxy is BenchmarkProxyKeepAlive to an
// endpoint with send_proxy: the client connection's private endpoint
// connection is parked and taken again between requests, at no allocation
// either.
func BenchmarkProxyKeepAliveSendProxy(b *testing.B) {
	addr := loopback.FixedBackend(b, benchResponse) // v1: one header line before the first request's
	ep := upstream.New("web", "b1", addr)
	ep.SetSendProxy(1)
	p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	benchClient(b, p.addr, len(benchResponse))
}
