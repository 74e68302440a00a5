package node

import (
	"github.com/sluice-lb/sluice/dataplane/h2proxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// h2Config is the HTTP/2 engine's configuration of HTTP listener ls.
func h2Config(ls *sluicev1.Listener) *h2proxy.Config {
	h := ls.GetHttp()
	return &h2proxy.Config{
		MaxConcurrentStreams: h.GetMaxConcurrentStreams(),
	}
}

// http2 reports whether the listener may route to a cluster whose
// endpoints speak HTTP/2: its HTTP/1.1 clients are then served by the
// HTTP/2 engine too (httpproxy.Config.Translate), which can talk to them.
func (rt *routing) http2() bool {
	if rt.def.spec.GetHttp2() {
		return true
	}
	for _, c := range rt.routes {
		if c.spec.GetHttp2() {
			return true
		}
	}
	return false
}

// endpointProtocol is how the HTTP/2 engine speaks to ep: as its cluster
// in the running configuration says (a cluster gone from it, as it was:
// HTTP/1.1 then, which its endpoints, being retired, see little of).
func (n *Node) endpointProtocol(ep *upstream.Endpoint) h2proxy.Protocol {
	var p h2proxy.Protocol
	if cur := n.current.Load(); cur != nil {
		if c, ok := (*cur)[ep.Cluster]; ok {
			p.HTTP2 = c.spec.GetHttp2()
		}
	}
	p.TLS = ep.TLSConfig() // nil for a plain cluster; dialTLS clones it to set ALPN
	return p
}
