package httpproxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvRaw and sendRaw are recvfrom(2) and sendto(2) on a non-blocking
// socket, made as raw system calls: without the runtime's entersyscall and
// exitsyscall around them.
//
// The runtime treats a goroutine in an ordinary system call as possibly
// blocked: when the call takes longer than a sysmon tick (20 µs or more),
// sysmon hands the goroutine's P to another thread, and the thread coming
// back from the call has to park and wake up later. A send on loopback
// that wakes its reader, or any call the kernel preempts, easily takes that
// long on a busy machine, so with GOMAXPROCS=1 the proxy's work moved
// between threads on a good share of its requests: a context switch and a
// futex wake-up each time. On the sockets of the proxy's hot path these
// calls cannot block (the sockets are non-blocking: EAGAIN is answered
// at once and the wait is the netpoller's), so there is nothing to hand
// the P over for. Measured with wrk against the node at GOMAXPROCS=1: about
// a fifth less CPU per request, and one thread instead of three doing the
// work. The call numbers are golang.org/x/sys/unix's: on 386 the syscall
// package knows recvfrom and sendto only through socketcall.
func recvRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// sendRaw: see recvRaw. MSG_NOSIGNAL keeps a write to a closed socket an
// EPIPE error, as Go's own writes are.
func sendRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
