package node

import (
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/rules"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// forwardingStyles maps the snapshot's styles to the proxy's; unset is
// X_FORWARDED, as HAProxy's "option forwardfor" and Envoy users expect.
var forwardingStyles = map[sluicev1.ForwardedStyle]httpproxy.ForwardedHeaders{
	sluicev1.ForwardedStyle_FORWARDED_STYLE_UNSPECIFIED: httpproxy.ForwardXForwarded,
	sluicev1.ForwardedStyle_FORWARDED_STYLE_X_FORWARDED: httpproxy.ForwardXForwarded,
	sluicev1.ForwardedStyle_FORWARDED_STYLE_RFC7239:     httpproxy.ForwardRFC7239,
	sluicev1.ForwardedStyle_FORWARDED_STYLE_BOTH:        httpproxy.ForwardBoth,
	sluicev1.ForwardedStyle_FORWARDED_STYLE_NONE:        httpproxy.ForwardNone,
}

// forwardingConfig puts a listener's forwarding block into cfg. Trusted
// peers are looked up as rules look up sources. Apply validated the
// snapshot, which refuses peers that do not parse; should one get here
// still, no peer is trusted, which fails safe.
func forwardingConfig(f *sluicev1.Forwarding, cfg *httpproxy.Config) {
	cfg.Forwarded = forwardingStyles[f.GetStyle()]
	if peers := f.GetTrustedPeers(); len(peers) > 0 {
		if set, err := rules.NewSources(peers); err == nil {
			cfg.TrustedPeers = set
		}
	}
	cfg.ClientFromHeaders = f.GetClientFromHeaders() && cfg.TrustedPeers != nil
	cfg.ClientHeader = f.GetClientHeader()
}

// DefaultRequestIDHeader carries request ids when request_id names no
// header: Envoy's and most tracing tools' field.
const DefaultRequestIDHeader = "X-Request-ID"
