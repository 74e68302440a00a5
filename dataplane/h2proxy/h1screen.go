package h2proxy

import (
	"errors"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
)

// h1Screen stands between an HTTP/1.x client connection and net/http,
// which serves it on a translating listener: it frames the client's bytes
// as the HTTP/1.1 engine does (httpproxy.HeadScreener, ChunkScanner), and
// hands net/http a request only once that engine would have taken its
// head. net/http alone is laxer in places, the worst of them request
// smuggling: it reads a request with both Content-Length and chunked
// Transfer-Encoding by the chunked framing and keeps the connection, so a
// proxy in front that frames by the length reads other requests from the
// same bytes. A head the HTTP/1.1 engine refuses is handed on as a request
// line net/http refuses (refusedLine): net/http answers it 400 (where the
// HTTP/1.1 engine may answer 501 or 505, and says why) and closes the
// connection, after the requests before it, and the connection records the
// refusal as it records net/http's own (countConn.noteRefusal). A body
// whose chunked framing turns bad is cut there (errBadFraming), as the
// HTTP/1.1 engine cuts it.
type h1Screen struct {
	buf     []byte // read from the client, not handed on yet
	ready   int    // buf[:ready] may be handed on
	state   uint8
	left    int64 // of a body of declared length
	heads   httpproxy.HeadScreener
	chunks  httpproxy.ChunkScanner
	maxHead int // a head longer than this is net/http's to refuse (431)
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

// refusedLine is what net/http reads in place of a refused head: no
// request line (it has no space), which net/http answers "400 Bad
// Request" and closes on.
const refusedLine = "refused\r\n\r\n"

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
			return s.refuse()
		}
		end := httpproxy.HeadEnd(s.buf)
		if end < 0 {
			if len(s.buf) > s.maxHead {
				s.state = screenPass
				return true
			}
			return false
		}
		body, err := s.heads.Screen(s.buf[:end])
		if err != nil {
			return s.refuse()
		}
		s.ready = end
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
// after it.
func (s *h1Screen) refuse() bool {
	s.buf, s.state = append(s.buf[:0], refusedLine...), screenRefused
	s.ready = len(s.buf)
	return true
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
