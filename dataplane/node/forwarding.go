package node

import (
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
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

// forwardingConfig puts a listener's forwarding block into cfg. Validation
// refused peers that do not parse, so none is left out here but in a
// snapshot that skipped it.
func forwardingConfig(f *sluicev1.Forwarding, cfg *httpproxy.Config) {
	cfg.Forwarded = forwardingStyles[f.GetStyle()]
	for _, s := range f.GetTrustedPeers() {
		if p, err := snapshot.ParsePeer(s); err == nil {
			cfg.TrustedPeers = append(cfg.TrustedPeers, p)
		}
	}
}
