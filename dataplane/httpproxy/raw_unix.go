//go:build unix

package httpproxy

import (
	"io"
	"net"
	"syscall"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// initRaw prepares the raw-socket paths of a TCP client connection: the
// idle read that gives the exchange back to the pool while it waits, and the
// first write attempt that needs no deadline.
func (cc *clientConn) initRaw() {
	raw, err := cc.tcp.SyscallConn()
	if err != nil {
		return
	}
	cc.raw = raw
	cc.readFn = func(fd uintptr) bool {
		if cc.x == nil {
			cc.x = getExchange()
		}
		x := cc.x
		for {
			// recvfrom, not read: sockets skip the VFS layer that way.
			n, _, err := syscall.Recvfrom(int(fd), x.rb[x.re:], 0)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				// Nothing to read: wait without the buffers.
				if x.re == x.rs {
					putExchange(x)
					cc.x = nil
				}
				return false
			case nil:
				if n == 0 {
					cc.rawN, cc.rawErr = 0, io.EOF
					return true
				}
				cc.rawN, cc.rawErr = n, nil
				return true
			default:
				cc.rawN, cc.rawErr = 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
				return true
			}
		}
	}
	cc.writeFn = func(fd uintptr) bool {
		for {
			n, err := syscall.SendmsgN(int(fd), cc.rawP, nil, nil, 0)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				cc.rawN, cc.rawErr = 0, nil
			case nil:
				cc.rawN, cc.rawErr = n, nil
			default:
				cc.rawN, cc.rawErr = 0, &net.OpError{Op: "write", Net: "tcp", Err: err}
			}
			return true
		}
	}
}

// alive reports whether an idle pooled connection is still open: the
// endpoint has neither closed it nor sent anything on it. It costs a
// syscall, so it is used only before sending a request that cannot be
// replayed (one with a body).
//
// For a TLS connection the socket under it is probed: an endpoint that
// closed it sent a close_notify alert or a FIN, and any byte means the
// connection is not idle.
func alive(c net.Conn) bool {
	tc := upstream.TCPConn(c)
	if tc == nil {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	// Control, not Read: Read first checks the deadline last set on the
	// connection, which has long passed on a connection that sat pooled.
	err = raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN && n <= 0
	})
	return err == nil && ok
}
