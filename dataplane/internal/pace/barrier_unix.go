//go:build unix

package pace

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// barrier is the pipe Barrier waits on.
var barrier struct {
	once sync.Once
	mu   sync.Mutex // one barrier at a time
	w    *os.File
	r    syscall.RawConn // nil: the platform cannot wait on the pipe
}

// Barrier returns once the Go runtime has polled the network after
// the call began. It writes a byte into a pipe and waits for it to be
// readable through the runtime's poller: the runtime learns of it only
// when it polls, which a busy runtime does when it has run what was
// runnable (or every 10ms), so the wait lets queued goroutines run first,
// and those waiting for a connect to complete run right after.
func Barrier() {
	b := &barrier
	b.once.Do(func() {
		r, w, err := os.Pipe()
		if err != nil {
			return
		}
		rc, err := r.SyscallConn()
		if err != nil || r.SetReadDeadline(time.Time{}) != nil {
			r.Close()
			w.Close()
			return
		}
		b.w, b.r = w, rc
	})
	if b.r == nil {
		runtime.Gosched()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	wrote := false
	var buf [16]byte
	b.r.Read(func(fd uintptr) bool {
		if !wrote {
			// After the read started, which forgot any readiness seen
			// before: the poller must see this byte.
			wrote = true
			b.w.Write(buf[:1])
			return false
		}
		n, err := syscall.Read(int(fd), buf[:])
		return n > 0 || err != syscall.EAGAIN
	})
}
