package h2proxy

import (
	"bytes"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// h1Screen stands between an HTTP/1.x client connection and net/http,
// which serves it on a translating listener: it frames the client's bytes
// as the HTTP/1.1 engine does (httpproxy.HeadScreener, ChunkScanner), and
// hands net/http a request only once that engine would have taken its
// head. net/http alone is laxer in places, the worst of them request
// smuggling: it reads a request with both Content-Length and chunked
// Transfer-Encoding by the chunked framing and keeps the connection, so a
// proxy in front that frames by the length reads other requests from the
// same bytes.
//
// A head the HTTP/1.1 engine refuses is handed on as a request line
// net/http refuses (refusedLine), so that net/http answers it after the
// requests before it, and closes the connection; the connection writes
// the HTTP/1.1 engine's answer in place of net/http's plain 400 (answer,
// countConn.Write), which says why, and is a 501 or 505 where that
// engine's is. A head not complete within request_header_timeout gets
// that engine's 408 as net/http closes the connection (countConn.Close).
// The connection records either as it records net/http's own refusals
// (countConn.refusal). A body whose chunked framing turns bad is cut there
// (errBadFraming), as the HTTP/1.1 engine cuts it.
type h1Screen struct {
	buf    []byte // read from the client, not handed on yet
	ready  int    // buf[:ready] may be handed on
	state  uint8
	left   int64 // of a body of declared length
	heads  httpproxy.HeadScreener
	chunks httpproxy.ChunkScanner
	// maxHead bounds a head the screen holds, past any limit config
	// sets: a longer one is net/http's to refuse (431).
	maxHead int
	// config is the listener's, whose head limits the screen holds heads
	// to as the HTTP/1.1 engine does (nil: none).
	config func() *httpproxy.Config
	// handed counts the heads handed on whole (countConn.serving).
	handed atomic.Uint64

	// headTimeout bounds the wait for the rest of a head, from headSince:
	// when the screen first waited for it with no request being served,
	// or for the connection's first head, from its first byte; and the
	// wait for that byte, from the connection's start (fresh).
	headTimeout time.Duration
	headSince   time.Time
	fresh       bool // no byte read yet; headSince is the connection's start
	bounded     bool // the connection's read deadline is the head's (countConn.boundHead)

	// answer is what the client gets for the head the screen refused, or
	// that did not come in time; set once, and read by the writes and the
	// close of the connection, which may run beside the screen's reads.
	answer atomic.Pointer[screenAnswer]
}

// screenAnswer is the HTTP/1.1 engine's answer to a head, the last bytes
// of the connection (httpproxy.AppendRefusal).
type screenAnswer struct {
	b      []byte
	status int
	body   int // of len(b)
	reason sluicev1.CloseReason
	// onClose: the answer to a head that did not come in time, which
	// net/http closes on without a word; a refused head's replaces
	// net/http's answer to refusedLine, and is not sent if net/http
	// closes before it reads that line (a response that closed).
	onClose bool
	sent    atomic.Bool
}

const (
	screenHead    uint8 = iota // expecting a request head
	screenLength               // inside a body of declared length
	screenChunked              // inside a chunked body
	screenPass                 // handing on as is: a tunnel, or a head net/http refuses for its size
	screenRefused              // refusedLine handed on: nothing more
	screenCut                  // a chunked body's framing turned bad
)

// errBadFraming cuts a request whose chunked body the HTTP/1.1 engine
// refuses: net/http's body read fails with it.
var errBadFraming = errors.New("h2proxy: invalid chunked encoding")

// errBodyLeft fails the reads of a body left unread by an early answer,
// once the answer is done (countConn.lingers).
var errBodyLeft = errors.New("h2proxy: the request body is left unread")

// refusedLine is what net/http reads in place of a refused head: no
// request line (it has no space), which net/http answers with
// netHTTPRefusal and closes on.
const refusedLine = "refused\r\n\r\n"

// netHTTPRefusal is net/http's answer to refusedLine, in one write.
const netHTTPRefusal = "HTTP/1.1 400 Bad Request" + refusalHeaders + "400 Bad Request"

// frame moves what it can of buf to ready, and reports whether it did
// anything (made bytes ready, or moved to another state); false asks for
// more of the client's bytes.
func (s *h1Screen) frame() bool {
	switch s.state {
	case screenPass:
		s.ready = len(s.buf)
		return s.ready > 0
	case screenLength:
		k := int(min(int64(len(s.buf)), s.left))
		s.ready, s.left = k, s.left-int64(k)
		if s.left == 0 {
			s.state = screenHead
			return true
		}
		return k > 0
	case screenChunked:
		n, done, err := s.chunks.Scan(s.buf)
		s.ready = n
		switch {
		case err != nil:
			s.state = screenCut
			return true
		case done:
			s.chunks.Reset()
			s.state = screenHead
			return true
		}
		return n > 0
	case screenHead:
		// Empty lines before a request line are dropped, as the HTTP/1.1
		// engine ignores them (RFC 9112 §2.2), a few bytes of them; net/http
		// drops up to 4, and only after a POST.
		i, err := s.heads.SkipEmpty(s.buf)
		s.buf = s.buf[:copy(s.buf, s.buf[i:])]
		if err != nil {
			return s.refuse(err)
		}
		var cfg *httpproxy.Config
		if s.config != nil {
			cfg = s.config()
		}
		end := httpproxy.HeadEnd(s.buf)
		if end < 0 {
			if err := s.heads.Partial(s.buf, cfg); err != nil {
				return s.refuse(err)
			}
			if len(s.buf) > s.maxHead {
				s.state = screenPass
				return true
			}
			return false
		}
		body, err := s.heads.Screen(s.buf[:end], cfg)
		if err != nil {
			return s.refuse(err)
		}
		s.ready, s.headSince = end, time.Time{}
		s.handed.Add(1)
		switch {
		case body > 0:
			s.state, s.left = screenLength, body
		case body < 0:
			s.state = screenChunked
		}
		// A request that asks to switch protocols is followed by the next
		// request unless its endpoint switches: then the tunnel takes the
		// connection (tunnelled).
		return true
	}
	return false
}

// refuse hands on refusedLine in place of what is buffered, and nothing
// after it, and keeps the answer to err.
func (s *h1Screen) refuse(err error) bool {
	s.answerWith(err)
	s.buf, s.state = append(s.buf[:0], refusedLine...), screenRefused
	s.ready = len(s.buf)
	return true
}

// answerWith keeps the HTTP/1.1 engine's answer to err, the refusal of the
// head buffered: without a body when the head is a HEAD request's.
func (s *h1Screen) answerWith(err error) {
	head := bytes.HasPrefix(s.buf, []byte("HEAD "))
	a := &screenAnswer{onClose: err == httpproxy.ErrHeadTimeout}
	a.b, a.status, a.reason = httpproxy.AppendRefusal(nil, err, head)
	a.body = len(a.b) - (bytes.Index(a.b, []byte("\r\n\r\n")) + 4)
	s.answer.CompareAndSwap(nil, a)
}

// partialHead reports whether the screen holds the start of a head, and
// nothing ready: a read that fails now fails within the head.
func (s *h1Screen) partialHead() bool {
	return s.state == screenHead && len(s.buf) > 0 && s.ready == 0
}

// take hands on up to len(p) of the ready bytes.
func (s *h1Screen) take(p []byte) int {
	n := copy(p, s.buf[:s.ready])
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	s.ready -= n
	if len(s.buf) == 0 && cap(s.buf) > 4<<10 {
		s.buf = nil // a long head's room, not kept for an idle connection
	}
	return n
}

// tunnelled hands on everything from now on: the connection became a
// tunnel (a 101).
func (s *h1Screen) tunnelled() {
	s.state = screenPass
	s.ready = len(s.buf)
}
