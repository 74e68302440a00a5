package splice

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTestPipe makes a pipe as Get does when the pool is empty.
func newTestPipe(t *testing.T) *Pipe {
	t.Helper()
	fds, size, ok := newPipe()
	if !ok {
		t.Skip("no full-size pipe to be had here")
	}
	return wrap(fds, size)
}

// TestStatsCountPipes: Stats counts a pipe from when it is made until it
// is closed, pooled pipes included.
func TestStatsCountPipes(t *testing.T) {
	n0, short0 := Stats()
	p, q := newTestPipe(t), newTestPipe(t)
	if n, _ := Stats(); n != n0+2 {
		t.Errorf("two pipes made: Stats counts %d, want %d", n, n0+2)
	}
	Put(p) // empty: pooled, still open
	if n, _ := Stats(); n != n0+2 {
		t.Errorf("one pipe pooled, one held: Stats counts %d, want %d", n, n0+2)
	}
	q.Data = 1 // still holding bytes: Put closes it rather than pooling it
	Put(q)
	if n, _ := Stats(); n != n0+1 {
		t.Errorf("one pipe closed, one pooled: Stats counts %d, want %d", n, n0+1)
	}
	if _, short := Stats(); short != short0 {
		t.Errorf("Stats counts %d pipes cut short where the full size was granted", short-short0)
	}
}

// TestStatsCountDroppedPipe: a pipe nobody gives back is closed when it is
// collected, and Stats stops counting it.
func TestStatsCountDroppedPipe(t *testing.T) {
	w := newTestPipe(t).W // the pipe itself is dropped at once
	n0, _ := Stats()
	for i := 0; ; i++ {
		runtime.GC()
		time.Sleep(time.Millisecond) // cleanups run on a goroutine of their own
		if _, err := unix.FcntlInt(uintptr(w), unix.F_GETPIPE_SZ, 0); err != nil {
			break // closed
		}
		if i == 100 {
			t.Fatalf("a dropped pipe is still open after %d collections", i)
		}
	}
	if n, _ := Stats(); n > n0-1 {
		t.Errorf("a dropped pipe was closed, but Stats counts %d pipes, up from %d before", n, n0)
	}
}

// TestShortLeavesNoPipe: the pipe Short makes to look, once a second
// while large bodies flow, does not stay. Pooled, one more would pile up
// each second while Get is served from the pool, every one counted
// against an unprivileged user's pipe limit until a collection drops it.
func TestShortLeavesNoPipe(t *testing.T) {
	n0, _ := Stats()
	for range 10 {
		fineUntil.Store(0) // a second since the last new pipe
		if Short() {
			t.Skip("new pipes come short here")
		}
	}
	if n, _ := Stats(); n != n0 {
		t.Errorf("ten looks by Short left %d more pipes open", n-n0)
	}
}
