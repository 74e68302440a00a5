// Package proxyproto reads and writes the PROXY protocol header, versions 1
// (text) and 2 (binary), as HAProxy specifies it: a proxy sends it first on
// a connection so that the server behind it learns the client's address.
//
// Parse works on bytes and never blocks; Read takes a header off a stream
// and returns whatever it read past it, which belongs to the stream. The
// Append functions write headers for endpoints that expect one.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Header is what a PROXY header says.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is set when the header carries no client address: a v1
	// "UNKNOWN" line, a v2 LOCAL command (health checks of the proxy in
	// front), or a v2 family and transport other than TCP over IPv4 or
	// IPv6 (AF_UNSPEC, AF_UNIX, UDP), as HAProxy takes them. The
	// connection's own addresses stand.
	Local bool
	// Source is the client's address, Dest the address it connected to.
	// Both are zero when Local is set.
	Source, Dest netip.AddrPort
}

// Errors Parse returns besides a *FormatError.
var (
	// ErrNotProxy: the bytes do not start with a PROXY header.
	ErrNotProxy = errors.New("proxyproto: no PROXY header")
	// ErrIncomplete: the bytes are the start of what may be a header;
	// more are needed to tell.
	ErrIncomplete = errors.New("proxyproto: incomplete PROXY header")
)

// FormatError is a header that starts like one but is malformed.
type FormatError struct {
	Version int
	Reason  string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("proxyproto: bad v%d header: %s", e.Version, e.Reason)
}

// MaxV1 is the longest valid v1 header, CRLF included.
const MaxV1 = 107

// v1Magic starts a v1 header; v2Sig starts a v2 header.
var (
	v1Magic = []byte("PROXY ")
	v2Sig   = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// v2HeadLen is the fixed part of a v2 header: signature, version and
// command, family and transport, length.
const v2HeadLen = 16

// Parse reads a header at the start of b and returns it with its length in
// bytes. It returns ErrIncomplete while b is too short to decide, ErrNotProxy
// when b does not start with a header, and a *FormatError for a header that
// is malformed.
func Parse(b []byte) (Header, int, error) {
	switch {
	case bytes.HasPrefix(b, v1Magic):
		return parseV1(b)
	case bytes.HasPrefix(b, v2Sig):
		return parseV2(b)
	}
	if len(b) < len(v2Sig) && (bytes.HasPrefix(v1Magic, b) || bytes.HasPrefix(v2Sig, b)) {
		return Header{}, 0, ErrIncomplete
	}
	return Header{}, 0, ErrNotProxy
}

// parseV1 parses "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" and
// "PROXY UNKNOWN ...\r\n".
func parseV1(b []byte) (Header, int, error) {
	bad := func(reason string) (Header, int, error) {
		return Header{}, 0, &FormatError{1, reason}
	}
	end := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) < MaxV1 && bytes.IndexByte(b, '\n') < 0 {
			return Header{}, 0, ErrIncomplete
		}
		return bad("no CRLF within 107 bytes")
	}
	n := end + 2
	line := b[len(v1Magic):end]
	fields := bytes.Split(line, []byte(" "))
	h := Header{Version: 1}
	switch string(fields[0]) {
	case "UNKNOWN":
		// The rest of the line, if any, is to be ignored.
		h.Local = true
		return h, n, nil
	case "TCP4", "TCP6":
	default:
		return bad(fmt.Sprintf("protocol %q, want TCP4, TCP6 or UNKNOWN", fields[0]))
	}
	if len(fields) != 5 {
		return bad("want protocol, two addresses and two ports, each after one space")
	}
	v6 := fields[0][3] == '6'
	src, err1 := parseV1Addr(fields[1], v6)
	dst, err2 := parseV1Addr(fields[2], v6)
	sport, err3 := parsePort(fields[3])
	dport, err4 := parsePort(fields[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return bad(err.Error())
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Dest = netip.AddrPortFrom(dst, dport)
	return h, n, nil
}

func parseV1Addr(b []byte, v6 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("address %q: not an IP address", b)
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q: zones are not allowed", b)
	case v6 != a.Is6():
		fam := map[bool]string{false: "TCP4", true: "TCP6"}[v6]
		return netip.Addr{}, fmt.Errorf("address %q does not match %s", b, fam)
	}
	return a, nil
}

// parsePort takes a decimal port without sign or leading zero.
func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("port %q: not a port number", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q: not a port number", b)
		}
	}
	p, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: out of range", b)
	}
	return uint16(p), nil
}

// v2 commands, families and transports (high and low nibbles).
const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	transStream = 0x1
	transDgram  = 0x2
)

func parseV2(b []byte) (Header, int, error) {
	bad := func(reason string) (Header, int, error) {
		return Header{}, 0, &FormatError{2, reason}
	}
	if len(b) < v2HeadLen {
		return Header{}, 0, ErrIncomplete
	}
	verCmd, famTrans := b[12], b[13]
	if verCmd>>4 != 2 {
		return bad(fmt.Sprintf("version %d, want 2", verCmd>>4))
	}
	body := int(binary.BigEndian.Uint16(b[14:16]))
	n := v2HeadLen + body
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	addrs := b[v2HeadLen:n]
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case cmdLocal:
		// The proxy talks for itself (a health check): whatever follows is
		// to be skipped.
		h.Local = true
		return h, n, nil
	case cmdProxy:
	default:
		return bad(fmt.Sprintf("command %#x, want LOCAL or PROXY", verCmd&0xf))
	}
	if famTrans&0xf > transDgram {
		return bad(fmt.Sprintf("transport %#x", famTrans&0xf))
	}
	switch fam := famTrans >> 4; {
	case fam > famUnix:
		return bad(fmt.Sprintf("address family %#x", fam))
	case famTrans&0xf != transStream:
		// UDP (or an unspecified transport): not the addresses of a TCP
		// connection, and HAProxy keeps its own then too.
		h.Local = true
	case fam == famInet, fam == famInet6:
		size := 4
		if fam == famInet6 {
			size = 16
		}
		if len(addrs) < 2*size+4 {
			return bad(fmt.Sprintf("%d address bytes, too few for the family", len(addrs)))
		}
		src, _ := netip.AddrFromSlice(addrs[:size])
		dst, _ := netip.AddrFromSlice(addrs[size : 2*size])
		ports := addrs[2*size:]
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4]))
	default: // AF_UNSPEC, AF_UNIX
		h.Local = true
	}
	return h, n, nil
}

// Read reads from r until it knows whether a header starts the stream. It
// returns the header (nil when there is none) and rest, the bytes it read
// past the header, which belong to the stream and must be handled before
// anything else read from r. buf is used for reading; a header longer
// than buf is a *FormatError. Read returns as soon as the bytes read tell
// "no header", so a client that sends no header loses nothing; but it
// waits for the client's first bytes, so the caller bounds it with a
// deadline.
func Read(r io.Reader, buf []byte) (h *Header, rest []byte, err error) {
	n := 0
	for {
		if n == len(buf) {
			return nil, nil, &FormatError{2, fmt.Sprintf("longer than %d bytes", len(buf))}
		}
		m, err := r.Read(buf[n:])
		n += m
		hdr, size, perr := Parse(buf[:n])
		switch {
		case perr == nil:
			return &hdr, buf[size:n], nil
		case perr == ErrNotProxy:
			return nil, buf[:n], nil
		case perr != ErrIncomplete:
			return nil, nil, perr
		case err != nil:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}

// AppendV1 appends a v1 header saying a client at src connected to dst.
// Invalid addresses give "PROXY UNKNOWN". Of addresses of different
// families, the IPv4 one is written IPv4-mapped (TCP6), as HAProxy does,
// so that the client's address is never lost.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	s, d, ok := sameFamily(src.Addr(), dst.Addr())
	if !ok {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	b = append(b, "PROXY TCP4 "...)
	if s.Is6() {
		b[len(b)-2] = '6'
	}
	b = s.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = d.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends a v2 PROXY header (TCP, no TLVs) saying a client at src
// connected to dst. Invalid addresses give a LOCAL header; of addresses of
// different families, the IPv4 one is written IPv4-mapped (AF_INET6).
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2Sig...)
	s, d, ok := sameFamily(src.Addr(), dst.Addr())
	if !ok {
		return append(b, 0x20|cmdLocal, famUnspec<<4, 0, 0)
	}
	if s.Is4() {
		b = append(b, 0x20|cmdProxy, famInet<<4|transStream, 0, 12)
	} else {
		b = append(b, 0x20|cmdProxy, famInet6<<4|transStream, 0, 36)
	}
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// sameFamily returns s and d of one family, without zones: both IPv4
// when they can be, else both IPv6 (an IPv4 one mapped). ok is false when
// either is invalid.
func sameFamily(s, d netip.Addr) (netip.Addr, netip.Addr, bool) {
	if !s.IsValid() || !d.IsValid() {
		return s, d, false
	}
	s, d = s.Unmap().WithZone(""), d.Unmap().WithZone("")
	if s.Is4() != d.Is4() {
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	return s, d, true
}

// Addrs returns the addresses of c that a PROXY header about it carries:
// its peer (the client) and its local address (what the client connected
// to), IPv4-mapped addresses as IPv4. They are zero when c is not TCP.
func Addrs(c net.Conn) (peer, local netip.AddrPort) {
	return addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
