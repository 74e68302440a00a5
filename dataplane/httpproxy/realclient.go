package httpproxy

import (
	"bytes"
	"net/netip"
	"strconv"
)

// This file finds the client that proxies in front name in their
// forwarding headers (Config.ClientFromHeaders), or in a field of their
// own (Config.ClientHeader: X-Real-IP), as nginx's real_ip module with
// real_ip_recursive and Envoy's XFF with trusted addresses do.
//
// Each proxy on the way appends the address of its own peer, so the list
// is read from its right: the entries that trusted peers appended are
// believed, and the first address that is not a trusted peer is the
// client. Anything left of it was written by the client itself and is not
// read. An entry that is not an address ("unknown", an obfuscated name)
// ends the walk, and the client is the address to its right: the trusted
// proxy that wrote the entry, as it could not name its own peer. No entry
// makes any other address the client.

// clientFromHeaders returns the client that the forwarding headers of r,
// which came from a trusted peer, name; ok is false when they name none
// (no header of the style, or its last entry is not an address).
// The fields named header are read when it is not "", as lists of
// addresses like X-Forwarded-For. Else X-Forwarded-For is read when the
// style writes it and r has one, else the for= of Forwarded when the style
// writes that.
func (r *Request) clientFromHeaders(peers Peers, header string) (client netip.AddrPort, ok bool) {
	fw := &r.fwd
	var w clientWalk
	w.peers = peers
	switch {
	case header != "":
		for i := 0; i < r.nf; i++ {
			if f := &r.fields[i]; !f.drop && equalFoldASCII(f.name.of(r.head), header) {
				w.xForwardedFor(f.value.of(r.head))
			}
		}
	case fw.style.xForwarded() && fw.lastXFF >= 0:
		for i := 0; i <= int(fw.lastXFF); i++ {
			if f := &r.fields[i]; f.kind == fieldXForwardedFor && !f.drop {
				w.xForwardedFor(f.value.of(r.head))
			}
		}
	case fw.style.rfc7239() && fw.lastFwd >= 0:
		for i := 0; i <= int(fw.lastFwd); i++ {
			if f := &r.fields[i]; f.kind == fieldForwarded && !f.drop {
				w.forwarded(f.value.of(r.head))
			}
		}
	default:
		return netip.AddrPort{}, false
	}
	return w.client, w.client.IsValid()
}

// clientWalk reads the entries of a forwarding list from left to right
// and keeps the answer that reading them from the right would give, were
// the list to end there: the rightmost entry that is an address and not
// a trusted peer; the leftmost address when every entry is a trusted
// one; and, right of an entry that is not an address, the address next to
// it. Reading from the left lets one pass serve Forwarded, whose quoted
// strings may hold commas, and needs no copy of the list.
type clientWalk struct {
	peers  Peers
	client netip.AddrPort // the answer so far; zero after a bad entry
}

func (w *clientWalk) entry(a netip.AddrPort, ok bool) {
	switch {
	case !ok:
		w.client = netip.AddrPort{}
	case !w.peers.Contains(a.Addr()):
		w.client = a
	case !w.client.IsValid():
		// The first address of the list, or the first after a bad entry.
		w.client = a
	}
	// A trusted address after an address changes nothing: the walk from
	// the right passes it on to the one before.
}

// xForwardedFor reads one X-Forwarded-For field: addresses separated by
// commas.
func (w *clientWalk) xForwardedFor(v []byte) {
	listElements(v, func(e []byte) bool {
		w.entry(parseNode(e))
		return true
	})
}

// forwarded reads one Forwarded field (RFC 7239 §4): elements separated by
// commas, each pairs separated by semicolons, a pair a token, '=' and a
// value. An element's node is its for=; one without, with two, or that
// does not parse is not an address.
func (w *clientWalk) forwarded(v []byte) {
	for v = trimOWS(v); len(v) > 0; v = trimOWS(v) {
		if v[0] == ',' {
			v = v[1:] // an empty element (RFC 9110 §5.6.1)
			continue
		}
		var node []byte
		fors := 0
		for {
			v = trimOWS(v)
			n := 0
			for n < len(v) && isToken[v[n]] {
				n++
			}
			name, rest := v[:n], trimOWS(v[n:])
			if n == 0 || len(rest) == 0 || rest[0] != '=' {
				fors, v = -1, skipElement(v)
				break
			}
			value, rest, ok := forwardedValue(trimOWS(rest[1:]))
			if !ok {
				fors, v = -1, skipElement(rest)
				break
			}
			if equalFold(name, "for") {
				node, fors = value, fors+1
			}
			if v = trimOWS(rest); len(v) > 0 && v[0] == ';' {
				v = v[1:]
				continue
			}
			if len(v) > 0 && v[0] != ',' {
				fors = -1
			}
			v = skipElement(v)
			break
		}
		if fors == 1 {
			w.entry(parseNode(node))
		} else {
			w.entry(netip.AddrPort{}, false)
		}
	}
}

// forwardedValue splits a Forwarded pair's value, a token or a quoted
// string, from what follows it; a quoted string is returned without its
// quotes (an escape in it is kept: it makes no address).
func forwardedValue(v []byte) (value, rest []byte, ok bool) {
	if len(v) > 0 && v[0] == '"' {
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++ // the string goes on past what it escapes
			case '"':
				return v[1:i], v[i+1:], true
			}
		}
		return nil, nil, false // unterminated
	}
	i := 0
	for i < len(v) && v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t' {
		i++
	}
	return v[:i], v[i:], i > 0
}

// skipElement returns what follows the next comma of v that is not in a
// quoted string: the rest of a Forwarded list past a malformed element.
func skipElement(v []byte) []byte {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			return v[i+1:]
		}
	}
	return nil
}

// parseNode reads the address of a list entry: an IPv4 or IPv6 address,
// either with a port (1.2.3.4:5, [2001:db8::1]:5), an IPv6 address in
// brackets. A zone, a name ("unknown", an obfuscated "_node") or a port
// alone is not an address.
func parseNode(b []byte) (netip.AddrPort, bool) {
	var host, port []byte
	switch {
	case len(b) > 0 && b[0] == '[':
		end := bytes.IndexByte(b, ']')
		if end < 0 {
			return netip.AddrPort{}, false
		}
		host = b[1:end]
		switch rest := b[end+1:]; {
		case len(rest) == 0:
		case rest[0] == ':':
			port = rest[1:]
		default:
			return netip.AddrPort{}, false
		}
		if bytes.IndexByte(host, ':') < 0 {
			return netip.AddrPort{}, false // brackets are for IPv6
		}
	case bytes.Count(b, colon) == 1:
		i := bytes.IndexByte(b, ':')
		host, port = b[:i], b[i+1:]
	default:
		host = b
	}
	if len(host) == 0 || len(host) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") || bytes.IndexByte(host, '%') >= 0 {
		return netip.AddrPort{}, false
	}
	a, ok := parseIPv4(host)
	if !ok {
		var err error
		if a, err = netip.ParseAddr(string(host)); err != nil {
			return netip.AddrPort{}, false
		}
	}
	var p uint64
	if port != nil {
		var err error
		if p, err = strconv.ParseUint(string(port), 10, 16); err != nil {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}

var colon = []byte{':'}

// parseIPv4 reads a dotted-quad IPv4 address as netip.ParseAddr does (no
// leading zeros), without the allocation of a string for it: most lists
// hold only these.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	n, digits, v := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || n == 4 {
				return netip.Addr{}, false
			}
			a[n], n, digits, v = byte(v), n+1, 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits == 1 && v == 0) {
			return netip.Addr{}, false // a leading zero, or not a digit
		}
		if v, digits = v*10+int(c-'0'), digits+1; v > 255 {
			return netip.Addr{}, false
		}
	}
	return netip.AddrFrom4(a), n == 4
}
