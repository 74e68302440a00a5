package tcpseg

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg/tcpsegtest"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestMSS: a connection whose peer announced segments of at most 20000
// bytes sends segments of at most that (less its TCP options); a
// descriptor that is no TCP socket says nothing, to MSS or to Paced.
func TestMSS(t *testing.T) {
	const announced = 20000
	_, raw := dialSink(t, net.ListenConfig{Control: tcpsegtest.Announce(announced)})
	var mss int
	raw.Control(func(fd uintptr) { mss = int(MSS(int(fd))) })
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
	if Paced(int(r.Fd())) {
		t.Error("Paced of a pipe = true, want false")
	}
}

// TestPaced: a socket under BBR paces what it sends, one under CUBIC does
// not.
func TestPaced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paced bool
	}{{"cubic", false}, {"bbr", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c, raw := dialSink(t, net.ListenConfig{})
			tcpsegtest.Congestion(t, c, tc.name)
			var paced bool
			raw.Control(func(fd uintptr) { paced = Paced(int(fd)) })
			if paced != tc.paced {
				t.Errorf("Paced under %s = %v, want %v", tc.name, paced, tc.paced)
			}
		})
	}
}

// dialSink connects to a loopback listener made by lc that reads and drops
// what it is sent; the connection closes when the test ends.
func dialSink(t *testing.T, lc net.ListenConfig) (*net.TCPConn, syscall.RawConn) {
	t.Helper()
	addr := loopback.ServeWith(t, lc, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c)
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), raw
}
