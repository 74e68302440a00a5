//go:build linux

// Package splice moves bytes between sockets through a pipe with
// splice(2), made as raw system calls on non-blocking descriptors: the
// bytes never enter user space, and the runtime never hands the caller's
// P to another thread around a call (see httpproxy's sysraw_linux.go for
// why that matters at GOMAXPROCS=1). Waiting for readiness is the
// caller's, through the sockets' syscall.RawConn.
package splice

import (
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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

// Pays reports whether splicing the bytes read from src pays, under the
// process's Mode. Under Auto, not when src's peer is on this host, as far
// as addresses tell: a loopback address, or src's own. (A peer in another
// network namespace of the host, such as a container behind a bridge, has
// an address of its own and counts as another host's.) Such a peer wrote
// its bytes just before, so they are still in the CPU's caches, and
// copying them cost less than splicing them on the machines where it was
// first measured: 1 MiB downloads through the listeners of
// examples/bench.yaml cost the node about a fifth (L4) and a sixth (L7)
// less CPU copied than spliced, and 1 MiB uploads about the same either
// way (BENCHMARKS.md, "Splicing or copying"). On a later machine, with
// splices of whole segments where the socket paces its sends, splicing
// cost no more ("Splices of whole segments, where the socket paces");
// Auto copies them until more than one machine says so. Bytes from
// another host were written to memory by the network card, and splicing
// spares copying them twice; nothing here can measure that case (every
// benchmark runs on one host, over loopback or a veth pair), so Auto
// splices them, as the node always did.
func Pays(src *net.TCPConn) bool {
	switch Mode(mode.Load()) {
	case Always:
		return true
	case Never:
		return false
	}
	r, ok := src.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false // no socket under it
	}
	l, _ := src.LocalAddr().(*net.TCPAddr)
	return l != nil && !onThisHost(l.IP, r.IP)
}

// onThisHost reports whether a connection from local to remote stays on
// this host: a loopback peer, or one at the connection's own address (the
// kernel routes a connection to one of the host's addresses over the
// loopback device, from that same address).
func onThisHost(local, remote net.IP) bool {
	return remote.IsLoopback() || remote.Equal(local)
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
// net's splice asks the same. Through an HTTP listener, 1 MiB bodies
// moved at 1.57-1.67 GB/s with 64 KiB pipes, 1.88-1.98 with 256 KiB and
// 1.98-2.24 with 1 MiB (wrk -c10, HAProxy 2.09-2.24 in the same runs).
const PipeSize = 1 << 20

// A pipe holds pages only while bytes are in it, but for a process
// without CAP_SYS_RESOURCE or CAP_SYS_ADMIN the kernel counts every
// pipe's capacity against the user's /proc/sys/fs/pipe-user-pages-soft
// (16384 pages by default: 64 pipes of PipeSize with 4 KiB pages, the
// pooled ones included, ours and net's). Past it, a new pipe holds two
// pages (8 KiB, on Linux 6.18 here) and cannot grow. Through such
// pipes, 1 MiB bodies moved through an HTTP listener at 1100-1240 MiB/s
// where copying them through user space moved 1670-1930, and 1 MiB pipes
// below the limit 2130-2160 (a node run as an unprivileged user, wrk
// -c10; see BENCHMARKS.md). So no pipe smaller than minPipe is spliced
// through: Get returns nil and Short reports true, and the callers copy,
// until retryAfter has passed.
const (
	minPipe    = 64 << 10 // a new pipe's default size, as granted below the limit
	retryAfter = time.Second
)

var (
	pipes sync.Pool
	// shortUntil is when a new pipe is next tried, on monotonic, after
	// the kernel gave one shorter than minPipe.
	shortUntil atomic.Int64
	// fineUntil is when Short next tries a new pipe, on monotonic, after
	// the kernel last gave one of minPipe or more.
	fineUntil atomic.Int64
	warnAt    atomic.Int64 // when a shortage may next be logged, on monotonic
)

// warnEvery bounds how often a lasting shortage of pipes is logged.
const warnEvery = 10 * time.Minute

// Get returns an empty pipe, or nil when none worth splicing through can
// be made (out of descriptors, or past the user's pipe limit): the caller
// copies instead.
func Get() *Pipe {
	if p, ok := pipes.Get().(*Pipe); ok {
		gets.Add(1)
		return p
	}
	if int64(monotonic()) < shortUntil.Load() {
		return nil
	}
	fds, size, ok := newPipe()
	if !ok {
		return nil
	}
	gets.Add(1)
	return wrap(fds, size)
}

// wrap makes a Pipe of a new pipe's descriptors; the pool closes what it
// drops.
func wrap(fds [2]int, size int) *Pipe {
	p := &Pipe{R: fds[0], W: fds[1], Size: size}
	p.fds = runtime.AddCleanup(p, closePipe, fds)
	return p
}

// Short reports whether the kernel cuts new pipes short (below minPipe),
// as it does past the user's pipe limit: then splicing by other means
// (net's TCPConn.ReadFrom, whose pipes come from the same limit) is
// slower than copying. Where Get has not found out within retryAfter, it
// makes a pipe to see, and closes it: while Get is served from the pool,
// a pooled one would add a pipe a second, each counted against the limit
// until a garbage collection drops the pool.
func Short() bool {
	now := int64(monotonic())
	if now < shortUntil.Load() {
		return true
	}
	if now < fineUntil.Load() {
		return false
	}
	fds, _, ok := newPipe()
	if ok {
		closePipe(fds)
	}
	return !ok && int64(monotonic()) < shortUntil.Load()
}

// newPipe makes a pipe of PipeSize, or of what the kernel allows. One
// shorter than minPipe is closed, not returned (ok false), and starts a
// shortage of retryAfter, logged at most every warnEvery.
func newPipe() (fds [2]int, size int, ok bool) {
	if unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK) != nil {
		return fds, 0, false
	}
	open.Add(1)
	size, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, PipeSize)
	if err != nil {
		if size, err = unix.FcntlInt(uintptr(fds[1]), unix.F_GETPIPE_SZ, 0); err != nil {
			size = 0
		}
	}
	now := monotonic()
	if size >= minPipe {
		fineUntil.Store(int64(now + retryAfter))
		return fds, size, true
	}
	closePipe(fds)
	shortages.Add(1)
	shortUntil.Store(int64(now + retryAfter))
	if at := warnAt.Load(); int64(now) >= at && warnAt.CompareAndSwap(at, int64(now+warnEvery)) {
		slog.Warn("splice: past this user's pipe limit the kernel gives only small pipes, through which splicing is slower than copying; "+
			"large bodies are copied through user space until it gives full-size pipes again. "+
			"For more large bodies in flight at once, raise /proc/sys/fs/pipe-user-pages-soft "+
			"(each holds a 1 MiB pipe, 256 pages, and idle pooled pipes count too) or give the node CAP_SYS_RESOURCE",
			"pipe_bytes", size)
	}
	return fds, 0, false
}

// monotonic is the time since the package started, on the monotonic clock.
func monotonic() time.Duration { return time.Since(epoch) }

var epoch = time.Now()

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
	open.Add(-1)
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
