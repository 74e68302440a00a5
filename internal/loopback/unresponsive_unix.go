//go:build unix

package loopback

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// UnresponsiveAddr returns a loopback address whose connects get no
// answer until their timeout, as with a host that went silent: a socket
// listens there with the smallest backlog, never accepts, and its queue
// is filled, so the kernel drops the SYNs it has no room for. The test is
// skipped where the queue does not fill.
func UnresponsiveAddr(t testing.TB) string {
	t.Helper()
	fd, addr := bound(t)
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	timedOut := 0
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			// Full: connects time out now. Twice in a row, so that a
			// busy machine's slow dial is not taken for it.
			if timedOut++; timedOut == 2 {
				return addr
			}
			continue
		}
		timedOut = 0
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("loopback: a listen queue does not fill up on this system")
	return ""
}

// RefusingAddr returns a loopback address whose connects are refused for
// as long as the test runs: a socket bound there does not listen, and
// holds the port. A listener closed at once would leave the port to
// whichever process binds it next (another package's server, under go
// test ./...).
func RefusingAddr(t testing.TB) string {
	t.Helper()
	_, addr := bound(t)
	return addr
}

// bound returns a TCP socket bound to a free loopback port, closed when
// the test ends, and its address.
func bound(t testing.TB) (fd int, addr string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
