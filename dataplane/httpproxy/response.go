package httpproxy

// response is a parsed response head from an endpoint.
type response struct {
	head   []byte
	status int
	reason span
	minor  uint8

	nf     int
	fields []field

	body          uint8
	contentLength int64 // for bodyLength; for a bodyless response, the declared length or -1
	// chunkedHead: a bodyless response to HEAD, or a 304, says the body a
	// GET would have got comes chunked (RFC 9112 §6.1), in place of a
	// length; an HTTP/1.1 client is told so too.
	chunkedHead bool
	// reusable: the endpoint keeps the connection open after this response
	// as far as its head says (HTTP/1.1 without close, or 1.0 keep-alive,
	// and unambiguous framing).
	reusable bool
}

// parse parses the complete response head b. headReq says the request was
// HEAD, which makes the response bodyless whatever its fields say.
//
// Framing follows RFC 9112 §6.3. A response with both Transfer-Encoding and
// Content-Length is read as chunked and its connection is not reused. A
// Transfer-Encoding other than exactly "chunked" is refused (502): the proxy
// would have to forward a transfer coding it does not decode.
func (r *response) parse(b []byte, headReq bool) *statusError {
	if r.fields == nil {
		r.fields = make([]field, maxFields)
	}
	if len(b) > maxHead {
		return errRespTooLarge
	}
	r.head = b
	r.nf = 0
	r.body = bodyNone
	r.contentLength = -1
	r.chunkedHead = false
	r.reusable = false

	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	if len(b) < 13 || string(b[:7]) != "HTTP/1." || b[7] < '0' || b[7] > '9' || b[8] != ' ' {
		return errRespStatus
	}
	r.minor = 1
	if b[7] == '0' {
		r.minor = 0
	}
	status := 0
	for i := 9; i < 12; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return errRespStatus
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 || status > 599 {
		return errRespStatus
	}
	r.status = status
	i := 12
	switch b[i] {
	case ' ':
		i++
	case '\r', '\n': // no reason phrase, nor its SP: as many servers send it
	default:
		return errRespStatus // a fourth digit ("2000"), or anything else
	}
	rs := i
	for i < len(b) && isValueByte[b[i]] {
		i++
	}
	r.reason = span{uint16(rs), uint16(i)}
	if i = lineEnd(b, i); i < 0 {
		return errRespStatus
	}

	fields, nf, n, err := parseFields(b, i, r.fields, maxFields)
	r.fields = fields
	if err != nil {
		if err == errTooManyFields {
			return errRespTooManyFields
		}
		return errRespMalformed
	}
	if n != len(b) {
		return errRespMalformed
	}
	r.nf = nf
	return r.semantics(headReq)
}

func (r *response) semantics(headReq bool) *statusError {
	b := r.head
	fields := r.fields[:r.nf]
	cl := int64(-1)
	var te transferCodings
	for i := range fields {
		f := &fields[i]
		switch f.kind {
		case fieldContentLength:
			n, ok := parseContentLength(f.value.of(b))
			if !ok || (cl >= 0 && n != cl) {
				return errRespFraming
			}
			cl = n
			f.drop = true
		case fieldTransferEncoding:
			te.add(f.value.of(b))
			f.drop = true
		case fieldConnection, fieldHopByHop, fieldUpgrade:
			f.drop = true
		}
	}
	closeConn, keepAlive, _ := connectionOptions(b, fields)
	r.reusable = !closeConn && (r.minor == 1 || keepAlive)

	switch {
	case r.status < 200 || r.status == 204:
		r.body = bodyNone
	case headReq || r.status == 304:
		r.body = bodyNone
		r.contentLength = cl // forwarded as the length a GET would have had
		if te.seen && te.onlyChunked() && r.minor == 1 {
			// So is its chunked coding, which overrides a length.
			r.chunkedHead, r.contentLength = true, -1
		}
	case te.seen:
		if !te.onlyChunked() || r.minor == 0 {
			// HTTP/1.0 has no transfer codings: its framing is faulty
			// (RFC 9112 §6.1), and readers disagree on it (net/http
			// reads the body to the close).
			return errRespFraming
		}
		if cl >= 0 {
			r.reusable = false
		}
		r.body = bodyChunked
	case cl >= 0:
		r.body = bodyLength
		r.contentLength = cl
	default:
		r.body = bodyClose
		r.reusable = false
	}
	return nil
}
