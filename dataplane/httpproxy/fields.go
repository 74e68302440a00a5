package httpproxy

import "bytes"

// This file holds what request and response heads share: character classes,
// the field-line parser, the classification of the fields the proxy acts on,
// and the parsers of Content-Length, Transfer-Encoding and Connection values.

const (
	// maxHead bounds a request or response head, start line to empty line.
	// A longer request head is answered 431, a longer response head 502.
	// Offsets in a head fit in 16 bits.
	maxHead = 64<<10 - 1
	// maxFields is the default bound on the field lines of a request head
	// (HAProxy's tune.http.maxhdr is 101; Config.MaxHeaderCount changes it)
	// and the bound on those of a response head. More is answered 431 (502
	// for a response). It is also how many fields an exchange holds without
	// allocating.
	maxFields = 100
)

// headLimits bound what a request head may hold (Config.MaxHeaderBytes,
// MaxHeaderCount, MaxURILength).
type headLimits struct {
	bytes  int // the whole head, request line to empty line
	fields int // field lines
	uri    int // the request-target
	// normalize and merge make the target's path canonical as the head
	// is read (Config.NormalizePath, Config.MergeSlashes).
	normalize, merge bool
}

// defaultLimits are the limits of the zero Config.
var defaultLimits = headLimits{bytes: maxHead, fields: maxFields, uri: DefaultMaxURILength}

var (
	// isToken: tchar, RFC 9110 §5.6.2.
	isToken [256]bool
	// isTargetByte: what a request-target may hold — visible US-ASCII but
	// '#'. Bytes above 0x7e are refused like HAProxy does; clients
	// percent-encode them. A fragment is never sent (RFC 9112 §3.2), and a
	// rule on the path's end would read "/index.html#.png" as a .png
	// (HAProxy refuses it too, since CVE-2023-45539).
	isTargetByte [256]bool
	// isValueByte: field-vchar, SP and HTAB (RFC 9110 §5.5); obs-text allowed.
	isValueByte [256]bool
)

func init() {
	for c := 'a'; c <= 'z'; c++ {
		isToken[c] = true
		isToken[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		isToken[c] = true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		isToken[c] = true
	}
	for c := 0x21; c <= 0x7e; c++ {
		isTargetByte[c] = true
		isValueByte[c] = true
	}
	isTargetByte['#'] = false
	for c := 0x80; c <= 0xff; c++ {
		isValueByte[c] = true
	}
	isValueByte[' '] = true
	isValueByte['\t'] = true
}

// span locates bytes inside a head: b[off:end]. Heads are at most maxHead
// long, so 16-bit offsets do, and the field table of an exchange stays at
// 1 KB.
type span struct{ off, end uint16 }

func (s span) of(b []byte) []byte { return b[s.off:s.end] }
func (s span) len() int           { return int(s.end - s.off) }

// Field kinds the proxy acts on; everything else is fieldOther and forwarded.
const (
	fieldOther uint8 = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldExpect
	// fieldHopByHop: Keep-Alive, Proxy-Connection, TE, Upgrade — hop-by-hop
	// whatever Connection says (RFC 9110 §7.6.1). Trailer is not: it
	// announces the trailer fields, which are forwarded (RFC 9110 §6.6.2).
	fieldHopByHop
	fieldUpgrade
	// The forwarding headers (forwarded.go), which the proxy replaces or
	// extends; they stay together, in this order (isForwarding).
	fieldXForwardedFor
	fieldXForwardedProto
	fieldXForwardedHost
	fieldForwarded
)

// field is one field line; drop marks a field that is not forwarded.
type field struct {
	name, value span
	kind        uint8
	drop        bool
}

// classify maps a field name to its kind without allocating.
func classify(name []byte) uint8 {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fieldHopByHop
		}
	case 4:
		if equalFold(name, "host") {
			return fieldHost
		}
	case 6:
		if equalFold(name, "expect") {
			return fieldExpect
		}
	case 7:
		if equalFold(name, "upgrade") {
			return fieldUpgrade
		}
	case 9:
		if equalFold(name, "forwarded") {
			return fieldForwarded
		}
	case 10:
		if equalFold(name, "connection") {
			return fieldConnection
		}
		if equalFold(name, "keep-alive") {
			return fieldHopByHop
		}
	case 14:
		if equalFold(name, "content-length") {
			return fieldContentLength
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return fieldXForwardedFor
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return fieldHopByHop
		}
		if equalFold(name, "x-forwarded-host") {
			return fieldXForwardedHost
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
		if equalFold(name, "x-forwarded-proto") {
			return fieldXForwardedProto
		}
	}
	return fieldOther
}

// isValue reports whether every byte of v may stand in a field value
// (isValueByte).
func isValue[T string | []byte](v T) bool { return allIn(v, &isValueByte) }

// allIn reports whether every byte of s is in set.
func allIn[T string | []byte](s T, set *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !set[s[i]] {
			return false
		}
	}
	return true
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// equalFoldASCII compares a with b ignoring ASCII case in both.
func equalFoldASCII[T string | []byte](a []byte, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// findHeadEnd looks for the empty line that ends a head in b, starting the
// search at from (a previous call's next, so a head that trickles in is
// scanned once). It returns the head's length including the empty line, or
// -1 and where to resume.
//
// A line ends with LF, optionally preceded by CR (RFC 9112 §2.2); the field
// parser rejects a CR anywhere else.
func findHeadEnd(b []byte, from int) (end, next int) {
	i := from
	for i < len(b) {
		j := indexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		p := i + j
		if p+1 >= len(b) {
			return -1, p
		}
		switch b[p+1] {
		case '\n':
			return p + 2, p + 2
		case '\r':
			if p+2 >= len(b) {
				return -1, p
			}
			if b[p+2] == '\n' {
				return p + 3, p + 3
			}
		}
		i = p + 1
	}
	return -1, i
}

// lineEnd checks that b[i:] starts with CRLF or LF and returns the index
// after it, or -1.
func lineEnd(b []byte, i int) int {
	if i < len(b) && b[i] == '\n' {
		return i + 1
	}
	if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
		return i + 2
	}
	return -1
}

// parseFields parses the field lines of a complete head b from i through the
// empty line. It fills fields and returns them, how many, and the head
// length; past len(fields), up to limit, fields grows (an allocation only a
// request with more than maxFields fields costs, when the configuration
// allows that many).
// Field names must be tokens immediately followed by ':' (no whitespace
// before the colon, RFC 9112 §5.1), obs-fold is refused (RFC 9112 §5.2), and
// values hold no control characters but HTAB.
func parseFields(b []byte, i int, fields []field, limit int) (out []field, nf, n int, err *statusError) {
	for {
		if i >= len(b) {
			return fields, 0, 0, errMalformed
		}
		switch b[i] {
		case '\r', '\n':
			e := lineEnd(b, i)
			if e < 0 {
				return fields, 0, 0, errMalformed
			}
			return fields, nf, e, nil
		case ' ', '\t':
			return fields, 0, 0, errObsFold
		}
		ns := i
		for i < len(b) && isToken[b[i]] {
			i++
		}
		if i == ns || i >= len(b) || b[i] != ':' {
			return fields, 0, 0, errFieldName
		}
		ne := i
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vs := i
		for i < len(b) && isValueByte[b[i]] {
			i++
		}
		ve := i
		if i = lineEnd(b, i); i < 0 {
			return fields, 0, 0, errFieldValue
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		if nf >= limit {
			return fields, 0, 0, errTooManyFields
		}
		if nf == len(fields) {
			grown := make([]field, min(max(2*nf, maxFields), limit))
			copy(grown, fields)
			fields = grown
		}
		name := b[ns:ne]
		fields[nf] = field{
			name:  span{uint16(ns), uint16(ne)},
			value: span{uint16(vs), uint16(ve)},
			kind:  classify(name),
		}
		nf++
	}
}

// listElements calls fn for each non-empty element of a comma-separated
// field value (RFC 9110 §5.6.1), trimmed of OWS. fn returns false to stop.
func listElements(v []byte, fn func(elem []byte) bool) {
	for len(v) > 0 {
		j := indexByte(v, ',')
		var e []byte
		if j < 0 {
			e, v = v, nil
		} else {
			e, v = v[:j], v[j+1:]
		}
		e = trimOWS(e)
		if len(e) == 0 {
			continue
		}
		if !fn(e) {
			return
		}
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseContentLength parses one Content-Length field value. A list of
// identical values ("42, 42") is accepted as that value (RFC 9110 §8.6);
// differing values, signs, spaces inside a number or overflow are refused.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for len(v) > 0 {
		j := indexByte(v, ',')
		var e []byte
		if j < 0 {
			e, v = v, nil
		} else {
			e, v = v[:j], v[j+1:]
		}
		e = trimOWS(e)
		x, ok := parseDecimal(e)
		if !ok || (n >= 0 && x != n) {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<62)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// transferCodings folds the Transfer-Encoding field values of one message,
// in order, into what framing needs to know.
type transferCodings struct {
	seen        bool // a Transfer-Encoding field was present
	elements    int
	chunked     int  // how many times chunked appeared
	lastChunked bool // the final coding is chunked
	others      bool // a coding other than chunked appeared
}

func (t *transferCodings) add(v []byte) {
	t.seen = true
	listElements(v, func(e []byte) bool {
		// A coding with parameters is not chunked: chunked has none (RFC
		// 9112 §7), and "chunked;" is no coding net/http or HAProxy
		// reads as chunked.
		t.elements++
		if equalFold(e, "chunked") {
			t.chunked++
			t.lastChunked = true
		} else {
			t.others = true
			t.lastChunked = false
		}
		return true
	})
}

// onlyChunked reports whether the codings are exactly "chunked", once.
func (t *transferCodings) onlyChunked() bool {
	return t.seen && t.elements == 1 && t.chunked == 1
}

// connectionOptions applies the Connection field values of a head: it
// reports close, keep-alive and upgrade, and marks every field the options name as
// dropped (RFC 9110 §7.6.1). Host and the framing fields are never dropped
// here: Host is preserved and framing is re-done by the proxy anyway. The
// forwarding headers may be: a proxy in front may say they end with it.
func connectionOptions(b []byte, fields []field) (closeConn, keepAlive, upgrade bool) {
	for i := range fields {
		if fields[i].kind != fieldConnection {
			continue
		}
		listElements(fields[i].value.of(b), func(opt []byte) bool {
			switch {
			case equalFold(opt, "close"):
				closeConn = true
			case equalFold(opt, "keep-alive"):
				keepAlive = true
			case equalFold(opt, "upgrade"):
				upgrade = true
			default:
				for k := range fields {
					f := &fields[k]
					if (f.kind == fieldOther || isForwarding(f.kind)) && equalFoldASCII(f.name.of(b), opt) {
						f.drop = true
					}
				}
			}
			return true
		})
	}
	return closeConn, keepAlive, upgrade
}

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }
