package httpproxy

import (
	"crypto/tls"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WatchClient watches the client of an HTTP/1.1 request while its
// Director waits for an endpoint (the node's cluster queue, with
// abort_on_close): the channel it returns is closed once the client closed
// or reset its connection. The request then gets no answer, and its
// connection ends with reason CLIENT_CLOSED. stop ends the watch, and must
// be called before Pick returns. gone is nil when there is nothing to
// watch: outside Pick, for a request Loaded from another engine (whose
// Head.Context ends instead), or without a socket underneath.
//
// The connection's goroutine is in the Director, so nothing reads the
// socket: a duplicate of its descriptor, polled on its own, wakes a
// goroutine of the watch when the socket becomes readable, and the
// socket's TCP state tells the client's close (its FIN came, CLOSE_WAIT;
// it was reset) from a next request sent ahead, which stays unread.
func (r *Request) WatchClient() (gone <-chan struct{}, stop func()) {
	raw := r.watch.socket()
	if raw == nil {
		return nil, func() {}
	}
	dup, derr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return nil, func() {}
	}
	f := os.NewFile(uintptr(dup), "client")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, func() {}
	}
	ch, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// Read returns nil once peerClosed said so; an error when stop
		// closed f, or when f cannot be polled.
		if rc.Read(peerClosed) == nil {
			r.clientGone = true
			close(ch)
		}
	}()
	return ch, func() {
		f.Close()
		<-done // no write to r after stop
	}
}

// socket is the client connection's socket, for WatchClient; nil for none.
func (cc *clientConn) socket() syscall.RawConn {
	switch {
	case cc == nil:
		return nil
	case cc.raw != nil:
		return cc.raw
	}
	if tc, ok := cc.c.(*tls.Conn); ok {
		if sc, ok := tc.NetConn().(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				return raw
			}
		}
	}
	return nil
}

// TCP states (include/net/tcp_states.h).
const (
	tcpClose     = 7
	tcpCloseWait = 8
)

// peerClosed reports whether the peer of the socket fd closed or reset
// the connection, without reading what it sent before.
//
// It must not miss a close that came: polling is edge-triggered, and
// returning false waits for the next edge, which a client that closed
// does not send. So an interrupted call is made again (peerEnded).
func peerClosed(fd uintptr) bool {
	fin, broken := peerEnded(fd)
	return fin || broken
}

// peerEnded tells how the peer of the socket fd ended the connection, if
// it did, without reading what it sent before: fin when its FIN came (it
// closed, or only shut its sending side: the two look the same), broken
// when the connection was reset or failed, so that nothing sent on it
// can arrive. An interrupted call is made again.
func peerEnded(fd uintptr) (fin, broken bool) {
	n, err := peekByte(fd)
	switch {
	case err == unix.EAGAIN:
		return false, false
	case err != nil:
		return false, true // reset, or any other error of the socket
	case n == 0:
		return true, false // the FIN, with nothing before it
	}
	// Bytes came first: the FIN, or the reset, may be behind them.
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	for err == unix.EINTR {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}
	if err != nil {
		return false, false
	}
	return info.State == tcpCloseWait, info.State == tcpClose
}

// clientLeft reports whether the client of the exchange left while its
// request is at the endpoint (waiting for its response, or for more of
// it): it reset the connection, or, with abortOnClose (the request's
// AbortOnClose), closed it or shut its sending side.
func (cc *clientConn) clientLeft(abortOnClose bool) bool {
	raw := cc.socket()
	if raw == nil {
		return false
	}
	var fin, broken bool
	if raw.Control(func(fd uintptr) { fin, broken = peerEnded(fd) }) != nil {
		return false
	}
	return broken || fin && abortOnClose
}

// watchAnswer starts the watch of the endpoint connection bc for an early
// answer while the request body streams from a slow client (sendBody):
// once bc holds more than queued bytes to read, or ended, answerCame is
// set and the client's read deadline moved to wake the wait for it. It
// starts nothing when bc has no socket to watch.
//
// The watch waits on bc's socket itself, looking without taking, while
// this goroutine writes the body to it: bc's read deadline is the watch's
// until stopAnswerWatch moves it to end the watch, and armEndpoint leaves
// it alone meanwhile. An operator's close of bc ends the watch as it
// ends a read.
func (cc *clientConn) watchAnswer(bc net.Conn, queued int) {
	x := cc.x
	raw := cc.endpointSocket(bc)
	if raw == nil {
		return
	}
	bc.SetReadDeadline(time.Time{})
	x.epArmed = time.Time{} // and armEndpoint arms no read deadline until the watch ends
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := raw.Read(func(fd uintptr) bool {
			switch n, err := peekByte(fd); {
			case err == unix.EAGAIN:
				return false
			case err != nil || n == 0:
				return true // reset, or FIN
			}
			q, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			return err != nil || q > queued
		})
		if err == nil {
			x.answerCame.Store(true)
			cc.c.SetReadDeadline(aLongTimeAgo)
		}
	}()
	x.answerWatch = func() {
		bc.SetReadDeadline(aLongTimeAgo)
		<-done
	}
}
