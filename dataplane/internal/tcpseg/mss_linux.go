package tcpseg

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// MSS returns the maximum segment size of the connected TCP socket fd, as
// the kernel uses it for what the socket sends now, or 0 when it does not
// say. TCP announces it in 16 bits, which is what callers keep of it. Early in a connection it is at most half the peer's largest window
// so far, and grows with it. The call is raw, as the copies' reads and
// sends are (see tcpproxy's copy_linux.go): it never blocks.
func MSS(fd int) uint16 {
	var mss int32
	size := uint32(unsafe.Sizeof(mss))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, uintptr(unsafe.Pointer(&mss)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 || mss < 0 {
		return 0
	}
	return uint16(min(mss, 0xffff))
}
