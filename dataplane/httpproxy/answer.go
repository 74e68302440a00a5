package httpproxy

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// This file holds the answers a Director may have the proxy give instead of
// forwarding a request: a fixed response (a rule's deny or respond) or a
// redirect built from the request (a rule's redirect, http -> https).

// Answer is a response the proxy gives itself. It is built once per
// configuration, by NewResponse or NewRedirect, and shared by every request;
// answering with it costs no allocation. Like the proxy's other answers it
// has a Content-Length, no body for a HEAD request, and keeps the client
// connection open when the request was read in full and the client wants
// it.
type Answer struct {
	page    *builtPage // a fixed response
	redir   *redirect  // a redirect whose Location is made from the request
	refusal int        // Response.Refusal
}

// Response describes a fixed answer.
type Response struct {
	// Status is 200 to 599.
	Status int
	// ContentType of Body; with a body, default "text/plain;
	// charset=utf-8". Without a body no Content-Type is sent unless set.
	ContentType string
	// Body of the response; none for 204 and 304.
	Body []byte
	// Fields are sent after the status line, in order. Content-Type and the
	// fields the proxy owns (Content-Length, Connection...) are refused.
	Fields []Field
	// Refusal is the status of the refusal this answer stands for when
	// Status is not it: a deny of 503 answered with a redirect to a
	// maintenance page. The request is recorded as denied, and a gRPC
	// call, which cannot follow a redirect, gets the gRPC status of
	// Refusal. 0 for none; else 400 to 599.
	Refusal int
}

// DefaultContentType is the Content-Type of a Response body that sets none.
const DefaultContentType = "text/plain; charset=utf-8"

// NewResponse builds a fixed answer.
func NewResponse(r Response) (*Answer, error) {
	if r.Status < 200 || r.Status > 599 {
		return nil, fmt.Errorf("httpproxy: status %d is not 200 to 599", r.Status)
	}
	if r.Refusal != 0 && (r.Refusal < 400 || r.Refusal > 599) {
		return nil, fmt.Errorf("httpproxy: refusal %d is not 400 to 599", r.Refusal)
	}
	noBody := r.Status == 204 || r.Status == 304
	if noBody && len(r.Body) > 0 {
		return nil, fmt.Errorf("httpproxy: a %d response has no body", r.Status)
	}
	if len(r.Body) > maxErrorPageBody {
		return nil, fmt.Errorf("httpproxy: body of %d bytes is over %d", len(r.Body), maxErrorPageBody)
	}
	if r.ContentType != "" && !validFieldValue(r.ContentType) {
		return nil, fmt.Errorf("httpproxy: content type %q is not a valid field value", r.ContentType)
	}
	b := appendStatusLine(nil, r.Status)
	for _, f := range r.Fields {
		if err := checkEditName(f.Name); err != nil {
			return nil, err
		}
		if strings.EqualFold(f.Name, "content-type") {
			return nil, fmt.Errorf("httpproxy: set the content type with ContentType")
		}
		if f.Value != "" && !validFieldValue(f.Value) {
			return nil, fmt.Errorf("httpproxy: header %s: value %q is not a valid field value", f.Name, f.Value)
		}
		b = appendFieldLine(b, f.Name, f.Value)
	}
	ct := r.ContentType
	if ct == "" && len(r.Body) > 0 {
		ct = DefaultContentType
	}
	if ct != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, ct...)
		b = append(b, "\r\n"...)
	}
	if !noBody {
		// RFC 9110 §8.6: no Content-Length in a 204; a 304's would describe
		// the representation it stands for.
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.Body)), 10)
		b = append(b, "\r\n"...)
	}
	return &Answer{page: buildVariants(b, r.Body), refusal: r.Refusal}, nil
}

func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	text := http.StatusText(status)
	if text == "" {
		text = "Unknown"
	}
	b = append(b, text...)
	return append(b, "\r\n"...)
}

// Redirect describes a redirect to the request's own URL with parts
// replaced; the zero parts keep the request's.
type Redirect struct {
	// Code is 301, 302 (the default), 303, 307 or 308.
	Code int
	// Scheme is "http" or "https".
	Scheme string
	// Host replaces the request's host: a DNS name or an IP address (an
	// IPv6 one with or without brackets), without port.
	Host string
	// Port is the Location's port, left out when it is the scheme's default
	// (80, 443). With 0, the request's port is kept when scheme and host
	// are, else there is none.
	Port int
	// Path replaces the request's path; it starts with "/".
	Path string
	// Prefix is put before the request's path (HAProxy's "redirect
	// prefix"); a final "/" of it is dropped, as the path brings its own.
	// Exclusive with Path.
	Prefix string
	// StripQuery leaves the request's query out.
	StripQuery bool
}

// redirect is a compiled Redirect.
type redirect struct {
	head       []byte // "HTTP/1.1 302 Found\r\nLocation: "
	scheme     string // "" keeps the request's
	host       string // "" keeps the request's
	port       string // "" keeps or drops, see Redirect.Port
	path       string
	prefix     string
	stripQuery bool
}

// Refusal is the status of the refusal a stands for when its own status
// is not it (Response.Refusal), or 0.
func (a *Answer) Refusal() int { return a.refusal }

// NewRedirect builds a redirect answer. A redirect that changes nothing is
// refused: it would send clients around in a loop.
func NewRedirect(r Redirect) (*Answer, error) {
	code := r.Code
	if code == 0 {
		code = 302
	}
	if redirectText[code] == "" {
		return nil, fmt.Errorf("httpproxy: redirect code %d is not 301, 302, 303, 307 or 308", r.Code)
	}
	switch r.Scheme {
	case "", "http", "https":
	default:
		return nil, fmt.Errorf("httpproxy: redirect scheme %q is not http or https", r.Scheme)
	}
	if r.Scheme == "" && r.Host == "" && r.Port == 0 && r.Path == "" && r.Prefix == "" {
		return nil, fmt.Errorf("httpproxy: a redirect must change the scheme, host, port or path")
	}
	if r.Port < 0 || r.Port > 65535 {
		return nil, fmt.Errorf("httpproxy: redirect port %d is not 1 to 65535", r.Port)
	}
	if r.Path != "" && r.Prefix != "" {
		return nil, fmt.Errorf("httpproxy: a redirect has a path or a prefix, not both")
	}
	host := r.Host
	if host != "" {
		if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && a.Zone() == "" {
			host = a.String()
			if a.Is6() {
				host = "[" + host + "]"
			}
		} else if !isHostName(host) {
			return nil, fmt.Errorf("httpproxy: redirect host %q is not a host name or IP address", r.Host)
		}
	}
	for _, p := range []string{r.Path, r.Prefix} {
		if p != "" && (p[0] != '/' || !isLocationPath(p)) {
			return nil, fmt.Errorf("httpproxy: redirect path %q must start with / and be visible ASCII without '?' or '#'", p)
		}
	}
	rd := &redirect{
		scheme:     r.Scheme,
		host:       host,
		path:       r.Path,
		prefix:     strings.TrimSuffix(r.Prefix, "/"),
		stripQuery: r.StripQuery,
	}
	if r.Port != 0 {
		rd.port = strconv.Itoa(r.Port)
	}
	rd.head = append(rd.head, "HTTP/1.1 "...)
	rd.head = strconv.AppendInt(rd.head, int64(code), 10)
	rd.head = append(rd.head, ' ')
	rd.head = append(rd.head, redirectText[code]...)
	rd.head = append(rd.head, "\r\nLocation: "...)
	return &Answer{redir: rd}, nil
}

// isHostName reports whether h is made of the characters of a DNS name.
func isHostName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isLocationPath reports whether p can go in a Location as is.
func isLocationPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if !isTargetByte[p[i]] || p[i] == '?' || p[i] == '#' {
			return false
		}
	}
	return true
}

// appendResponse writes the whole redirect for request r, which came to
// local (see appendLocation).
func (rd *redirect) appendResponse(b []byte, r *Request, local netip.AddrPort, minor uint8, keep bool) []byte {
	b = append(b, rd.head...)
	b = rd.appendLocation(b, r, local)
	b = append(b, "\r\nContent-Length: 0\r\n"...)
	b = append(b, r.idLine...)
	switch {
	case !keep:
		b = append(b, "Connection: close\r\n"...)
	case minor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, "\r\n"...)
}

// requestScheme is the scheme of the URL a request was sent to: https on a
// listener that terminates TLS.
func requestScheme(r *Request) string {
	if r.tls {
		return "https"
	}
	return "http"
}

// appendLocation writes the URL r asked for with the redirect's parts in
// place. Without a host (an HTTP/1.0 request without Host, and no host in
// the redirect) it is the path alone, relative to the request's URL;
// but a relative URL keeps the scheme and port, so a redirect that changes
// either names local, the address the client connected to, when known.
func (rd *redirect) appendLocation(b []byte, r *Request, local netip.AddrPort) []byte {
	reqScheme := requestScheme(r)
	scheme := rd.scheme
	if scheme == "" {
		scheme = reqScheme
	}
	reqHost, reqPort := splitAuthority(r.Host())
	if rd.host == "" && len(reqHost) == 0 && local.IsValid() && (scheme != reqScheme || rd.port != "") {
		// New slices: the request's may share the read buffer.
		a := local.Addr().Unmap().WithZone("")
		if a.Is6() {
			reqHost = append(a.AppendTo([]byte{'['}), ']')
		} else {
			reqHost = a.AppendTo(nil)
		}
		reqPort = strconv.AppendUint(nil, uint64(local.Port()), 10)
	}
	relative := rd.host == "" && len(reqHost) == 0
	switch {
	case rd.host != "":
		b = append(b, scheme...)
		b = append(b, "://"...)
		b = append(b, rd.host...)
		b = appendPort(b, scheme, rd.port)
	case len(reqHost) > 0:
		b = append(b, scheme...)
		b = append(b, "://"...)
		b = append(b, reqHost...)
		if rd.port != "" {
			b = appendPort(b, scheme, rd.port)
		} else if scheme == reqScheme {
			b = appendPort(b, scheme, reqPort)
		}
	}
	if rd.path != "" {
		b = append(b, rd.path...)
	} else {
		p := r.URLPath()
		if len(p) == 0 || p[0] != '/' {
			p = rootPath // OPTIONS *
		}
		if relative && rd.prefix == "" {
			// "//evil.example/x" alone would be a network-path reference,
			// taking the client to another host.
			for len(p) > 1 && p[1] == '/' {
				p = p[1:]
			}
		}
		b = append(b, rd.prefix...)
		b = append(b, p...)
	}
	if q := r.RawQuery(); q != nil && !rd.stripQuery {
		b = append(b, '?')
		b = append(b, q...)
	}
	return b
}

// appendPort writes ":port" unless port is empty or the scheme's default.
func appendPort[T string | []byte](b []byte, scheme string, port T) []byte {
	if len(port) == 0 || scheme == "http" && string(port) == "80" || scheme == "https" && string(port) == "443" {
		return b
	}
	b = append(b, ':')
	return append(b, port...)
}

// splitAuthority splits a Host value (or the authority of an absolute-form
// target), as the request parser let it through (validAuthority), into
// host, brackets of an IPv6 literal kept, and port, both empty when
// absent; a port that is no port number is dropped.
func splitAuthority(a []byte) (host, port []byte) {
	if len(a) > 0 && a[0] == '[' {
		end := indexByte(a, ']')
		if end < 0 {
			return a, nil
		}
		host, rest := a[:end+1], a[end+1:]
		if len(rest) > 1 && rest[0] == ':' {
			port = rest[1:]
		}
		return host, digitsOnly(port)
	}
	colon := -1
	for i, c := range a {
		if c == ':' {
			if colon >= 0 {
				return a, nil // not host:port; leave it whole
			}
			colon = i
		}
	}
	if colon < 0 {
		return a, nil
	}
	return a[:colon], digitsOnly(a[colon+1:])
}

// digitsOnly returns p if it is a port number's digits, else nil: a port
// the client made up is not carried into a Location.
func digitsOnly(p []byte) []byte {
	if len(p) == 0 || len(p) > 5 {
		return nil
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return nil
		}
	}
	return p
}

// Respond has the proxy answer the request with a instead of forwarding it;
// Pick then returns a nil endpoint and a nil error. The answer is written
// like the proxy's own errors: the connection stays open if the client
// wants it and its request was read in full (a body left unread closes
// it). A Pick asked again (a retry) starts without it.
//
// It must be called during Pick.
func (r *Request) Respond(a *Answer) { r.answer = a }

// RetryAfter has the fixed answer that Respond gives carry Retry-After:
// d in whole seconds, rounded up (RFC 9110 §10.2.3; at most 2^32-1), for
// a client told to come back later (429, 503). A redirect carries none.
//
// It must be called during Pick.
func (r *Request) RetryAfter(d time.Duration) {
	switch s := (d + time.Second - 1) / time.Second; {
	case d <= 0:
		r.retryAfter = 0
	case s > math.MaxUint32:
		r.retryAfter = math.MaxUint32
	default:
		r.retryAfter = uint32(s)
	}
}

// appendPage appends to b the bytes of a fixed answer to r, page (a
// whole response or its head), with r's own fields (appendOwnFields) after
// its status line.
func (r *Request) appendPage(b, page []byte) []byte {
	if !r.addsOwnFields() {
		return append(b, page...)
	}
	line := bytes.IndexByte(page, '\n') + 1 // the status line, which every page has
	b = append(b, page[:line]...)
	b = r.appendOwnFields(b)
	return append(b, page[line:]...)
}

// addsOwnFields reports whether the proxy's own answer to r carries
// fields besides the answer's (appendOwnFields).
func (r *Request) addsOwnFields() bool { return r.retryAfter != 0 || len(r.idLine) > 0 }

// appendOwnFields appends the field lines the proxy's own answer to r
// carries besides the answer's: the Retry-After of RetryAfter, set only
// with a Respond, and r's id (Config.RequestIDInResponse).
func (r *Request) appendOwnFields(b []byte) []byte {
	if r.retryAfter != 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendUint(b, uint64(r.retryAfter), 10)
		b = append(b, "\r\n"...)
	}
	return append(b, r.idLine...)
}
