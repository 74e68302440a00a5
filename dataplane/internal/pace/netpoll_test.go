//go:build linux && !race

// The race detector shuffles the goroutines a poll readies, so this test
// runs without it (make test runs it on its own).

package pace

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestNetpollOrder checks in what order the Go runtime runs the goroutines
// that one network poll readied. Built as make builds (GOFLAGS has the
// overlay of scripts/netpoll-fifo.sh), it must be the order in which their
// sockets became ready; the stock runtime runs them in reverse, and the test
// only reports that.
func TestNetpollOrder(t *testing.T) {
	fifo := overlayPatchesNetpoll(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))

	const n = 8
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	reverse := slices.Clone(want)
	slices.Reverse(reverse)

	// A goroutine that has not parked in the poller yet when its byte
	// comes reads it without a poll, which spoils an attempt; the stock
	// runtime never gives want, so retrying cannot hide it.
	var got []int
	for range 5 {
		got = pollOrder(t, n)
		if slices.Equal(got, want) || slices.Equal(got, reverse) {
			break
		}
	}
	switch {
	case fifo && !slices.Equal(got, want):
		t.Fatalf("with the overlay, goroutines ran in the order %v; want the order their sockets became ready, %v", got, want)
	case !fifo:
		t.Skipf("stock runtime (no netpoll overlay in GOFLAGS): goroutines ran in the order %v for sockets ready in the order %v", got, want)
	}
}

// pollOrder makes n sockets readable one after the other while a goroutine
// waits on each, and returns the order in which those goroutines ran.
func pollOrder(t *testing.T, n int) []int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	clients := make([]*net.TCPConn, n)
	servers := make([]net.Conn, n)
	for i := range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		clients[i], servers[i] = c.(*net.TCPConn), s
	}

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i, s := range servers {
		wg.Go(func() {
			var b [1]byte
			s.Read(b[:])
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	// With one P, the readers run and park in the poller while this
	// goroutine sleeps.
	time.Sleep(20 * time.Millisecond)
	for _, c := range clients {
		rawWrite(t, c)
	}
	wg.Wait() // the readers wake from the next poll
	return order
}

// rawWrite writes one byte to c without telling the runtime of the system
// call, which could let another thread poll the network meanwhile.
func rawWrite(t *testing.T, c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{'x'}
	var errno unix.Errno
	rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), 1)
	})
	if errno != 0 {
		t.Fatal(errno)
	}
}

// overlayPatchesNetpoll reports whether GOFLAGS names an overlay that
// replaces the runtime's netpoll_epoll.go, as make's does.
func overlayPatchesNetpoll(t *testing.T) bool {
	for f := range strings.FieldsSeq(os.Getenv("GOFLAGS")) {
		path, ok := strings.CutPrefix(f, "-overlay=")
		if !ok {
			continue
		}
		if !filepath.IsAbs(path) {
			t.Skipf("GOFLAGS names the overlay %s by a relative path, which depends on where go ran", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var o struct{ Replace map[string]string }
		if err := json.Unmarshal(data, &o); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for from := range o.Replace {
			if strings.HasSuffix(from, "/runtime/netpoll_epoll.go") {
				return true
			}
		}
	}
	return false
}
