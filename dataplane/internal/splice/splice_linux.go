//go:build linux

// Package splice moves bytes between sockets through a pipe with
// splice(2), made as raw system calls on non-blocking descriptors: the
// bytes never enter user space, and the runtime never hands the caller's
// P to another thread around a call (see httpproxy's sysraw_linux.go for
// why that matters at GOMAXPROCS=1). Waiting for readiness is the
// caller's, through the sockets' syscall.RawConn.
package splice

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Move moves up to n bytes from in to out without waiting: EAGAIN when in
// has nothing or out has no room.
func Move(in, out, n int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Pipe is a pipe for splicing: R and W its ends, Size its capacity, Data
// the bytes in it (the caller keeps it up to date).
type Pipe struct {
	R, W int
	Size int
	Data int
	fds  runtime.Cleanup
}

// PipeSize is the capacity asked of a new pipe: what one splice moves,
// and the default most a process may ask (/proc/sys/fs/pipe-max-size);
// net's splice asks the same. A pipe holds pages only while bytes are in
// it, but for a process without CAP_SYS_RESOURCE or CAP_SYS_ADMIN the
// kernel counts every pipe's capacity against the user's
// /proc/sys/fs/pipe-user-pages-soft (64 MiB by default, so 64 pipes this
// size, pooled ones included): past it a new pipe holds 8 KiB, which Get
// returns as it is. Through an HTTP listener, 1 MiB bodies moved at 1.57-1.67 GB/s with
// 64 KiB pipes, 1.88-1.98 with 256 KiB and 1.98-2.24 with 1 MiB (wrk -c10,
// HAProxy 2.09-2.24 in the same runs).
const PipeSize = 1 << 20

var pipes sync.Pool

// Get returns an empty pipe, or nil when none can be made (out of
// descriptors): the caller copies instead.
func Get() *Pipe {
	if p, ok := pipes.Get().(*Pipe); ok {
		return p
	}
	var fds [2]int
	if unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK) != nil {
		return nil
	}
	size, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, PipeSize)
	if err != nil {
		if size, err = unix.FcntlInt(uintptr(fds[1]), unix.F_GETPIPE_SZ, 0); err != nil {
			size = 64 << 10
		}
	}
	p := &Pipe{R: fds[0], W: fds[1], Size: size}
	// A pipe the pool drops is closed.
	p.fds = runtime.AddCleanup(p, closePipe, fds)
	return p
}

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}

// Put gives back p; one that still holds bytes (its transfer failed while
// sending them) is closed instead.
func Put(p *Pipe) {
	if p.Data > 0 {
		p.fds.Stop()
		closePipe([2]int{p.R, p.W})
		return
	}
	pipes.Put(p)
}
