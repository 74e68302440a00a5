package upstream

import (
	"net"

	"golang.org/x/sys/unix"
)

// sendQueueEmpty reports whether c's send queue is empty: the endpoint
// acknowledged every byte written to it.
func sendQueueEmpty(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n, ierr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
		return false
	}
	return n == 0
}
