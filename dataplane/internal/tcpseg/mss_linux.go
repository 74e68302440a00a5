package tcpseg

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// MSS returns the maximum segment size of the connected TCP socket fd, as
// the kernel uses it for what the socket sends now, or 0 when it does not
// say. TCP announces it in 16 bits, which is what callers keep of it.
// Early in a connection it is at most half the peer's largest window so
// far, and grows with it. The call is raw, as the copies' reads and sends
// are (see tcpproxy's copy_linux.go): it never blocks.
func MSS(fd int) uint16 {
	var mss int32
	size := uint32(unsafe.Sizeof(mss))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, uintptr(unsafe.Pointer(&mss)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 || mss < 0 {
		return 0
	}
	return uint16(min(mss, 0xffff))
}

// Paced reports whether the TCP socket fd paces what it sends: its
// congestion control is BBR (any version), which has the kernel space a
// burst's segments out by timers, unless an fq qdisc does it. A splice
// that hands such a socket all a pipe holds (up to 1 MiB) then costs more
// than splices of whole segments, one buffer's worth at a time: about a
// fifth more CPU per MiB over loopback. Under CUBIC, which sends a burst
// at once, the larger splices cost less, from 5% to a fifth (BENCHMARKS.md,
// "Splices of whole segments"). The call is raw, as MSS's is.
func Paced(fd int) bool {
	var name [16]byte // TCP_CA_NAME_MAX
	size := uint32(len(name))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&size)), 0)
	return e == 0 && size >= 3 && string(name[:3]) == "bbr"
}
