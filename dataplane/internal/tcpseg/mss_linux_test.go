package tcpseg

import (
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMSS: a connection whose peer announced segments of at most 20000
// bytes sends segments of at most that (less its TCP options); a
// descriptor that is no TCP socket says nothing.
func TestMSS(t *testing.T) {
	const announced = 20000
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, announced) })
		return err
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.(*net.TCPConn).SyscallConn()
	var mss int
	raw.Control(func(fd uintptr) { mss = MSS(int(fd)) })
	if mss <= announced-40 || mss > announced {
		t.Errorf("MSS = %d, want at most the %d the listener announced, less its options", mss, announced)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if got := MSS(int(r.Fd())); got != 0 {
		t.Errorf("MSS of a pipe = %d, want 0", got)
	}
}
