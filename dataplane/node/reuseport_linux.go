package node

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT on a listening socket before it is bound, as
// HAProxy and Envoy do by default: an apply that moves a listener to
// another spelling of its port (127.0.0.1:80 to 0.0.0.0:80, localhost:80
// to 127.0.0.1:80) binds the new socket while the old one still listens,
// which the kernel otherwise refuses, and two nodes on one host serve one
// port. Only sockets that all set it share a port, and only within one
// user: a port another program holds is refused, unless that program set
// it too (HAProxy and Envoy do), and then the kernel spreads the port's
// connections over both.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
