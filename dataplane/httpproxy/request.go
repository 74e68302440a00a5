package httpproxy

import (
	"context"
	"errors"
	"net/netip"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// Body framings of a message (RFC 9112 §6.3).
const (
	bodyNone    uint8 = iota // no body
	bodyLength               // Content-Length bytes
	bodyChunked              // chunked transfer coding
	bodyClose                // until the connection closes (responses only)
)

// Request is a view of one parsed request head. Its slices point into the
// connection's read buffer: it is valid only during Director.Pick, and Pick
// must not keep it or its slices. The head itself is read-only; what Pick
// may change is what the proxy forwards, through RemoveCookie,
// AddResponseField and RemoveResponseCookie (cookie.go), which hold for the
// endpoint that Pick returns and are forgotten before the next Pick.
type Request struct {
	head   []byte // the whole head, request line to empty line
	method span
	target span
	proto  span
	host   span // Host field value, or the authority of an absolute-form target
	minor  uint8
	// canonical: the target's path was made canonical as it was read
	// (canonicalTarget); canon holds the head then when that changed it.
	canonical bool
	canon     []byte

	nf     int
	fields []field // the exchange's storage, shared with its response: see exchange

	body          uint8
	contentLength int64
	closeConn     bool // the client wants the connection closed after this exchange
	expect100     bool
	upgrade       bool // an Upgrade field was present
	// tunnel: the request asks to switch protocols (Connection: upgrade and
	// an Upgrade other than h2c, HTTP/1.1): its Upgrade goes to the
	// endpoint, and a 101 answer turns the connection into a tunnel
	// (tunnel.go). Without it, Upgrade is dropped.
	tunnel bool
	fwd    forwarding // the forwarding headers of this request (forwarded.go)

	// client is the client connection's peer, or with
	// Config.ClientFromHeaders the client its forwarding headers name
	// (realclient.go); peer is the connection's peer, the address the
	// forwarding headers append. Both are set before Pick.
	client     netip.Addr
	clientPort uint16
	peer       netip.Addr
	tls        bool            // the client connection is TLS (an HTTPS listener)
	sni        []byte          // the server name the client sent in its TLS handshake
	ctx        context.Context // the server's, or Head.Context; set before Pick
	// watch is the HTTP/1.1 connection WatchClient watches (nil: none),
	// set before Pick; clientGone says the watch saw its client close.
	watch      *clientConn
	clientGone bool

	// The endpoints this request failed to connect to (or that were
	// retired under it), for Failed. Empty but for a pick again; the
	// backing array is reused from request to request, and cleared once
	// the request is connected so that it holds no endpoint.
	failed upstream.Failures

	// What Pick asked for (cookie.go), reset before every Pick. These
	// buffers are the Request's own, not the read buffer's, and are reused
	// from request to request.
	dropCookies    nameList       // cookies removed from the forwarded Cookie fields
	dropSetCookies nameList       // cookie names whose Set-Cookie fields the response loses
	addResp        []byte         // field lines added to the final response, "Name: value\r\n" each
	reqEdits       []*HeaderEdits // edits of the forwarded request, in order (edits.go)
	respEdits      []*HeaderEdits // edits of the relayed response, in order
	answer         *Answer        // the proxy answers itself (answer.go)
	retryAfter     uint32         // seconds the answer's Retry-After says; 0: none
	abortOnClose   bool           // AbortOnClose
	abortHook      func()         // OnAbortOnClose
	routed         *meter.Cluster // RoutedTo
	routedName     string
	rule           string // DecidedBy

	// The request's id (requestid.go): the field it goes in, the id, and
	// whether the proxy made it (in idBuf) rather than kept a trusted
	// peer's; with Config.RequestIDInResponse, the field line the client
	// gets it in ("Name: id\r\n"; its own buffer, as the id may be the
	// read buffer's), else empty.
	idName string
	id     []byte
	idNew  bool
	idBuf  [36]byte
	idLine []byte

	own []byte // the head of Load (bridge.go); nil for the engine's own requests
}

// ParseRequest parses head, one complete request head (request line through
// the empty line), as the proxy parses what a client sends, into a new
// Request that keeps head. It is for what needs a Request outside a client
// connection, such as tests and benchmarks of a Director or of rules; its
// ClientAddr is unset.
func ParseRequest(head []byte) (*Request, error) {
	if end, _ := findHeadEnd(head, 0); end != len(head) {
		return nil, errors.New("httpproxy: not one complete request head")
	}
	r := &Request{}
	if err := r.parse(head); err != nil {
		return nil, err
	}
	return r, nil
}

// ClientAddr is the IP address of the client: the peer of the connection
// the request came on (or its PROXY header's client), or, with
// Config.ClientFromHeaders and a trusted peer, the client that the peer's
// forwarding headers name.
func (r *Request) ClientAddr() netip.Addr { return r.client }

// ClientPort is the port of the client's address; 0 when its forwarding
// headers named the client without one.
func (r *Request) ClientPort() uint16 { return r.clientPort }

// PeerAddr is the IP address of the connection's peer (or its PROXY
// header's client): ClientAddr unless a trusted peer's forwarding headers
// named another client.
func (r *Request) PeerAddr() netip.Addr { return r.peer }

// setClient sets r's client to the peer's address and port, or to the one
// its forwarding headers name when cfg takes the client from them and the
// peer is trusted (r.fwd is set).
func (r *Request) setClient(peer netip.AddrPort, cfg *Config) {
	r.client, r.clientPort, r.peer = peer.Addr(), peer.Port(), peer.Addr()
	if cfg != nil && cfg.ClientFromHeaders && r.fwd.trusted {
		if c, ok := r.clientFromHeaders(cfg.TrustedPeers, cfg.ClientHeader); ok {
			r.client, r.clientPort = c.Addr(), c.Port()
		}
	}
}

// TLS reports whether the request came over TLS (an HTTPS listener).
func (r *Request) TLS() bool { return r.tls }

// ServerName is the server name (SNI) the client sent in its TLS
// handshake; empty without TLS or SNI. It must not be modified.
func (r *Request) ServerName() []byte { return r.sni }

// Failed reports whether connecting to ep already failed for this request
// (or an apply retired ep after it was picked), so that a Director picking
// again (Config.Retries) can pick around it. It is false on a request's
// first pick.
func (r *Request) Failed(ep *upstream.Endpoint) bool { return r.failed.Has(ep) }

// Again reports whether the Director's Pick is one again for this request,
// after connecting to the endpoint it picked before failed or an apply
// retired it: what counts requests has counted it already.
func (r *Request) Again() bool { return len(r.failed) > 0 }

// FailedExactly reports whether ep itself failed for this request, not
// only an endpoint for the same server that an apply has since made anew
// (upstream.Failures.HasExactly).
func (r *Request) FailedExactly(ep *upstream.Endpoint) bool { return r.failed.HasExactly(ep) }

// Context ends when the listener's server is closed (the listener was
// removed), or, for a request Loaded from another engine, with that
// request (Head.Context): a Director that waits for an endpoint (a
// cluster's queue) gives up then. It never ends for a Request made
// outside a server without one.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// AbortOnClose asks that the request be given up once its client closes
// its connection or shuts its sending side while the request is at the
// endpoint Pick returns: while the proxy waits for the response, or for
// more of it, or for the endpoint to take more of the request body,
// copied or spliced (bodyStalled). The endpoint's connection is closed
// then, which ends the request there, and the client's connection ends
// with reason CLIENT_CLOSED and no answer. It is
// the node's abort_on_close. Without it only a client that reset its
// connection, or whose connection failed, gives its request up: one that
// shut only its sending side after its request (an HTTP/1.0 client, nc
// -N) looks the same as one that closed, and still reads the answer.
//
// The proxy looks at the client each time a second of such a wait passes,
// so a request answered within a second costs nothing more. Like what
// RemoveCookie asks, it holds for the endpoint Pick returns and is
// forgotten before the next Pick.
func (r *Request) AbortOnClose() {
	r.abortOnClose = true
	if r.abortHook != nil {
		r.abortHook()
	}
}

// OnAbortOnClose has AbortOnClose call f too (nil: nothing), for an engine
// that serves the request on a connection of its own (the HTTP/2 engine's
// HTTP/1.x): a Director asks for it during Pick, even while the request
// waits in a queue, and the engine ends the request once its client
// closes from then on. It holds until changed.
func (r *Request) OnAbortOnClose(f func()) { r.abortHook = f }

// RoutedTo tells the proxy the cluster the request goes to, by its meter
// and name, before the Director looks for one of its endpoints: a request
// it then finds none for (503) is still the cluster's, counted in its
// meter and named in its records.
// Forgotten before the next Pick.
func (r *Request) RoutedTo(m *meter.Cluster, name string) { r.routed, r.routedName = m, name }

// Routed is what RoutedTo said: nil and "" when the Director said nothing.
func (r *Request) Routed() (*meter.Cluster, string) { return r.routed, r.routedName }

// DecidedBy tells the proxy the name of the rule that decided where the
// request goes, or that answered it, for its access log line. Forgotten
// before the next Pick.
func (r *Request) DecidedBy(rule string) { r.rule = rule }

// Rule is what DecidedBy said: "" when the Director said nothing.
func (r *Request) Rule() string { return r.rule }

// forgetFailed empties the list Failed reads.
func (r *Request) forgetFailed() {
	if len(r.failed) > 0 {
		clear(r.failed)
		r.failed = r.failed[:0]
	}
}

// Method is the request method, e.g. GET.
func (r *Request) Method() []byte { return r.method.of(r.head) }

// Path is the request-target as sent: origin-form ("/a?b=c"), absolute-form
// ("http://host/a") or "*" (OPTIONS).
func (r *Request) Path() []byte { return r.target.of(r.head) }

// URLPath is the path of the request-target, without its query, as sent
// (not percent-decoded): "/a" for "/a?b=c" and for "http://host/a?b=c",
// "/" for "http://host", and "*" for the asterisk-form of OPTIONS.
func (r *Request) URLPath() []byte {
	t := r.Path()
	if len(t) > 0 && t[0] != '/' && t[0] != '*' {
		// absolute-form: the path starts after the authority.
		if a, ok := absoluteAuthority(t); ok {
			t = t[a.end:]
			if len(t) == 0 || t[0] != '/' {
				return rootPath
			}
		}
	}
	if i := indexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	return t
}

// rootPath is the path of an absolute-form target without one. Callers
// must not change it, as with every slice of a Request.
var rootPath = []byte("/")

// RawQuery is what follows the '?' of the request-target, as sent, or nil
// when it has none.
func (r *Request) RawQuery() []byte {
	t := r.Path()
	i := indexByte(t, '?')
	if i < 0 {
		return nil
	}
	return t[i+1:]
}

// Query returns the value of the first parameter called name in the query
// of the request-target, as sent (not percent-decoded), or nil when there is
// none; a parameter without '=' has an empty, non-nil value. Names are
// compared exactly. Parameters are separated by '&' (HAProxy's url_param).
func (r *Request) Query(name string) []byte {
	q := r.RawQuery()
	for len(q) > 0 {
		pair := q
		if i := indexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if len(pair) < len(name) || string(pair[:len(name)]) != name {
			continue
		}
		switch {
		case len(pair) == len(name):
			return pair[len(pair):]
		case pair[len(name)] == '=':
			return pair[len(name)+1:]
		}
	}
	return nil
}

// NextHeader returns the value of the first field called name (compared
// without regard to ASCII case) at position from or later among the
// request's fields, and the position to pass to find the one after; next is
// -1 when there is none. Start with from 0:
//
//	for v, i := r.NextHeader("Accept", 0); i >= 0; v, i = r.NextHeader("Accept", i) {
//
// Hop-by-hop fields are seen too, as with Header.
func (r *Request) NextHeader(name string, from int) (value []byte, next int) {
	for i := max(from, 0); i < r.nf; i++ {
		f := &r.fields[i]
		if equalFoldASCII(f.name.of(r.head), name) {
			return r.valueOf(f), i + 1
		}
	}
	return nil, -1
}

// valueOf is f's value as the endpoint gets it (appendRequestHead) and as
// rules read it (Header): the Host field of an absolute-form request
// carries the target's authority, as a proxy must send it (RFC 9112
// §3.2.2), for an endpoint that reads the field, not the target.
func (r *Request) valueOf(f *field) []byte {
	if f.kind == fieldHost {
		return r.host.of(r.head)
	}
	return f.value.of(r.head)
}

// Host is the Host field value; for an absolute-form request-target it is the
// target's authority (RFC 9112 §3.2.2). Empty for an HTTP/1.0 request
// without Host.
func (r *Request) Host() []byte { return r.host.of(r.head) }

// Proto is the client's protocol version, "HTTP/1.1" or "HTTP/1.0".
func (r *Request) Proto() []byte { return r.proto.of(r.head) }

// ProtoMinor is 1 for HTTP/1.1 and 0 for HTTP/1.0.
func (r *Request) ProtoMinor() int { return int(r.minor) }

// Header returns the first value of the named field, compared without regard
// to ASCII case, or nil when the request has none. Hop-by-hop fields are
// visible here even though they are not forwarded.
func (r *Request) Header(name string) []byte {
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if equalFoldASCII(f.name.of(r.head), name) {
			return r.valueOf(f)
		}
	}
	return nil
}

// ContentLength is the declared body length, or -1 for a chunked body. It is
// 0 for a request without a body.
func (r *Request) ContentLength() int64 {
	switch r.body {
	case bodyLength:
		return r.contentLength
	case bodyChunked:
		return -1
	}
	return 0
}

// idempotent reports whether the request may be sent again after the
// endpoint may have seen it: its method is idempotent (RFC 9110 §9.2.2) or
// the client marked it with an Idempotency-Key header.
func (r *Request) idempotent() bool {
	switch string(r.Method()) { // no allocation: compared in place
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return r.Header("Idempotency-Key") != nil
}

// parse is parseLimited with the limits of the zero Config.
func (r *Request) parse(b []byte) *statusError { return r.parseLimited(b, &defaultLimits) }

// parseLimited parses the complete request head b (as delimited by
// findHeadEnd, leading empty lines already skipped) within lim. It validates
// what RFC 9112 asks a server to refuse, with the request smuggling defenses
// of §6.3: Transfer-Encoding with Content-Length, differing Content-Lengths
// and a final coding other than chunked are refused, as is
// Transfer-Encoding in an HTTP/1.0 request.
func (r *Request) parseLimited(b []byte, lim *headLimits) *statusError {
	if r.fields == nil {
		r.fields = make([]field, maxFields)
	}
	r.forgetID() // a new request: setRequestID gives it one
	if len(b) > lim.bytes {
		return errHeadTooLarge
	}
	r.head = b
	r.nf = 0
	r.host = span{}
	r.body = bodyNone
	r.contentLength = 0
	r.closeConn, r.expect100, r.upgrade, r.tunnel = false, false, false, false
	r.resetDirectives()

	rl, i, err := parseRequestLine(b, lim)
	if err != nil {
		return err
	}
	r.method, r.target, r.proto, r.minor = rl.method, rl.target, rl.proto, rl.minor
	r.canonical = false
	if lim.normalize || lim.merge {
		r.canonicalTarget(lim.normalize, lim.merge)
	}
	fields, nf, n, err := parseFields(b, i, r.fields, lim.fields)
	r.fields = fields
	if err != nil {
		return err
	}
	if n != len(b) {
		return errMalformed
	}
	r.nf = nf
	return r.semantics()
}

// requestLine is where the parts of a request line are in the head.
type requestLine struct {
	method, target, proto span
	minor                 uint8 // of HTTP/1.minor
}

// parseRequestLine parses the request line at the start of b (RFC 9112
// §3: method SP request-target SP HTTP-version), and returns it and the
// index after its line end. b may be the whole head, or only as much of
// it as has come, down to the line's end.
func parseRequestLine(b []byte, lim *headLimits) (rl requestLine, _ int, _ *statusError) {
	i := 0
	for i < len(b) && isToken[b[i]] {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return rl, 0, errRequestLine
	}
	rl.method = span{0, uint16(i)}
	i++
	ts := i
	for i < len(b) && isTargetByte[b[i]] {
		if b[i] == '%' {
			// pct-encoded = "%" HEXDIG HEXDIG (RFC 3986): a stray '%' is
			// refused rather than left to each endpoint to read its own way.
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return rl, 0, errTarget
			}
			i += 2
		}
		i++
	}
	if i == ts || i >= len(b) || b[i] != ' ' {
		if i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			return rl, 0, errRequestLine // HTTP/0.9 style, no version
		}
		return rl, 0, errTarget
	}
	rl.target = span{uint16(ts), uint16(i)}
	if i-ts > lim.uri {
		return rl, 0, errURITooLong
	}
	i++
	if len(b)-i < 8 || string(b[i:i+5]) != "HTTP/" || b[i+6] != '.' {
		return rl, 0, errRequestLine
	}
	major, minor := b[i+5], b[i+7]
	if major < '0' || major > '9' || minor < '0' || minor > '9' {
		return rl, 0, errRequestLine
	}
	rl.proto = span{uint16(i), uint16(i + 8)}
	if major != '1' {
		return rl, 0, errVersion
	}
	rl.minor = 1
	if minor == '0' {
		rl.minor = 0
	}
	if i = lineEnd(b, i+8); i < 0 {
		return rl, 0, errRequestLine
	}
	return rl, i, nil
}

// semantics checks the fields together and derives framing and connection
// handling from them.
func (r *Request) semantics() *statusError {
	b := r.head
	fields := r.fields[:r.nf]
	hosts := 0
	cl := int64(-1)
	var te transferCodings
	for i := range fields {
		f := &fields[i]
		switch f.kind {
		case fieldHost:
			hosts++
			r.host = f.value
			if !validAuthority(f.value.of(b)) {
				return errHost
			}
		case fieldContentLength:
			n, ok := parseContentLength(f.value.of(b))
			if !ok || (cl >= 0 && n != cl) {
				return errContentLength
			}
			cl = n
			f.drop = true // re-added by the proxy
		case fieldTransferEncoding:
			te.add(f.value.of(b))
			f.drop = true
		case fieldExpect:
			if equalFold(f.value.of(b), "100-continue") {
				r.expect100 = true
			}
		case fieldUpgrade:
			r.upgrade = true
			f.drop = true
		case fieldConnection, fieldHopByHop:
			f.drop = true
		}
	}
	if hosts > 1 || (hosts == 0 && r.minor == 1) {
		return errHost
	}

	method := r.Method()
	target := r.Path()
	switch {
	case target[0] == '/':
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return errTarget
		}
	case string(method) == "CONNECT":
		return errConnect
	default:
		auth, ok := absoluteAuthority(target)
		if !ok || !validAuthority(target[auth.off:auth.end]) {
			return errTarget
		}
		r.host = span{r.target.off + uint16(auth.off), r.target.off + uint16(auth.end)}
	}
	if string(method) == "CONNECT" {
		return errConnect
	}

	if te.seen {
		switch {
		case cl >= 0:
			return errTEWithCL
		case r.minor == 0:
			return errTEHTTP10
		case !te.lastChunked:
			return errTENotChunked
		case te.chunked > 1:
			return errTENotChunked
		case te.others:
			return errTransferCoding
		}
		r.body = bodyChunked
	} else if cl >= 0 {
		r.body = bodyLength
		r.contentLength = cl
	}

	closeConn, keepAlive, upgrade := connectionOptions(b, fields)
	r.closeConn = closeConn || (r.minor == 0 && !keepAlive)
	if r.upgrade && upgrade && r.minor == 1 && !upgradesTo(b, fields, "h2c") {
		// RFC 9110 §7.8: Upgrade counts only when Connection names it,
		// and not in HTTP/1.0. h2c is left to the HTTP/2 side.
		r.tunnel = true
		for i := range fields {
			if fields[i].kind == fieldUpgrade {
				fields[i].drop = false
			}
		}
	}
	r.fwd.locate(fields)
	return nil
}

// upgradesTo reports whether an Upgrade field of the head lists protocol
// (lower case), with or without a version.
func upgradesTo(b []byte, fields []field, protocol string) bool {
	found := false
	for i := range fields {
		if fields[i].kind != fieldUpgrade {
			continue
		}
		listElements(fields[i].value.of(b), func(e []byte) bool {
			if j := indexByte(e, '/'); j >= 0 {
				e = e[:j]
			}
			found = equalFold(e, protocol)
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validAuthority reports whether a is a host and an optional port, as the
// Host field and the authority of an absolute-form target hold them (RFC
// 9110 §7.2, RFC 3986 §3.2.2): an IPv6 address in brackets, or a name or
// IPv4 address of unreserved characters and sub-delims; then ':' and
// digits. A userinfo ("user@host") is refused, as RFC 9110 §4.2.4 asks of
// a recipient, and so is a port without a host. Stricter than RFC 3986:
// no percent-encoded bytes in a name (clients send IDNs as punycode, and
// readers disagree on decoding them: net/http refuses "%41", a browser
// reads "%61dmin" as "admin" where a rule would not), no IPvFuture and no
// zone in a literal. An empty Host is valid (RFC 9110 §7.2).
func validAuthority(a []byte) bool {
	if len(a) == 0 {
		return true
	}
	var host, port []byte
	literal := a[0] == '['
	if literal {
		end := indexByte(a, ']')
		if end < 0 {
			return false
		}
		host = a[1:end]
		if rest := a[end+1:]; len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
		}
	} else {
		host = a
		if i := indexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
		}
	}
	if len(host) == 0 {
		return false // a port without a host
	}
	if literal {
		ip, err := netip.ParseAddr(string(host))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
	} else if !allIn(host, &uriHost) {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// uriHost holds the bytes a reg-name may have as they are (RFC 3986
// §3.2.2): unreserved and sub-delims.
var uriHost = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=") {
		t[c] = true
	}
	return t
}()

// absoluteAuthority returns where the authority of an absolute-form target
// ("http://host:port/path") lies inside it.
func absoluteAuthority(t []byte) (span, bool) {
	// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
	i := 0
	for i < len(t) {
		c := t[i]
		alpha := 'a' <= c|0x20 && c|0x20 <= 'z'
		if !alpha && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			break
		}
		i++
	}
	if i == 0 || len(t)-i < 3 || string(t[i:i+3]) != "://" {
		return span{}, false
	}
	s := i + 3
	e := s
	for e < len(t) && t[e] != '/' && t[e] != '?' && t[e] != '#' {
		e++
	}
	if e == s {
		return span{}, false
	}
	return span{uint16(s), uint16(e)}, true
}
