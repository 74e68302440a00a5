package node

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/lb"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// hashKey extracts and hashes the key of a HASH cluster from a request,
// without allocating. The zero hashKey extracts nothing: every request then
// falls back to round robin inside the hash picker.
type hashKey struct {
	key        sluicev1.HashKey
	name       string
	domainOnly bool
}

func newHashKey(h *sluicev1.HashPolicy) hashKey {
	return hashKey{key: h.GetKey(), name: h.GetName(), domainOnly: h.GetUseDomainOnly()}
}

// http fills r for an HTTP request.
func (k hashKey) http(req *httpproxy.Request, r *lb.Request) {
	var v []byte
	switch k.key {
	case sluicev1.HashKey_HASH_KEY_SOURCE_IP:
		k.ip(req.ClientAddr(), r)
		return
	case sluicev1.HashKey_HASH_KEY_URI:
		v = req.Path()
	case sluicev1.HashKey_HASH_KEY_PATH:
		v = req.Path()
		if i := bytes.IndexByte(v, '?'); i >= 0 {
			v = v[:i]
		}
	case sluicev1.HashKey_HASH_KEY_URL_PARAM:
		v = queryParam(req.Path(), k.name)
	case sluicev1.HashKey_HASH_KEY_HEADER:
		v = req.Header(k.name)
		if k.domainOnly {
			v = domainOnly(v)
		}
	case sluicev1.HashKey_HASH_KEY_COOKIE:
		v = req.Cookie(k.name)
	}
	if v != nil {
		r.Hash, r.HasHash = lb.HashKey(v), true
	}
}

// tcp fills r for a TCP session: only the source address is known.
func (k hashKey) tcp(client net.Addr, r *lb.Request) {
	if k.key != sluicev1.HashKey_HASH_KEY_SOURCE_IP {
		return
	}
	if a, ok := client.(*net.TCPAddr); ok {
		k.ip(a.AddrPort().Addr().Unmap(), r)
	}
}

func (hashKey) ip(a netip.Addr, r *lb.Request) {
	if !a.IsValid() {
		return
	}
	b := a.As16()
	r.Hash, r.HasHash = lb.HashKey(b[:]), true
}

// queryParam returns the value of the first query parameter called name in
// a request target, or nil when there is none (HAProxy's url_param: the
// value runs to the next '&').
func queryParam(target []byte, name string) []byte {
	q := bytes.IndexByte(target, '?')
	if q < 0 {
		return nil
	}
	rest := target[q+1:]
	if i := bytes.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	for len(rest) > 0 {
		pair := rest
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			pair, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			return pair[len(name)+1:]
		}
	}
	return nil
}

// domainOnly reduces a host (with optional port) to its domain label, as
// HAProxy's use_domain_only: "www.example.com:8080" -> "example". A name
// with one label, or an IP literal, is kept whole (without the port).
func domainOnly(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' { // IPv6 literal
		if i := bytes.IndexByte(host, ']'); i >= 0 {
			return host[:i+1]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = bytes.TrimRight(host, ".") // a fully qualified name's root dot
	last := bytes.LastIndexByte(host, '.')
	if last < 0 {
		return host
	}
	if c := host[last+1]; c >= '0' && c <= '9' { // IPv4 literal
		return host
	}
	label := host[:last]
	if i := bytes.LastIndexByte(label, '.'); i >= 0 {
		label = label[i+1:]
	}
	return label
}
