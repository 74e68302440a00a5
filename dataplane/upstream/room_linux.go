package upstream

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// roomToSend reports whether a write to c's socket would not wait now
// (poll without a timeout); true when it cannot tell.
func roomToSend(c syscall.Conn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return true
	}
	room := true
	raw.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, 0)
		room = err == nil && n == 1 && pfd[0].Revents&unix.POLLOUT != 0
	})
	return room
}
