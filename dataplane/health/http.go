package health

import (
	"github.com/sluice-lb/sluice/snapshot"

	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"
)

// maxStatusLine bounds what an HTTP check reads: the status line must end
// within this many bytes, or the check fails.
const maxStatusLine = 4096

// httpPrefix is how every status line the check accepts begins.
const httpPrefix = "HTTP/1."

// lineBufs holds read buffers shared by every HTTP check, so a check costs
// no buffer allocation and a thousand idle probes hold no buffer at all.
var lineBufs = sync.Pool{New: func() any { return new([maxStatusLine]byte) }}

// aLongTimeAgo is a deadline in the past: setting it wakes a blocked read or
// write at once.
var aLongTimeAgo = time.Unix(1, 0)

// httpCheck is HAProxy's "option httpchk" with "http-check expect status":
// one HTTP/1.1 request over a fresh connection (HTTPS for an endpoint that
// speaks TLS), up iff the status of the answer is in expect. Only the
// status line is read; the connection is closed after it.
type httpCheck struct {
	connector
	timeout time.Duration
	expect  snapshot.StatusSpec
	// req is the whole request, built once. It is nil when the method,
	// path or host could not be sent as they are (a space, a CR or LF...):
	// the check then fails every time rather than send a broken request.
	req []byte
}

// httpTarget is the method and Host an HTTP check sends, with their
// defaults (GET, the endpoint's address); ok is false when the method,
// path or host could not be sent as they are (a space, a CR or LF...).
func (s Spec) httpTarget() (method, host string, ok bool) {
	method, host = s.HTTPMethod, s.HTTPHost
	if method == "" {
		method = "GET"
	}
	if host == "" {
		host = s.Addr
	}
	return method, host, snapshot.IsToken(method) && isVisible(s.HTTPPath) && isVisible(host)
}

func newHTTPCheck(s Spec, cn connector) *httpCheck {
	h := &httpCheck{connector: cn, timeout: s.Timeout, expect: s.Expect}
	method, host, ok := s.httpTarget()
	if !ok {
		return h
	}
	b := append([]byte(nil), method...)
	b = append(b, ' ')
	b = append(b, s.HTTPPath...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n"...)
	h.req = b
	return h
}

// errUnsendable fails every check whose request cannot be sent as
// configured.
var errUnsendable = errors.New("bad check: method, path or host cannot be sent")

func (h *httpCheck) check(ctx context.Context) error {
	if h.req == nil {
		return errUnsendable
	}
	// One deadline covers connect, write and read: a server that accepts
	// and never answers, or answers a byte at a time, fails at the timeout.
	deadline := time.Now().Add(h.timeout)
	conn, err := h.connect(ctx, deadline)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return failure(err, h.timedOut)
	}
	// Reconcile waits for a stopped probe: cancelling ends the exchange at
	// once instead of at the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := conn.Write(h.req); err != nil {
		return failure(err, h.timedOut)
	}
	buf := lineBufs.Get().(*[maxStatusLine]byte)
	defer lineBufs.Put(buf)
	line, err := readStatusLine(conn, buf[:])
	switch {
	case err == io.EOF:
		return errClosed
	case err == errNotHTTP || err == errLineTooLong:
		return badResponse(line, err)
	case err != nil:
		return failure(err, h.timedOut)
	}
	code, ok := parseStatusLine(line)
	if !ok {
		return badResponse(line, nil)
	}
	if !h.expect.Contains(code) {
		return errors.New("status " + strconv.Itoa(code))
	}
	return nil
}

// maxQuoted bounds how much of a bad answer a failure quotes.
const maxQuoted = 32

// badResponse describes an answer that is not an acceptable status line:
// the start of what came, quoted (Go syntax, so controls and binary are
// safe to print), and why, if not obvious from it.
func badResponse(got []byte, why error) error {
	q := got
	if len(q) > maxQuoted {
		q = q[:maxQuoted]
	}
	text := "bad response: " + strconv.QuoteToASCII(string(q))
	if len(got) > maxQuoted {
		text += "..."
	}
	if why == errLineTooLong {
		text += " (" + why.Error() + ")"
	}
	return errors.New(text)
}

// Why readStatusLine gave up, besides the reader's own errors.
var (
	errNotHTTP     = errors.New("not an HTTP/1.x status line")
	errLineTooLong = errors.New("status line longer than 4 KiB")
)

// readStatusLine reads from r into buf until the first LF and returns the
// line before it, without a CR that ends it. It fails if buf fills first
// (errLineTooLong), if r ends (io.EOF) or fails first, or as soon as what
// it has read cannot begin an HTTP/1.x status line (errNotHTTP): a server
// that answers something else fails its check without waiting for the
// timeout. On errNotHTTP and errLineTooLong it also returns what it read,
// for the failure to quote. It may read past the line.
func readStatusLine(r io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		if m < 0 || m > len(buf)-n {
			return nil, errNotHTTP // a broken Reader; never trust it with an index
		}
		if i := bytes.IndexByte(buf[n:n+m], '\n'); i >= 0 {
			line := buf[:n+i]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			return line, nil
		}
		n += m
		if k := min(n, len(httpPrefix)); string(buf[:k]) != httpPrefix[:k] {
			return buf[:n], errNotHTTP
		}
		if err != nil {
			return nil, err
		}
	}
	return buf[:n], errLineTooLong
}

// parseStatusLine parses an HTTP/1.x status line without its line end and
// returns its status code, 100 to 599:
//
//	HTTP/1.x SP 3DIGIT [ SP reason-phrase ]
//
// The reason phrase may hold any byte but controls other than HTAB (RFC
// 9112, section 4). The space before an empty reason phrase may be left
// out, as some servers do.
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < len("HTTP/1.x 200") || string(line[:len(httpPrefix)]) != httpPrefix ||
		!isASCIIDigit(line[7]) || line[8] != ' ' {
		return 0, false
	}
	d0, d1, d2 := line[9], line[10], line[11]
	if d0 < '1' || d0 > '5' || !isASCIIDigit(d1) || !isASCIIDigit(d2) {
		return 0, false
	}
	if rest := line[12:]; len(rest) > 0 {
		if rest[0] != ' ' {
			return 0, false
		}
		for _, c := range rest[1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, false
			}
		}
	}
	return int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0'), true
}

// isVisible reports whether s is not empty and holds only visible ASCII:
// no space or control that would end a request line or header early.
func isVisible(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }
