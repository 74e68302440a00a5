//go:build unix

package tcpsegtest

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Announce returns a Control for a net.Dialer or a net.ListenConfig that
// has the socket announce segments of at most mss bytes to its peer,
// which then sends none larger (less TCP's options, such as timestamps).
// A listening socket's connections take it on.
func Announce(mss int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss)
		}); cerr != nil {
			return cerr
		}
		return err
	}
}
