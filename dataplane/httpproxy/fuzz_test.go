package httpproxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: X-A, close\r\nX-A: 1\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
	"GET http://h:1/p HTTP/1.0\nKeep-Alive: 1\nConnection: keep-alive\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nTE: trailers\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\nUpgrade: x/1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a:8080\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: b\r\nForwarded: for=\"[::1]\";proto=https\r\nConnection: forwarded\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: \"q\\\"\r\nForwarded: for=x\r\n\r\n",
}

// FuzzParseRequest: the request-head parser never panics; an accepted head
// satisfies the invariants the proxy relies on, and the head it forwards
// parses back (with this parser and net/http's) to the same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s), uint16(7))
	}
	// Request ids (split's bit 0x1000), made, with what the client sent
	// removed, or a trusted peer's (bit 0x800) kept unless Connection
	// named its field. Splits of 150 fields at most.
	ids := "GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: lb-1\r\nx-request-id: lb-2\r\n"
	f.Add([]byte(ids+"\r\n"), uint16(0x1005))
	f.Add([]byte(ids+"\r\n"), uint16(0x1805))
	f.Add([]byte(ids+"Connection: x-request-id\r\n\r\n"), uint16(0x1805))
	// Paths made canonical.
	f.Add([]byte("GET /a/..//%61dmin/.?q=/../ HTTP/1.1\r\nHost: a\r\n\r\n"), uint16(0x6007))
	f.Add([]byte("GET http://a//b/%2e%2E/c HTTP/1.1\r\nHost: a\r\n\r\n"), uint16(0x2007))
	// Redirects built for every request accepted.
	var fuzzRedirects []*Answer
	for _, r := range []Redirect{{Scheme: "https"}, {Prefix: "/v2"}, {Host: "example.com", Port: 8443, StripQuery: true}} {
		a, err := NewRedirect(r)
		if err != nil {
			f.Fatal(err)
		}
		fuzzRedirects = append(fuzzRedirects, a)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		end, _ := findHeadEnd(data, 0)
		// Resuming the scan after a split finds the same end.
		if s := int(split); s < len(data) {
			e1, next := findHeadEnd(data[:s], 0)
			if e1 < 0 {
				if e2, _ := findHeadEnd(data, next); e2 != end {
					t.Fatalf("resumed scan found %d, want %d", e2, end)
				}
			}
		}
		if end < 0 {
			return
		}
		// Limits as a listener may set them, and the path made canonical
		// (split's bits 0x2000 and 0x4000), in a copy: the head read stays
		// as it came, as the HTTP/2 engine may be handed it.
		lim := headLimits{bytes: maxHead, fields: 1 + int(split%150), uri: 1 + int(split%300),
			normalize: split&0x2000 != 0, merge: split&0x4000 != 0}
		read := string(data[:end])
		var r Request
		perr := r.parseLimited(data[:end], &lim)
		if string(data[:end]) != read {
			t.Fatalf("parsing changed the head read: %q, was %q", data[:end], read)
		}
		if perr != nil {
			if perr.status < 400 || perr.status > 505 {
				t.Fatalf("error status %d", perr.status)
			}
			return
		}
		if r.nf > lim.fields || len(r.Path()) > lim.uri {
			t.Fatalf("%d fields, target of %d bytes accepted within %+v", r.nf, len(r.Path()), lim)
		}
		for _, c := range r.Method() {
			if !isToken[c] {
				t.Fatalf("method %q", r.Method())
			}
		}
		if len(r.Path()) == 0 || len(r.Method()) == 0 {
			t.Fatal("empty method or target")
		}
		for _, c := range r.Path() {
			if !isTargetByte[c] {
				t.Fatalf("target %q", r.Path())
			}
		}
		if r.body == bodyChunked && r.minor == 0 {
			t.Fatal("chunked HTTP/1.0 request accepted")
		}
		hosts, cls, tes := 0, 0, 0
		for i := 0; i < r.nf; i++ {
			f := &r.fields[i]
			for _, c := range f.name.of(r.head) {
				if !isToken[c] {
					t.Fatalf("field name %q", f.name.of(r.head))
				}
			}
			for _, c := range f.value.of(r.head) {
				if c == '\r' || c == '\n' || c == 0 {
					t.Fatalf("field value %q", f.value.of(r.head))
				}
			}
			switch f.kind {
			case fieldHost:
				hosts++
			case fieldContentLength:
				cls++
			case fieldTransferEncoding:
				tes++
			}
		}
		if hosts > 1 || (cls > 0 && tes > 0) || (r.minor == 1 && hosts == 0) {
			t.Fatalf("hosts=%d cl=%d te=%d accepted", hosts, cls, tes)
		}

		// What rules read of the target adds up to it, and a redirect
		// built from the request is one clean field value.
		path, query := r.URLPath(), r.RawQuery()
		if bytes.IndexByte(path, '?') >= 0 || len(path) == 0 {
			t.Fatalf("URLPath %q of %q", path, r.Path())
		}
		if t0 := r.Path(); t0[0] == '/' {
			whole := string(path)
			if query != nil {
				whole += "?" + string(query)
			}
			if whole != string(t0) {
				t.Fatalf("URLPath %q and RawQuery %q of %q", path, query, t0)
			}
		}
		for _, a := range fuzzRedirects {
			loc := a.redir.appendLocation(nil, &r, netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080"))
			if len(loc) == 0 || !isValue(loc) || bytes.ContainsAny(loc, " \t") {
				t.Fatalf("Location %q from %q", loc, data[:end])
			}
			// The Host is the client's and is reflected as sent; one that
			// is a URL authority makes a URL.
			_, herr := url.Parse("http://" + string(r.Host()) + "/")
			saneHost := herr == nil
			if _, err := url.Parse(string(loc)); err != nil && saneHost && bytes.HasPrefix(r.Path(), []byte("/")) {
				t.Fatalf("Location %q from %q: %v", loc, data[:end], err)
			}
		}

		// Round trip of the head the proxy sends upstream, with the
		// forwarding headers of a style picked by split, for an IPv4 or
		// IPv6 client, trusted or not.
		r.peer = netip.MustParseAddr("192.0.2.1")
		if split&0x100 != 0 {
			r.peer = netip.MustParseAddr("2001:db8::1")
		}
		r.fwd.on, r.fwd.style, r.fwd.trusted = true, ForwardedHeaders(split>>9%4), split&0x800 != 0
		if c, ok := r.clientFromHeaders(proxiesInFront, ""); ok != c.IsValid() {
			t.Fatalf("client from the headers of %q: %v, %v", data[:end], c, ok)
		}
		if split&0x1000 != 0 {
			r.setRequestID(&Config{RequestID: "X-Request-ID"})
		}
		out := appendRequestHead(nil, &r, "backend:80")
		oend, _ := findHeadEnd(out, 0)
		if oend != len(out) {
			t.Fatalf("forwarded head %q is not one head", out)
		}
		var r2 Request
		if err := r2.parseLimited(out, &headLimits{bytes: maxHead, fields: r.nf + 8, uri: lim.uri}); err != nil {
			t.Fatalf("forwarded head %q refused: %v", out, err)
		}
		if !bytes.Equal(r2.Method(), r.Method()) || !bytes.Equal(r2.Path(), r.Path()) || r2.body != r.body ||
			r2.contentLength != r.contentLength || r2.minor != 1 || r2.closeConn || r2.upgrade != r.tunnel || r2.tunnel != r.tunnel {
			t.Fatalf("forwarded head %q parses differently", out)
		}
		checkForwarded(t, &r, &r2, out)
		if r.host.len() > 0 && !bytes.Equal(r2.Host(), r.Host()) {
			t.Fatalf("host %q became %q", r.Host(), r2.Host())
		}
		for i := 0; i < r2.nf; i++ {
			k := r2.fields[i].kind
			if r2.fields[i].drop && k != fieldContentLength && k != fieldTransferEncoding && !(r.tunnel && k == fieldConnection) {
				t.Fatalf("forwarded head %q still has hop-by-hop %q", out, r2.fields[i].name.of(out))
			}
		}
		// net/http agrees on what the forwarded head means.
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			if bytes.HasPrefix(r.Path(), []byte("/")) {
				t.Fatalf("net/http refuses forwarded head %q: %v", out, err)
			}
			return // net/http is stricter on absolute-form URIs
		}
		if hr.Method != string(r.Method()) || hr.RequestURI != string(r.Path()) {
			t.Fatalf("net/http reads %s %s from %q", hr.Method, hr.RequestURI, out)
		}
		// A request id the proxy made is the only one sent; a trusted
		// peer's is the first sent (a field Connection named is not).
		if ids := hr.Header.Values("X-Request-Id"); r.idNew && (len(ids) != 1 || ids[0] != string(r.id)) ||
			r.id != nil && !r.idNew && (len(ids) == 0 || ids[0] != string(r.id)) {
			t.Fatalf("request id %q (new %v): the endpoint gets %q from %q", r.id, r.idNew, ids, out)
		}
		switch r.body {
		case bodyChunked:
			if len(hr.TransferEncoding) != 1 || hr.TransferEncoding[0] != "chunked" {
				t.Fatalf("net/http framing %v from %q", hr.TransferEncoding, out)
			}
		case bodyLength:
			if hr.ContentLength != r.contentLength {
				t.Fatalf("net/http length %d from %q", hr.ContentLength, out)
			}
		default:
			if hr.ContentLength > 0 || len(hr.TransferEncoding) > 0 {
				t.Fatalf("net/http sees a body in %q", out)
			}
		}
	})
}

// checkForwarded checks the forwarding headers of out, the head forwarded
// for r, parsed as r2: from an untrusted peer, one of each of the style's
// headers, saying what the proxy knows; from a trusted one, the peer
// last in X-Forwarded-For and Forwarded.
func checkForwarded(t *testing.T, r, r2 *Request, out []byte) {
	t.Helper()
	var xff, fwd [][]byte
	for v, i := r2.NextHeader("X-Forwarded-For", 0); i >= 0; v, i = r2.NextHeader("X-Forwarded-For", i) {
		xff = append(xff, v)
	}
	for v, i := r2.NextHeader("Forwarded", 0); i >= 0; v, i = r2.NextHeader("Forwarded", i) {
		fwd = append(fwd, v)
	}
	client := r.peer.String()
	style := r.fwd.style
	if style.xForwarded() {
		switch {
		case len(xff) == 0:
			t.Fatalf("no X-Forwarded-For in %q", out)
		case !r.fwd.trusted && (len(xff) != 1 || string(xff[0]) != client):
			t.Fatalf("X-Forwarded-For %q from an untrusted peer in %q", xff, out)
		case !bytes.HasSuffix(xff[len(xff)-1], []byte(client)):
			t.Fatalf("X-Forwarded-For %q does not end with the client in %q", xff, out)
		}
		if proto := r2.Header("X-Forwarded-Proto"); !r.fwd.trusted && string(proto) != "http" {
			t.Fatalf("X-Forwarded-Proto %q from an untrusted peer in %q", proto, out)
		}
	}
	if style.rfc7239() {
		if len(fwd) == 0 || (!r.fwd.trusted && len(fwd) != 1) {
			t.Fatalf("Forwarded %q in %q", fwd, out)
		}
		last, hop := fwd[len(fwd)-1], appendForwardedElement(nil, r)
		if !bytes.HasSuffix(last, hop) || !r.fwd.trusted && !bytes.Equal(last, hop) {
			t.Fatalf("Forwarded %q does not end with this hop %q in %q", fwd, hop, out)
		}
	}
	if style == ForwardNone && (len(xff) != countFields(r, "X-Forwarded-For") || len(fwd) != countFields(r, "Forwarded")) {
		t.Fatalf("style NONE changed the forwarding headers: %q", out)
	}
}

// countFields counts the fields called name r forwards.
func countFields(r *Request, name string) int {
	n := 0
	for i := 0; i < r.nf; i++ {
		if !r.fields[i].drop && equalFoldASCII(r.fields[i].name.of(r.head), name) {
			n++
		}
	}
	return n
}

// FuzzParseResponse: the response-head parser never panics, and the head
// relayed to the client parses back to the same status and framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X\r\nX: 1\r\n\r\n",
		"HTTP/1.0 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 200\nKeep-Alive: 5\n\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, headReq bool) {
		end, _ := findHeadEnd(data, 0)
		if end < 0 {
			return
		}
		var r response
		if err := r.parse(data[:end], headReq); err != nil {
			if err.status != 502 {
				t.Fatalf("error status %d", err.status)
			}
			return
		}
		if r.status < 100 || r.status > 599 {
			t.Fatalf("status %d", r.status)
		}
		if r.body == bodyClose && r.reusable {
			t.Fatal("close-delimited response marked reusable")
		}
		if (headReq || r.status < 200 || r.status == 204 || r.status == 304) && r.body != bodyNone {
			t.Fatal("bodyless response with a body")
		}
		for _, keep := range []bool{true, false} {
			for _, minor := range []uint8{0, 1} {
				out := outLength
				switch r.body {
				case bodyNone:
					out = outNone
				case bodyChunked, bodyClose:
					out = outChunked
				}
				head := appendResponseHead(nil, &r, new(Request), minor, keep, out)
				var r2 response
				if err := r2.parse(head, headReq); err != nil {
					t.Fatalf("relayed head %q refused: %v", head, err)
				}
				if r2.status != r.status || r2.minor != 1 {
					t.Fatalf("relayed head %q: status %d", head, r2.status)
				}
				wantBody := r.body
				if wantBody == bodyClose {
					wantBody = bodyChunked
				}
				if r2.body != wantBody || (r2.body == bodyLength && r2.contentLength != r.contentLength) {
					t.Fatalf("relayed head %q: framing %d/%d, want %d/%d", head, r2.body, r2.contentLength, wantBody, r.contentLength)
				}
				if !keep && r2.reusable {
					t.Fatalf("relayed head %q does not say close", head)
				}
			}
		}
	})
}

// FuzzEarlyAnswer: what sendBody and bodyStalled read an endpoint's
// bytes by, mid-request, never panics; finds a final answer only past
// whole interim heads, and the same one however many more bytes follow;
// and takes for a refusal only a final answer whose head parses, with an
// error status, that does not keep the connection.
func FuzzEarlyAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 401 Unauthorized\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 400 Bad\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 1",
		"garbage that is no answer\r\n\r\n",
	} {
		f.Add([]byte(s), 5)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		at := finalAnswerAt(data)
		if at >= 0 {
			if at+10 > len(data) || data[at+9] == '1' {
				t.Fatalf("final answer at %d of %q", at, data)
			}
			pos := 0
			for pos < at {
				end, _ := findHeadEnd(data, pos)
				if data[pos+9] != '1' || end <= pos || end > at {
					t.Fatalf("%q before the final answer at %d is not whole interim heads", data[:at], at)
				}
				pos = end
			}
		}
		if cut = max(cut, 0) % (len(data) + 1); finalAnswerAt(data[:cut]) >= 0 && finalAnswerAt(data[:cut]) != at {
			t.Fatalf("%q has its final answer at %d, and at %d when cut at %d", data, at, finalAnswerAt(data[:cut]), cut)
		}
		if !refusalCloses(data) {
			return
		}
		end, _ := findHeadEnd(data, at)
		var r response
		if at < 0 || end < 0 || r.parse(data[at:end], false) != nil || r.status < 400 || r.reusable {
			t.Fatalf("%q taken for a refusal that closes", data)
		}
	})
}

// FuzzChunkedDecoder: the decoder never panics, gives the same result
// however its input is split, agrees with net/http's chunked reader on what
// it accepts, and its re-encoding decodes to the same data.
func FuzzChunkedDecoder(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"4;ext=\"q\"\r\nWiki\r\n0\r\nTrailer: x\r\n\r\n",
		"4 \t;ext\r\nWiki\r\n0 ;last\r\n\r\n",
		"000A\r\n0123456789\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"fffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole, n, okWhole := decodeAll(data, len(data), true)
		split2, n2, okSplit := decodeAll(data, int(split), true)
		if okWhole != okSplit || !bytes.Equal(whole, split2) || n != n2 {
			t.Fatalf("split at %d changes the result: %v/%v %q/%q", split, okWhole, okSplit, whole, split2)
		}
		if !okWhole {
			return
		}
		plain, _, ok := decodeAll(data, len(data), false)
		if !ok {
			t.Fatal("dechunk refuses what rechunk accepts")
		}
		// net/http decodes the original to the same data (but for the
		// whitespace before an extension, which it refuses).
		ref, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(withoutBWS(data[:n]))))
		if err != nil || !bytes.Equal(ref, plain) {
			t.Fatalf("net/http decodes %q to %q (%v), we to %q", data[:n], ref, err, plain)
		}
		// Our re-encoding is canonical and decodes to the same data.
		again, m, ok := decodeAll(whole, len(whole), false)
		if !ok || m != len(whole) || !bytes.Equal(again, plain) {
			t.Fatalf("re-encoding %q decodes to %q", whole, again)
		}
	})
}

// withoutBWS is the chunked body data with the whitespace between each
// chunk size and a ';' after it left out. RFC 9112 §7.1.1 allows it (BWS
// in chunk-ext), and the decoder takes it, as HAProxy does; net/http's
// reader, FuzzChunkedDecoder's reference, refuses it ("invalid byte in
// chunk length"). Framing it cannot walk is returned as it is from there
// on, for net/http to judge.
func withoutBWS(data []byte) []byte {
	var out []byte
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return append(out, data...)
		}
		line := data[:i+1]
		k := 0
		for k < len(line) && strings.IndexByte("0123456789abcdefABCDEF", line[k]) >= 0 {
			k++
		}
		size, err := strconv.ParseUint(string(line[:k]), 16, 63)
		j := k
		for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
			j++
		}
		if j > k && line[j] == ';' {
			line = append(slices.Clip(line[:k]), line[j:]...)
		}
		out = append(out, line...)
		data = data[i+1:]
		if err != nil || size == 0 || uint64(len(data)) < size+2 {
			return append(out, data...)
		}
		out = append(out, data[:size+2]...) // the data and its CRLF
		data = data[size+2:]
	}
}

// decodeAll runs the decoder as the proxy does, feeding data in two parts
// (at split) and flushing a small output buffer whenever it fills. It
// returns the output, the input consumed, and whether the body ended well.
func decodeAll(data []byte, split int, rechunk bool) ([]byte, int, bool) {
	if split > len(data) {
		split = len(data)
	}
	var d chunkDecoder
	var all []byte
	out := make([]byte, 0, maxChunkLine+64)
	avail := split
	pos := 0
	for !d.done() {
		n, o, err := d.decode(data[pos:avail], out, rechunk)
		pos += n
		out = o
		if err != nil {
			return nil, pos, false
		}
		if d.done() {
			break
		}
		if len(out) > 0 {
			all = append(all, out...)
			out = out[:0]
			continue
		}
		if avail == len(data) {
			return nil, pos, false // truncated
		}
		avail = len(data)
	}
	return append(all, out...), pos, true
}

// refCookiePairs is the reference reading of Cookie field values: the
// non-empty ';'-separated pairs, trimmed, with their names.
func refCookiePairs(values ...string) (pairs, names []string) {
	for _, v := range values {
		for p := range strings.SplitSeq(v, ";") {
			p = strings.Trim(p, " \t")
			if p == "" {
				continue
			}
			n := p
			if k, _, ok := strings.Cut(p, "="); ok {
				n = strings.Trim(k, " \t")
			}
			pairs = append(pairs, p)
			names = append(names, n)
		}
	}
	return pairs, names
}

// FuzzCookie: Cookie, RemoveCookie, RemoveResponseCookie and
// AddResponseField never panic; Cookie agrees with a reference reading of
// the Cookie fields; the forwarded request parses, no longer carries the
// removed cookie and keeps every other cookie, in order; the relayed
// response loses exactly the Set-Cookie fields of that name and carries the
// added field if it was accepted.
func FuzzCookie(f *testing.F) {
	for _, s := range [][3]string{
		{"a=1; SERVERID=s1; b=2", "c=3", "SERVERID"},
		{"SERVERID=s1", "", "SERVERID"},
		{"a=1;SERVERID=s1;b=\"x y\"", "SERVERID=2; z", "SERVERID"},
		{" ;; junk ; a = 1 ;", "=v; a=2", "a"},
		{"SERVERIDX=y; serverid=z", "SERVERID=x; path=/", "SERVERID"},
		{"a=1", "b=2", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, c1, c2, name string) {
		head := "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + c1 + "\r\nX: 1\r\ncookie: " + c2 + "\r\n\r\n"
		var r Request
		if r.parse([]byte(head)) != nil {
			return // a value the parser refuses (CR, NUL...)
		}
		if strings.Contains(c1+c2, "\n") {
			// A bare LF ends a line (RFC 9112 §2.2): the head then has
			// other fields than the four above.
			return
		}
		v1, v2 := string(r.fields[1].value.of(r.head)), string(r.fields[3].value.of(r.head))
		pairs, names := refCookiePairs(v1, v2)

		// Cookie agrees with the reference: the first pair of that name.
		want, found := "", false
		if name != "" {
			if i := slices.Index(names, name); i >= 0 {
				found = true
				if _, val, ok := strings.Cut(pairs[i], "="); ok {
					want = strings.Trim(val, " \t")
				}
			}
		}
		if got := r.Cookie(name); (got != nil) != found || string(got) != want {
			t.Fatalf("Cookie(%q) = %q (nil %v), want %q (found %v)", name, got, got == nil, want, found)
		}

		// The forwarded head lacks the removed cookie and keeps the others.
		r.RemoveCookie(name)
		out := appendRequestHead(nil, &r, "b:80")
		var r2 Request
		if err := r2.parse(out); err != nil {
			t.Fatalf("forwarded head %q refused: %v", out, err)
		}
		var values []string
		for i := 0; i < r2.nf; i++ {
			if f := &r2.fields[i]; equalFold(f.name.of(out), "cookie") {
				values = append(values, string(f.value.of(out)))
			}
		}
		gotPairs, gotNames := refCookiePairs(values...)
		var wantPairs []string
		for i, p := range pairs {
			if name == "" || names[i] != name {
				wantPairs = append(wantPairs, p)
			}
		}
		if !slices.Equal(gotPairs, wantPairs) {
			t.Fatalf("without %q: forwarded cookies %q, want %q (head %q)", name, gotPairs, wantPairs, out)
		}
		if name != "" && slices.Contains(gotNames, name) {
			t.Fatalf("forwarded head %q still has cookie %q", out, name)
		}
		if name != "" && r2.Cookie(name) != nil {
			t.Fatalf("forwarded head %q: Cookie(%q) = %q", out, name, r2.Cookie(name))
		}
		for _, v := range values {
			if p, _ := refCookiePairs(v); len(p) == 0 && v != v1 && v != v2 {
				t.Fatalf("forwarded head %q has an emptied Cookie field", out)
			}
		}

		// The response side, with the same values as Set-Cookie fields.
		resp := "HTTP/1.1 200 OK\r\nSet-Cookie: " + c1 + "\r\nX: 1\r\nset-cookie: " + c2 + "\r\nContent-Length: 0\r\n\r\n"
		var rs response
		if err := rs.parse([]byte(resp), false); err != nil {
			t.Fatalf("response %q refused: %v", resp, err)
		}
		r.RemoveResponseCookie(name)
		r.AddResponseField("X-Added", []byte(c1))
		dropSetCookies(&rs, &r.dropSetCookies)
		rout := appendResponseHead(nil, &rs, &r, 1, true, outNone)
		var rs2 response
		if err := rs2.parse(rout, false); err != nil {
			t.Fatalf("relayed head %q refused: %v", rout, err)
		}
		var wantSet, gotSet, added []string
		for _, v := range []string{v1, v2} {
			if name == "" || string(setCookieName([]byte(v))) != name {
				wantSet = append(wantSet, v)
			}
		}
		for i := 0; i < rs2.nf; i++ {
			f := &rs2.fields[i]
			switch {
			case equalFold(f.name.of(rout), "set-cookie"):
				gotSet = append(gotSet, string(f.value.of(rout)))
			case equalFold(f.name.of(rout), "x-added"):
				added = append(added, string(f.value.of(rout)))
			}
		}
		if !slices.Equal(gotSet, wantSet) {
			t.Fatalf("without %q: relayed Set-Cookie %q, want %q", name, gotSet, wantSet)
		}
		if !slices.Equal(added, []string{v1}) {
			t.Fatalf("added field %q, want %q", added, v1)
		}
	})
}
