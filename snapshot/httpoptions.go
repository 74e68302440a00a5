package snapshot

import (
	"fmt"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// minHeaderBytes is the least max_header_bytes that leaves room for a
// request: a smaller bound would refuse every browser's head.
const minHeaderBytes = 256

// httpOptionErrors checks what PGV cannot of an HTTP listener's options:
// that trusted peers parse and mean something (as does taking the client
// from their headers), and that the head limit leaves room for a request.
func httpOptionErrors(h *sluicev1.HttpOptions, path string, add func(path, format string, args ...any)) {
	if n := h.GetMaxHeaderBytes(); n != 0 && n < minHeaderBytes {
		add(path+".max_header_bytes", "must be 0 (the default, 65535) or at least %d", minHeaderBytes)
	}
	f := h.GetForwarding()
	for i, s := range f.GetTrustedPeers() {
		if _, err := ParseSource(s); err != nil {
			add(fmt.Sprintf("%s.forwarding.trusted_peers[%d]", path, i), "%v", err)
		}
	}
	readsHeader := f.GetClientFromHeaders() && f.GetClientHeader() != "" || h.GetRequestId() != nil
	if len(f.GetTrustedPeers()) > 0 && f.GetStyle() == sluicev1.ForwardedStyle_FORWARDED_STYLE_NONE && !readsHeader {
		add(path+".forwarding.trusted_peers", "has no effect when style is NONE (no forwarding header is written or read), unless client_header or request_id reads a trusted peer's")
	}
	if id := h.GetRequestId(); id != nil {
		switch n := id.GetHeader(); {
		case n == "":
		case !IsToken(n):
			add(path+".request_id.header", notHeaderName, n)
		case ProxyField(n) || forwardingField(n):
			add(path+".request_id.header", "%s is a field the proxy writes itself", n)
		case id.GetInResponse() && clientReadsField(n):
			add(path+".request_id.header", "%s has a meaning to the client: with in_response, the id would replace the endpoint's", n)
		}
	}
	if f.GetClientFromHeaders() && len(f.GetTrustedPeers()) == 0 {
		add(path+".forwarding.client_from_headers", "needs trusted_peers: the proxies in front whose headers name the client")
	}
	if h := f.GetClientHeader(); h != "" {
		p := path + ".forwarding.client_header"
		switch {
		case !f.GetClientFromHeaders():
			add(p, "needs client_from_headers: true")
		case !IsToken(h):
			add(p, notHeaderName, h)
		case strings.EqualFold(h, "Forwarded"):
			add(p, "Forwarded is read with style RFC7239 (or BOTH), not as a client_header")
		case ProxyField(h):
			add(p, "%s is a field the proxy owns, which names no client", h)
		}
	}
}

// clientReadsField reports whether name (any case) is a response field
// whose value the client acts on (RFC 9110, 9111, 6265): an id put in its
// place (request_id.in_response) would break the response.
func clientReadsField(name string) bool {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "content-") {
		return true
	}
	switch n {
	case "set-cookie", "location", "retry-after", "cache-control", "expires", "date",
		"etag", "last-modified", "vary", "age", "www-authenticate", "proxy-authenticate",
		"allow", "accept-ranges", "trailer", "alt-svc", "strict-transport-security":
		return true
	}
	return false
}

// forwardingField reports whether name (any case) is one of the forwarding
// headers the proxy writes (forwarding.style).
func forwardingField(name string) bool {
	switch strings.ToLower(name) {
	case "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host":
		return true
	}
	return false
}
