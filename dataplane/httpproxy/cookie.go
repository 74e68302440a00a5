package httpproxy

// This file holds what a Director needs for cookie persistence, HAProxy's
// "cookie SERVERID insert indirect nocache": reading a request cookie,
// removing it from the request that goes to the endpoint, removing the
// endpoint's own Set-Cookie of that name from its response, and adding
// fields (Set-Cookie, Cache-Control) to the response the client gets.
//
// What Pick asks for is kept in the Request, in buffers that live as long
// as the exchange (no allocation per request once they have grown), and is
// reset before every Pick: a new request, or a pick again after the endpoint
// was retired (exchange), starts with none of it.

// Cookie returns the value of the named cookie from the request's Cookie
// field(s) (RFC 6265 §4.2.1: "a=1; b=2"), or nil when there is none.
//
// Names are compared exactly (case-sensitively). Pairs are split at ';',
// with or without the space after it, and every Cookie field is searched
// in order; the first pair with that name wins. Whitespace around the name
// and the value is not part of them. The value is returned as sent: a
// quoted value keeps its double quotes. A pair without '=' is a cookie
// named by the whole pair, with an empty value; a cookie present with an
// empty value gives an empty, non-nil slice. The empty name matches
// nothing.
//
// Like every slice of a Request, the result is valid only during Pick.
func (r *Request) Cookie(name string) []byte {
	if name == "" {
		return nil
	}
	for i := 0; i < r.nf; i++ {
		f := &r.fields[i]
		if !equalFold(f.name.of(r.head), "cookie") {
			continue
		}
		v := f.value.of(r.head)
		for len(v) > 0 {
			var pair []byte
			pair, v = nextCookiePair(v)
			if n, val := splitCookiePair(pair); string(n) == name {
				return val
			}
		}
	}
	return nil
}

// RemoveCookie has the named cookie (every pair with that name, compared
// exactly as Cookie does) removed from the Cookie fields of the request
// forwarded to the endpoint. In a Cookie field that held it, the other
// cookies are kept byte for byte and in order, joined with "; "; a field
// left with no cookie is not forwarded at all. Fields without the cookie
// are forwarded unchanged. The empty name removes nothing. Cookie still
// sees the cookie after the call.
//
// It must be called during Pick; it applies to the endpoint Pick returns.
func (r *Request) RemoveCookie(name string) {
	if name != "" {
		r.dropCookies.add(name)
	}
}

// AddResponseField has a field appended to the head of the final response
// relayed from the endpoint to the client, after the endpoint's own fields:
// e.g. AddResponseField("Set-Cookie", []byte("SERVERID=s1; path=/")) and
// AddResponseField("Cache-Control", []byte(`no-cache="set-cookie"`)). Each
// call appends one field line, in call order; value is copied and may be
// reused after the call. Surrounding whitespace of value is trimmed.
//
// The field goes only to a final (non-1xx) response that came from the
// endpoint, not to interim 1xx responses nor to the answers the proxy
// makes itself (502, 503, 504). A name that is not a token, a name of a
// field whose handling is the proxy's (Content-Length, Transfer-Encoding,
// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Host,
// Expect), or a value holding a control character other than HTAB (CR, LF,
// NUL...) is ignored: the call adds nothing.
//
// It must be called during Pick.
func (r *Request) AddResponseField(name string, value []byte) {
	if name == "" {
		return
	}
	for i := 0; i < len(name); i++ {
		if !isToken[name[i]] {
			return
		}
	}
	value = trimOWS(value)
	if !isValue(value) {
		return
	}
	start := len(r.addResp)
	r.addResp = append(r.addResp, name...)
	if classify(r.addResp[start:]) != fieldOther {
		r.addResp = r.addResp[:start]
		return
	}
	r.addResp = append(r.addResp, ": "...)
	r.addResp = append(r.addResp, value...)
	r.addResp = append(r.addResp, '\r', '\n')
}

// RemoveResponseCookie has the Set-Cookie fields of the endpoint's final
// response that set the named cookie removed before the response goes to
// the client. The cookie name of a Set-Cookie field is what precedes the
// first '=' of its first ';'-separated part, without surrounding
// whitespace (RFC 6265 §5.2), and is compared exactly: removing "SERVERID"
// keeps "SERVERIDX=1" and "serverid=1". Fields added with AddResponseField
// are not affected. The empty name removes nothing.
//
// It must be called during Pick.
func (r *Request) RemoveResponseCookie(name string) {
	if name != "" {
		r.dropSetCookies.add(name)
	}
}

// maxKeptDirectives bounds the capacity the buffers of what Pick asked for
// keep between requests, so that one request that asked for a lot does not
// pin that memory in a pooled exchange.
const maxKeptDirectives = 4 << 10

// resetDirectives forgets what an earlier Pick asked for.
func (r *Request) resetDirectives() {
	r.dropCookies.reset()
	r.dropSetCookies.reset()
	if cap(r.addResp) > maxKeptDirectives {
		r.addResp = nil
	}
	r.addResp = r.addResp[:0]
	// The edits and the answer belong to the configuration: do not keep it
	// alive past the request.
	clear(r.reqEdits)
	clear(r.respEdits)
	r.reqEdits, r.respEdits = r.reqEdits[:0], r.respEdits[:0]
	r.answer, r.retryAfter = nil, 0
	r.abortOnClose = false
	r.routed, r.routedName = nil, ""
	r.rule = ""
}

// nameList is a list of names in one reusable buffer.
type nameList struct {
	buf  []byte
	ends []int
}

func (l *nameList) add(name string) {
	l.buf = append(l.buf, name...)
	l.ends = append(l.ends, len(l.buf))
}

func (l *nameList) empty() bool { return len(l.ends) == 0 }

// has reports whether the list holds name, compared exactly.
func (l *nameList) has(name []byte) bool {
	s := 0
	for _, e := range l.ends {
		if string(l.buf[s:e]) == string(name) {
			return true
		}
		s = e
	}
	return false
}

func (l *nameList) reset() {
	if cap(l.buf) > maxKeptDirectives || cap(l.ends) > maxKeptDirectives/8 {
		l.buf, l.ends = nil, nil
	}
	l.buf, l.ends = l.buf[:0], l.ends[:0]
}

// nextCookiePair splits the first cookie-pair off a Cookie field value v:
// the bytes up to the next ';', without surrounding whitespace, and what
// follows the ';'. Empty pairs (";;") are skipped; pair is empty only when
// nothing but separators and whitespace is left.
func nextCookiePair(v []byte) (pair, rest []byte) {
	for len(v) > 0 {
		j := indexByte(v, ';')
		if j < 0 {
			pair, v = v, nil
		} else {
			pair, v = v[:j], v[j+1:]
		}
		if pair = trimOWS(pair); len(pair) > 0 {
			return pair, v
		}
	}
	return nil, nil
}

// splitCookiePair splits a cookie-pair at its first '=' into name and
// value, without the whitespace around either. A pair without '=' is all
// name, with an empty (non-nil) value.
func splitCookiePair(pair []byte) (name, value []byte) {
	j := indexByte(pair, '=')
	if j < 0 {
		return pair, pair[len(pair):]
	}
	return trimOWS(pair[:j]), trimOWS(pair[j+1:])
}

// appendCookieField appends the Cookie field line name: v without the
// cookies drop names. A field that holds none of them is appended as it
// is; one left without cookies is not appended.
func appendCookieField(b, name, v []byte, drop *nameList) []byte {
	found := false
	for rest := v; len(rest) > 0 && !found; {
		var pair []byte
		pair, rest = nextCookiePair(rest)
		n, _ := splitCookiePair(pair)
		found = len(pair) > 0 && drop.has(n)
	}
	if !found {
		return appendFieldLine(b, name, v)
	}
	start := len(b)
	b = append(b, name...)
	b = append(b, ": "...)
	kept := 0
	for len(v) > 0 {
		var pair []byte
		pair, v = nextCookiePair(v)
		if len(pair) == 0 {
			break
		}
		if n, _ := splitCookiePair(pair); drop.has(n) {
			continue
		}
		if kept > 0 {
			b = append(b, "; "...)
		}
		b = append(b, pair...)
		kept++
	}
	if kept == 0 {
		return b[:start]
	}
	return append(b, '\r', '\n')
}

// setCookieName returns the cookie name a Set-Cookie field value sets: what
// precedes the '=' of its name-value-pair, trimmed. A pair without '=' has
// the empty name (RFC 6265bis §5.6).
func setCookieName(v []byte) []byte {
	if j := indexByte(v, ';'); j >= 0 {
		v = v[:j]
	}
	j := indexByte(v, '=')
	if j < 0 {
		return nil
	}
	return trimOWS(v[:j])
}

// dropSetCookies marks the Set-Cookie fields of resp that set a cookie of
// names as not forwarded.
func dropSetCookies(resp *response, names *nameList) {
	for i := 0; i < resp.nf; i++ {
		f := &resp.fields[i]
		if f.drop || !equalFold(f.name.of(resp.head), "set-cookie") {
			continue
		}
		if n := setCookieName(f.value.of(resp.head)); len(n) > 0 && names.has(n) {
			f.drop = true
		}
	}
}
