package httpproxy

import (
	"net/netip"
)

// This file holds the forwarding headers: what the proxy tells endpoints
// about the client (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host,
// RFC 7239 Forwarded).
//
// The client is the peer the engine already knows (Request.PeerAddr). A
// peer in Config.TrustedPeers is a proxy in front of this one, whose
// headers are believed: the client address is appended to the
// X-Forwarded-For and Forwarded it sent, and its X-Forwarded-Proto and
// X-Forwarded-Host are kept. From any other peer the headers of the
// configured style are removed, whatever their case and however many, and
// written anew, so that a client cannot pass an address of its choosing
// for its own. The headers are written into the request head the endpoint
// gets, before the header edits of rules (EditRequest), which can thus
// still remove or replace them. Writing them costs no allocation.

// ForwardedHeaders is which forwarding headers the proxy writes.
type ForwardedHeaders uint8

const (
	// ForwardXForwarded writes X-Forwarded-For, X-Forwarded-Proto and
	// X-Forwarded-Host (the zero value: what HAProxy's "option forwardfor"
	// and Envoy users expect).
	ForwardXForwarded ForwardedHeaders = iota
	// ForwardRFC7239 writes Forwarded: for=...;proto=...;host=... .
	ForwardRFC7239
	// ForwardBoth writes both kinds.
	ForwardBoth
	// ForwardNone writes none and forwards what the client sent as it is.
	ForwardNone
)

func (f ForwardedHeaders) xForwarded() bool { return f == ForwardXForwarded || f == ForwardBoth }
func (f ForwardedHeaders) rfc7239() bool    { return f == ForwardRFC7239 || f == ForwardBoth }

// owns reports whether the style writes fields of kind, which are then
// replaced when the peer is not trusted.
func (f ForwardedHeaders) owns(kind uint8) bool {
	switch kind {
	case fieldXForwardedFor, fieldXForwardedProto, fieldXForwardedHost:
		return f.xForwarded()
	case fieldForwarded:
		return f.rfc7239()
	}
	return false
}

// isForwarding reports whether kind is one of the forwarding headers.
func isForwarding(kind uint8) bool { return kind >= fieldXForwardedFor && kind <= fieldForwarded }

// Peers is a set of addresses: the proxies in front whose forwarding
// headers are believed (Config.TrustedPeers). Contains is called once per
// client connection and configuration, on the connection's goroutine; it
// must not block.
type Peers interface {
	Contains(a netip.Addr) bool
}

// Trusts reports whether a is one of c's TrustedPeers.
func (c *Config) Trusts(a netip.Addr) bool {
	return c.TrustedPeers != nil && a.IsValid() && c.TrustedPeers.Contains(a)
}

// forwarding is what appendRequestHead needs to write the forwarding
// headers of one request: the style, whether the peer is trusted, and
// where the peer's own headers are (from Request.semantics).
type forwarding struct {
	on      bool // set by pick: a Request parsed outside a connection has none
	style   ForwardedHeaders
	trusted bool
	lastXFF int16 // index of the last X-Forwarded-For field forwarded, or -1
	lastFwd int16 // of the last Forwarded field, or -1
	xfProto bool  // an X-Forwarded-Proto field is forwarded
	xfHost  bool  // an X-Forwarded-Host field is forwarded
}

// locate records where the forwarding fields of the head are, once
// Connection had its say on which fields are forwarded.
func (fw *forwarding) locate(fields []field) {
	fw.lastXFF, fw.lastFwd, fw.xfProto, fw.xfHost = -1, -1, false, false
	for i := range fields {
		f := &fields[i]
		if f.drop {
			continue
		}
		switch f.kind {
		case fieldXForwardedFor:
			fw.lastXFF = int16(i)
		case fieldForwarded:
			fw.lastFwd = int16(i)
		case fieldXForwardedProto:
			fw.xfProto = true
		case fieldXForwardedHost:
			fw.xfHost = true
		}
	}
}

// keeps reports whether a field of kind the client sent is forwarded.
func (fw *forwarding) keeps(kind uint8) bool {
	return !fw.on || fw.trusted || !fw.style.owns(kind)
}

// writes reports whether the proxy writes forwarding headers.
func (fw *forwarding) writes() bool { return fw.on && fw.style != ForwardNone }

// appendForwardedField writes the field at index i of r, a forwarding
// field that is kept, with the client appended when it is the last
// X-Forwarded-For or Forwarded of a trusted peer.
func appendForwardedField(b []byte, r *Request, i int, f *field) []byte {
	h := r.head
	b = append(b, f.name.of(h)...)
	b = append(b, ": "...)
	b = append(b, f.value.of(h)...)
	fw := &r.fwd
	switch {
	case !fw.on || !fw.trusted:
	case f.kind == fieldXForwardedFor && int(fw.lastXFF) == i && fw.style.xForwarded() && r.peer.IsValid():
		b = append(b, ", "...)
		b = r.peer.WithZone("").AppendTo(b)
	case f.kind == fieldForwarded && int(fw.lastFwd) == i && fw.style.rfc7239():
		b = append(b, ", "...)
		b = appendForwardedElement(b, r)
	}
	return append(b, '\r', '\n')
}

// appendForwardingFields writes the forwarding fields the proxy adds: those
// of the style that the peer did not send or is not trusted with. A field
// that the request's header edits remove is left out (the edits may set
// their own).
func appendForwardingFields(b []byte, r *Request) []byte {
	fw := &r.fwd
	if fw.style.xForwarded() {
		if !(fw.trusted && fw.lastXFF >= 0) && r.peer.IsValid() && !droppedLower(r.reqEdits, "x-forwarded-for") {
			b = append(b, "X-Forwarded-For: "...)
			b = r.peer.WithZone("").AppendTo(b)
			b = append(b, '\r', '\n')
		}
		if !(fw.trusted && fw.xfProto) && !droppedLower(r.reqEdits, "x-forwarded-proto") {
			b = append(b, "X-Forwarded-Proto: "...)
			b = append(b, r.scheme()...)
			b = append(b, '\r', '\n')
		}
		if host := r.Host(); len(host) > 0 && !(fw.trusted && fw.xfHost) && !droppedLower(r.reqEdits, "x-forwarded-host") {
			b = append(b, "X-Forwarded-Host: "...)
			b = append(b, host...)
			b = append(b, '\r', '\n')
		}
	}
	if fw.style.rfc7239() && !(fw.trusted && fw.lastFwd >= 0) && !droppedLower(r.reqEdits, "forwarded") {
		b = append(b, "Forwarded: "...)
		b = appendForwardedElement(b, r)
		b = append(b, '\r', '\n')
	}
	return b
}

// scheme is the protocol the client spoke to the proxy.
func (r *Request) scheme() string {
	if r.tls {
		return "https"
	}
	return "http"
}

// appendForwardedElement writes the forwarded-element of RFC 7239 §4 for
// this hop: for= the client (an IPv6 address bracketed and quoted, §6;
// "unknown" when there is none), proto= the scheme and host= the Host,
// quoted when it is not a token (a port's ':' is not).
func appendForwardedElement(b []byte, r *Request) []byte {
	b = append(b, "for="...)
	switch a := r.peer.WithZone(""); {
	case !a.IsValid():
		b = append(b, "unknown"...)
	case a.Is4() || a.Is4In6():
		b = a.Unmap().AppendTo(b)
	default:
		b = append(b, `"[`...)
		b = a.AppendTo(b)
		b = append(b, `]"`...)
	}
	b = append(b, ";proto="...)
	b = append(b, r.scheme()...)
	if host := r.Host(); len(host) > 0 {
		b = append(b, ";host="...)
		b = appendTokenOrQuoted(b, host)
	}
	return b
}

// appendTokenOrQuoted writes v as a token when it is one, else as a
// quoted-string (RFC 9110 §5.6.4).
func appendTokenOrQuoted(b, v []byte) []byte {
	token := true
	for _, c := range v {
		if !isToken[c] {
			token = false
			break
		}
	}
	if token {
		return append(b, v...)
	}
	b = append(b, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}
