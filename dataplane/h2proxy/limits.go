package h2proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file holds the listener's request limits on this engine's path:
// max_header_bytes, max_header_count and max_uri_length are checked on the
// head as HTTP/1.1 would carry it (httpproxy.Head.Config), and
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

// textBodyTimeout is the HTTP/1.1 engine's text for a 408 of a body that
// paused longer than idle_timeout.
const textBodyTimeout = "request body not received in time"

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
func (cn *conn) refuse(st *stream, w http.ResponseWriter, r *http.Request, status int, text string) {
	cn.end(closeBadRequest)
	cn.fail(closeBadRequest)
	cn.errorAnswer(st, w, r, status, text, true)
}

// timeOut answers a request whose body paused longer than idle_timeout
// with the HTTP/1.1 engine's 408, and ends the connection, recorded as
// client_timeout as there.
func (cn *conn) timeOut(st *stream, w http.ResponseWriter, r *http.Request) {
	cn.end(sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)
	cn.fail(sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)
	cn.errorAnswer(st, w, r, 408, textBodyTimeout, true)
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

// errBodyTimeout is what an idleBody returns once a read waited longer
// than idle_timeout.
var errBodyTimeout = errors.New("h2proxy: request body not received in time")

// idleBody bounds the pauses of a request body, as the HTTP/1.1 engine
// does: each read may wait at most idle_timeout (the connection's read
// deadline on HTTP/1.x, the stream's on HTTP/2), after which it fails
// with errBodyTimeout and the client gets 408. The deadline is cleared
// once the body is read to its end, for net/http's own reads after it (an
// HTTP/1.x connection's next request head, which has its own timeout,
// and its background read, which a deadline would take for the client
// going away), and once the response starts (responding): from then on
// response_timeout bounds the exchange's silences, and a client that
// streams while it reads a stream (gRPC's bidirectional calls) may be
// quiet as long as the endpoint is not.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration

	timedOut atomic.Bool
	// mu orders the deadlines the reads set (on the goroutine that sends
	// the body to the endpoint, which may still run after the handler
	// returned) with the last one, finish's: none after it.
	mu        sync.Mutex
	eof       bool
	unbounded bool // the response started
	finished  bool
}

// idleBound wraps r's body, if it has one, in an idleBody with the
// listener's idle_timeout (none if it is 0).
func idleBound(w http.ResponseWriter, r *http.Request, idle time.Duration) *idleBody {
	if idle <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
	r.Body = b
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.deadline(time.Now().Add(b.idle), false)
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.deadline(time.Time{}, true)
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.timedOut.Store(true)
		err = errBodyTimeout
	}
	return n, err
}

// deadline sets the read deadline t, unless the response started or the
// handler finished; eof notes the body's end.
func (b *idleBody) deadline(t time.Time, eof bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eof = b.eof || eof
	if b.unbounded || b.finished {
		return
	}
	b.rc.SetReadDeadline(t)
}

// unread reports whether the handler's reads have not reached the end of
// the body yet (b nil: not known, false).
func (b *idleBody) unread() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof
}

// responding lifts the bound (b nil: none) as the response starts.
func (b *idleBody) responding() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unbounded || b.finished || b.eof {
		return
	}
	b.unbounded = true
	b.rc.SetReadDeadline(time.Time{})
}

// finish is called as the handler returns. On HTTP/1.x, net/http then
// reads what is left of a body the endpoint did not take, to reuse the
// connection; that read gets idle_timeout too, or none when the
// connection ends (ending), so a client that holds its body back does not
// hold the connection.
func (b *idleBody) finish(r *http.Request, ending bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	switch {
	case b.eof:
		return
	case r.ProtoMajor != 1:
		if !b.unbounded {
			b.rc.SetReadDeadline(time.Time{}) // the stream's: no timer left behind
		}
		return
	}
	t := time.Now()
	if !ending {
		t = t.Add(b.idle)
	}
	b.rc.SetReadDeadline(t)
}

// expired reports whether b (nil: no bound) gave up on its client.
func (b *idleBody) expired() bool { return b != nil && b.timedOut.Load() }
