//go:build unix

package proxyproto

import (
	"net"
	"syscall"
	"time"
)

// Take reads a PROXY header (v1 or v2, told by its signature) off c, a
// connection nothing was read from yet, consuming exactly the header's
// bytes: what follows stays in the socket for whoever serves c, so a TCP
// proxy keeps splice(2). It returns a nil header, having consumed nothing,
// when the stream does not start with one; a *FormatError for a malformed
// header; io.EOF (or io.ErrUnexpectedEOF in a header) when the peer
// closed; an error wrapping os.ErrDeadlineExceeded when deadline (zero:
// none) passed first.
// It sets c's read deadline to deadline and leaves it so.
func Take(c *net.TCPConn, deadline time.Time) (*Header, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	s := &sockPeeker{raw: raw}
	s.fn = func(fd uintptr) bool {
		s.n, _, s.err = syscall.Recvfrom(int(fd), s.p, s.flags)
		return s.err != syscall.EAGAIN
	}
	return take(s, deadline)
}

// sockPeeker peeks with recv(MSG_PEEK) through the runtime's poller, so a
// wait for bytes parks the goroutine and honours the read deadline.
type sockPeeker struct {
	raw   syscall.RawConn
	fn    func(fd uintptr) bool
	p     []byte
	flags int
	n     int
	err   error
}

func (s *sockPeeker) recv(p []byte, flags int) (int, error) {
	for {
		s.p, s.flags = p, flags
		err := s.raw.Read(s.fn)
		s.p = nil
		switch {
		case err != nil:
			return 0, err
		case s.err == syscall.EINTR:
			continue
		case s.err != nil:
			return 0, s.err
		}
		return s.n, nil
	}
}

func (s *sockPeeker) peek(p []byte) (int, error) { return s.recv(p, syscall.MSG_PEEK) }

func (s *sockPeeker) consume(p []byte) error {
	for len(p) > 0 {
		n, err := s.recv(p, 0)
		if err != nil {
			return err
		}
		if n == 0 {
			return syscall.ECONNRESET // peeked bytes do not vanish but by a reset
		}
		p = p[n:]
	}
	return nil
}
