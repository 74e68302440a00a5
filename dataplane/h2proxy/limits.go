package h2proxy

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file holds the listener's request limits on this engine's path:
// max_header_bytes, max_header_count and max_uri_length are checked on the
// head as HTTP/1.1 would carry it (httpproxy.Head.Limits), and
// max_request_body_bytes here, on the declared length and on the body as
// it streams. A request refused by them is answered as the HTTP/1.1 engine
// answers it (431, 414, 413, with the same texts), before anything of it
// reaches an endpoint, and its connection ends as an HTTP/1.1 one does,
// recorded as BAD_REQUEST: gracefully here (GOAWAY on HTTP/2), so that the
// client's other streams complete.

// closeBadRequest is the close reason of a connection that sent a request
// the listener refuses, as the HTTP/1.1 engine records it.
const closeBadRequest = sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST

// textBodyTooLarge is the HTTP/1.1 engine's text for a 413.
const textBodyTooLarge = "request body too large"

// headerListBytes is the http.Server.MaxHeaderBytes of a connection: what
// net/http lets through to the handler, where the listener's own limits
// are checked. HTTP/2 counts a header list as each field's name and value
// plus 32 bytes (RFC 9113 §6.5.2; net/http adds room for 10 such fields to
// what it is given), the pseudo-fields included, where the HTTP/1.1 head
// Load writes counts 4 per field and a request line. A list within
// MaxHeaderBytes + 32 × (MaxHeaderCount + 8) is thus passed to the handler
// whenever its head could be within both limits, so a head the listener
// accepts gets through (but for a Cookie sent as many crumbs, which HTTP/2
// counts as fields and the head joins into one), and a list net/http
// refuses (with a 431 of its own, not recorded as BAD_REQUEST) is one the
// listener would refuse too. It is also the
// SETTINGS_MAX_HEADER_LIST_SIZE the client is told, which Go's client
// enforces on its side.
func headerListBytes(hcfg *httpproxy.Config) int {
	return hcfg.MaxHeaderBytes + 32*(hcfg.MaxHeaderCount+8) - 10*32
}

// refuse answers a request the listener refuses before routing it, with
// the HTTP/1.1 engine's status and text, and ends the connection.
func (cn *conn) refuse(w http.ResponseWriter, r *http.Request, status int, text string) int {
	cn.end(closeBadRequest)
	cn.fail(closeBadRequest)
	return cn.errorAnswer(w, r, status, text, true)
}

// declaredTooLarge reports whether r declares a body longer than the
// listener's max_request_body_bytes.
func declaredTooLarge(r *http.Request, hcfg *httpproxy.Config) bool {
	return hcfg.MaxRequestBodyBytes > 0 && r.ContentLength > hcfg.MaxRequestBodyBytes
}

// limitBody bounds r's body to the listener's max_request_body_bytes, for
// a body whose length was not declared (a declared one was checked, and
// net/http holds the client to it).
func limitBody(r *http.Request, hcfg *httpproxy.Config) {
	if hcfg.MaxRequestBodyBytes > 0 && r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &limitedBody{ReadCloser: r.Body, left: hcfg.MaxRequestBodyBytes}
	}
}

// errBodyTooLarge is what a limitedBody returns once its bound is passed:
// the transport sending it to the endpoint aborts the request (RST_STREAM
// to an HTTP/2 endpoint, a closed connection to an HTTP/1.1 one).
var errBodyTooLarge = errors.New("h2proxy: request body too large")

// limitedBody is a request body that fails rather than pass its bound. A
// read that would cross the bound returns none of its bytes, so the
// endpoint never gets a byte past the limit.
type limitedBody struct {
	io.ReadCloser
	left int64
	over atomic.Bool // read by the handler while the transport reads
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.over.Load() {
		return 0, errBodyTooLarge
	}
	// One byte more than is left tells a body at the bound from one
	// past it.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		b.over.Store(true)
		return 0, errBodyTooLarge
	}
	b.left -= int64(n)
	return n, err
}

// bodyTooLarge reports whether r's body passed its bound (limitBody).
func bodyTooLarge(r *http.Request) bool {
	b, ok := r.Body.(*limitedBody)
	return ok && b.over.Load()
}
