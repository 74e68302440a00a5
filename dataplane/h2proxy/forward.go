package h2proxy

import (
	"net/http"
	"net/netip"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// Forwarding is which headers tell endpoints who the client is, and which
// peers are proxies whose own such headers are believed (the listener's
// http.forwarding; see the Forwarding message of the snapshot).
type Forwarding struct {
	// XForwarded writes X-Forwarded-For, X-Forwarded-Proto and
	// X-Forwarded-Host; RFC7239 writes Forwarded.
	XForwarded, RFC7239 bool
	// Trusted are the peers whose headers are kept and appended to.
	Trusted []netip.Prefix
}

// NewForwarding compiles a listener's forwarding block (nil: the default,
// X-Forwarded-* with no trusted peers). Peers that do not parse are left
// out; snapshot validation refuses them first.
func NewForwarding(f *sluicev1.Forwarding) Forwarding {
	var out Forwarding
	switch f.GetStyle() {
	case sluicev1.ForwardedStyle_FORWARDED_STYLE_UNSPECIFIED, sluicev1.ForwardedStyle_FORWARDED_STYLE_X_FORWARDED:
		out.XForwarded = true
	case sluicev1.ForwardedStyle_FORWARDED_STYLE_RFC7239:
		out.RFC7239 = true
	case sluicev1.ForwardedStyle_FORWARDED_STYLE_BOTH:
		out.XForwarded, out.RFC7239 = true, true
	}
	for _, p := range f.GetTrustedPeers() {
		if pr, err := snapshot.ParseSource(p); err == nil {
			out.Trusted = append(out.Trusted, pr)
		}
	}
	return out
}

func (f *Forwarding) trusts(peer netip.Addr) bool {
	for _, p := range f.Trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// apply writes the forwarding headers into h, the fields of a request that
// came from peer for host, over TLS or not. From a trusted peer the
// client is appended to what it sent and its proto and host are kept;
// from any other, what the client sent is replaced.
func (f *Forwarding) apply(h http.Header, host string, peer netip.Addr, tls bool) {
	if !f.XForwarded && !f.RFC7239 {
		return
	}
	peer = peer.Unmap()
	proto := "http"
	if tls {
		proto = "https"
	}
	trusted := f.trusts(peer)
	if !trusted {
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
			delete(h, k)
		}
	}
	client := peer.String()
	if f.XForwarded {
		if prev := h.Values("X-Forwarded-For"); len(prev) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prev, ", ")+", "+client)
		} else {
			h.Set("X-Forwarded-For", client)
		}
		if h.Get("X-Forwarded-Proto") == "" {
			h.Set("X-Forwarded-Proto", proto)
		}
		if h.Get("X-Forwarded-Host") == "" && host != "" {
			h.Set("X-Forwarded-Host", host)
		}
	}
	if f.RFC7239 {
		elem := "for=" + forwardedNode(peer) + ";proto=" + proto
		if host != "" {
			elem += ";host=" + forwardedValue(host)
		}
		if prev := h.Values("Forwarded"); len(prev) > 0 {
			elem = strings.Join(prev, ", ") + ", " + elem
		}
		h.Set("Forwarded", elem)
	}
}

// forwardedNode is an address as RFC 7239 §6 writes it: IPv6 in brackets
// and quotes.
func forwardedNode(a netip.Addr) string {
	if a.Is6() {
		return `"[` + a.String() + `]"`
	}
	return a.String()
}

// forwardedValue quotes v unless it is a token (RFC 7239 §4).
func forwardedValue(v string) string {
	if snapshot.IsToken(v) {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
