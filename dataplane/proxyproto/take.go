package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// MaxTake bounds the header Take accepts: a v2 header with TLVs (AWS
// NLB, GCP and Azure add a few, of some tens of bytes) fits; a longer one
// is a *FormatError.
const MaxTake = 2048

// ErrUnsupported: Take cannot peek at sockets on this platform.
var ErrUnsupported = errors.New("proxyproto: reading a header off a socket is not supported on this platform")

// peeker is the socket access Take needs: peek waits (until the read
// deadline) for bytes and copies those queued into p without consuming
// them, 0 meaning the end of the stream; consume takes exactly len(p)
// queued bytes, which peek saw, off the socket into p.
type peeker interface {
	peek(p []byte) (int, error)
	consume(p []byte) error
}

// sleep is time.Sleep, but for tests.
var sleep = time.Sleep

// takeBufs holds Take's buffers: accepting a header costs no allocation
// of its size per connection.
var takeBufs = sync.Pool{New: func() any { return new([MaxTake]byte) }}

// take reads a header off s, consuming exactly its bytes and none of the
// stream after it. It returns a nil header, having consumed nothing, when
// the stream does not start with one.
//
// Why peek rather than read and hand back the bytes read past the header
// (as Read does): a TCP listener copies between sockets with splice(2) and
// an HTTP listener reads requests with raw reads of its own; bytes
// replayed from user space would need a path around both. Peeking first
// leaves the stream in the socket exactly where the protocol starts, so
// the proxies serve the connection as if no header had been there.
//
// What is consumed is only ever header: bytes are taken off the socket
// once they are certainly part of one, that is once a whole signature
// ("PROXY " or the 12-byte v2 one) was seen, and then only up to the
// header's end (v2: its length; v1: its CRLF, or all that was peeked while
// the CRLF is still to come). While the first bytes are only the start of
// a signature ("PRO", which may yet be "PROPFIND"), nothing can be
// consumed and the socket stays readable, so take re-peeks after short
// sleeps until more bytes came or the deadline passed. A sender of PROXY
// headers writes its header in one piece, so that is rare.
func take(s peeker, deadline time.Time) (*Header, error) {
	buf := takeBufs.Get().(*[MaxTake]byte)
	defer takeBufs.Put(buf)
	n := 0 // header bytes consumed into buf[:n]
	nap := time.Millisecond
	for {
		m, err := s.peek(buf[n:])
		if err != nil {
			return nil, err
		}
		view := buf[:n+m]
		h, size, perr := Parse(view)
		declared := v2Declared(view)
		switch {
		case perr == nil:
			if err := s.consume(buf[n:size]); err != nil {
				return nil, err
			}
			return &h, nil
		case perr == ErrNotProxy:
			return nil, nil
		case perr != ErrIncomplete:
			return nil, perr
		case declared > MaxTake:
			// Refused as soon as it says so, rather than once MaxTake
			// bytes came: a sender may never send them. (An incomplete
			// v1 header is shorter than MaxV1, so none fills the buffer.)
			return nil, &FormatError{Version: 2, Reason: "declares " + strconv.Itoa(declared) + " bytes, longer than " + strconv.Itoa(MaxTake)}
		case m == 0:
			if n == 0 && len(view) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		case bytes.HasPrefix(view, v1Magic) || bytes.HasPrefix(view, v2Sig):
			// Incomplete, so every byte peeked is header.
			if err := s.consume(buf[n : n+m]); err != nil {
				return nil, err
			}
			n += m
		default:
			// The start of a signature, no more: wait for the rest.
			if !deadline.IsZero() && !time.Now().Add(nap).Before(deadline) {
				return nil, os.ErrDeadlineExceeded
			}
			sleep(nap)
			nap = min(2*nap, 20*time.Millisecond)
		}
	}
}

// v2Declared is the length of the v2 header b starts with, as its fixed
// part declares it; 0 when b is not that far into a v2 header.
func v2Declared(b []byte) int {
	if len(b) < v2HeadLen || !bytes.HasPrefix(b, v2Sig) {
		return 0
	}
	return v2HeadLen + int(binary.BigEndian.Uint16(b[14:16]))
}
