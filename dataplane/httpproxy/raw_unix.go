//go:build unix

package httpproxy

import (
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// initRaw prepares the raw-socket paths of a plain TCP client connection:
// its descriptor for the parker, the idle read that gives the exchange back
// to the pool while it waits, and the first write attempt that needs no
// deadline.
func (cc *clientConn) initRaw() {
	raw, err := cc.tcp.SyscallConn()
	if err != nil {
		return
	}
	cc.raw = raw
	// The descriptor, for the parker's epoll set (park.go); it stays valid
	// while the connection is open, and the parker only uses it then.
	raw.Control(func(fd uintptr) { cc.fd = int32(fd) })
	cc.readFn = func(fd uintptr) bool {
		if cc.x == nil {
			cc.x = getExchange()
		}
		x := cc.x
		if !cc.recv(fd, x.rb[x.re:]) {
			// Nothing to read: wait without the buffers.
			if x.re == x.rs {
				putExchange(x)
				cc.x = nil
			}
			return false
		}
		x.re += cc.rawN
		cc.info.BytesIn += uint64(cc.rawN)
		if cc.leaveIdle() || cc.rawErr != nil || cc.info.Requests == 0 || !cc.parkable() {
			return true
		}
		return !cc.serveInline()
	}
	cc.writeFn = func(fd uintptr) bool {
		if cc.askMSS {
			cc.askMSS = false
			cc.mss = tcpseg.MSS(int(fd))
		}
		for {
			n, err := sendRaw(fd, cc.rawP)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				cc.rawN, cc.rawErr = 0, nil
			case 0:
				cc.rawN, cc.rawErr = n, nil
			default:
				cc.rawN, cc.rawErr = 0, &net.OpError{Op: "write", Net: "tcp", Err: err}
			}
			return true
		}
	}
}

// initEndpointRaw prepares the raw-socket paths to endpoint connections: a
// read that waits for bytes (the netpoller waits, under the deadline
// armEndpoint set), and a write that waits for room until all of rawP went
// or an error. They do not touch the client's socket, so a client over TLS
// has them too: a pooled endpoint connection carries its RawConn to
// whichever client takes it next.
func (cc *clientConn) initEndpointRaw() {
	cc.epReadFn = func(fd uintptr) bool { return cc.recv(fd, cc.rawP) }
	cc.epWriteFn = cc.sendAll
	cc.epAwaitFn = func(fd uintptr) bool {
		if len(cc.rawP) == 0 {
			return true // all sent, and the poller says the answer came
		}
		// Sent in full: wait for the answer. Out of room or an error:
		// the caller goes on as after a write.
		return !cc.sendAll(fd) || cc.rawErr != nil
	}
}

// sendAll sends rawP to fd until all went (true), there is no room
// (false), or an error (true, rawErr set); rawN counts what went.
func (cc *clientConn) sendAll(fd uintptr) bool {
	if x := cc.x; x.askEpMSS {
		x.askEpMSS = false
		x.epMSS = tcpseg.MSS(int(fd))
	}
	for len(cc.rawP) > 0 {
		n, err := sendRaw(fd, cc.rawP)
		switch err {
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		case 0:
			cc.rawN += n
			cc.rawP = cc.rawP[n:]
		default:
			cc.rawErr = &net.OpError{Op: "write", Net: "tcp", Err: err}
			return true
		}
	}
	return true
}

// recv reads from fd into p with recvfrom (sockets skip the VFS layer that
// way): false when nothing is there to read, else true with rawN and rawErr
// set, io.EOF for the peer's close.
func (cc *clientConn) recv(fd uintptr, p []byte) bool {
	for {
		n, err := recvRaw(fd, p)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			cc.rawN, cc.rawErr = n, nil
			if n == 0 {
				cc.rawErr = io.EOF
			}
		default:
			cc.rawN, cc.rawErr = 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
		}
		return true
	}
}

// rawConnOf returns c's syscall.RawConn when c is a plain TCP connection,
// nil otherwise.
func (cc *clientConn) rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readEndpointRaw reads from the endpoint connection through raw, which is
// bc's: Read's contract, without the thread hand-off (see recvRaw).
func (cc *clientConn) readEndpointRaw(raw syscall.RawConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cc.epReadFn == nil {
		cc.initEndpointRaw()
	}
	cc.rawP, cc.rawN, cc.rawErr = p, 0, nil
	err := raw.Read(cc.epReadFn)
	cc.rawP = nil
	if err != nil {
		return 0, err
	}
	return cc.rawN, cc.rawErr
}

// writeEndpointRaw is readEndpointRaw's Write.
func (cc *clientConn) writeEndpointRaw(raw syscall.RawConn, p []byte) (int, error) {
	if cc.epWriteFn == nil {
		cc.initEndpointRaw()
	}
	cc.rawP, cc.rawN, cc.rawErr = p, 0, nil
	err := raw.Write(cc.epWriteFn)
	n := cc.rawN
	cc.rawP = nil
	if err == nil {
		err = cc.rawErr
	}
	return n, err
}

// sendAwaitEndpointRaw writes p to the endpoint like writeEndpointRaw,
// and once all of it went, waits until the endpoint's socket has
// something to read, without reading: a request just sent has no answer
// yet, and the read that readEndpointRaw makes first would fail, one
// wasted recvfrom per exchange. The write happens inside raw.Read, after
// it reset the socket's readiness, so the answer's readiness is not lost.
// A wait that ends in an error (a deadline, the connection closed) is
// not reported: the read that follows meets it. Out of room, it returns
// what went, and the caller writes the rest as usual.
func (cc *clientConn) sendAwaitEndpointRaw(raw syscall.RawConn, p []byte) (int, error) {
	if cc.epAwaitFn == nil {
		cc.initEndpointRaw()
	}
	cc.rawP, cc.rawN, cc.rawErr = p, 0, nil
	raw.Read(cc.epAwaitFn)
	n, err := cc.rawN, cc.rawErr
	cc.rawP = nil
	return n, err
}

// alive reports whether an idle pooled connection is still open: the
// endpoint has neither closed it nor sent anything on it. It costs a
// syscall, so it is used only before sending a request that cannot be
// replayed (one with a body), or on a connection that sat pooled for
// probeIdleAfter.
//
// For a TLS connection the socket under it is probed: an endpoint that
// closed it sent a close_notify alert or a FIN, and any byte means the
// connection is not idle.
func alive(c net.Conn) bool {
	raw := socketOf(c)
	if raw == nil {
		return false
	}
	ok := false
	// Control, not Read: Read first checks the deadline last set on the
	// connection, which has long passed on a connection that sat pooled.
	err := raw.Control(func(fd uintptr) {
		_, err := peekByte(fd)
		ok = err == syscall.EAGAIN
	})
	return err == nil && ok
}

// socketOf returns the socket under the endpoint connection c (plain or
// TLS), nil when there is none.
func socketOf(c net.Conn) syscall.RawConn {
	tc := upstream.TCPConn(c)
	if tc == nil {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// endpointSocket returns the socket under the endpoint connection bc: the
// exchange's own raw connection when bc is its endpoint connection, else
// socketOf's; nil when there is none.
func (cc *clientConn) endpointSocket(bc net.Conn) syscall.RawConn {
	if raw := cc.x.epRaw; raw != nil && bc == cc.x.epConn {
		return raw
	}
	return socketOf(bc)
}

// requestWaiting reports whether the client socket holds bytes that the
// connection has not read: the start of a request, which a connection
// that Drain found idle serves rather than closing on it (see
// Server.Drain). Over TLS the socket under it is looked at, where such
// bytes are the records of one. It costs a system call, and is asked only
// while the server drains.
func (cc *clientConn) requestWaiting() bool {
	raw := cc.raw
	if raw == nil {
		raw = socketOf(cc.c)
	}
	if raw == nil {
		return false
	}
	n := 0
	err := raw.Control(func(fd uintptr) {
		if m, err := peekByte(fd); err == nil {
			n = m
		}
	})
	return err == nil && n > 0
}

// peekByte looks at the next byte the socket fd holds without taking it
// or waiting: n is 1 when one is there, 0 at the peer's FIN, and err is
// EAGAIN when nothing came. An interrupted call is made again.
func peekByte(fd uintptr) (n int, err error) {
	var b [1]byte
	return peek(fd, b[:])
}

// peek copies into b what the socket fd holds, without taking it or
// waiting: n is 0 at the peer's FIN, and err is EAGAIN when nothing came.
// An interrupted call is made again.
func peek(fd uintptr, b []byte) (n int, err error) {
	for {
		n, _, err = syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// answerSeen returns what the endpoint connection bc holds, unread: what
// readResponseHead has in the endpoint read buffer, and what waits on the
// socket. It looks without taking (MSG_PEEK), into the free end of the
// endpoint read buffer; the bytes stay for readResponseHead. What a peer
// sent before it reset the connection stays readable, so this works after
// a write failed too. Over TLS the socket holds records, which tell
// nothing until decrypted (tlsAnswer). It costs system calls, and is asked
// only on paths that failed, stalled or were woken (earlyAnswer,
// sendBody).
func (cc *clientConn) answerSeen(bc net.Conn) []byte {
	x := cc.x
	raw := cc.endpointSocket(bc)
	if raw == nil {
		return nil
	}
	n := 0
	err := raw.Control(func(fd uintptr) {
		if m, err := peek(fd, x.bb[x.be:]); err == nil {
			n = m
		}
	})
	if err != nil {
		return nil
	}
	if _, plain := bc.(*net.TCPConn); !plain {
		if n > 0 {
			cc.stopAnswerWatch() // it waits on the socket tlsAnswer reads
			cc.tlsAnswer(bc)
		}
		n = 0
	}
	return x.bb[x.bs : x.be+n]
}

// tlsAnswerWait bounds tlsAnswer's read: the records it decrypts are on
// the socket already, but for the rest of one that is still coming.
const tlsAnswerWait = 20 * time.Millisecond

// tlsAnswer reads what the TLS endpoint connection bc holds into the free
// end of the endpoint read buffer, where readResponseHead finds it. Not
// every record is an answer: a TLS 1.3 endpoint may send session tickets
// once the handshake is over (OpenSSL does; Go does after it asked for a
// client certificate), which the read takes in and which give no bytes.
// A read timeout leaves a TLS connection usable, unlike a write's; the
// caller arms bc's next deadline, as after any stall.
func (cc *clientConn) tlsAnswer(bc net.Conn) {
	x := cc.x
	bc.SetReadDeadline(time.Now().Add(tlsAnswerWait))
	for x.be < len(x.bb) && !finalAnswerStarts(x.bb[x.bs:x.be]) {
		m, err := bc.Read(x.bb[x.be:])
		x.be += m
		x.epIn += uint64(m)
		if err != nil {
			return
		}
	}
}
