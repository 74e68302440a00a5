package upstream

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestKeepAlive: connections to an endpoint get no TCP keep-alive probes
// unless SetKeepAlive asked for them, then those it asked for, with the
// system's settings where it left a field unset.
func TestKeepAlive(t *testing.T) {
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	type probes struct{ on, idle, intvl, cnt int }
	read := func(c net.Conn) probes {
		return probes{
			sockopt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE),
			sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
			sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL),
			sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT),
		}
	}
	dial := func(what string) net.Conn {
		t.Helper()
		c, err := ep.DialSession(ctx, time.Second)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Cleanup(func() { ep.Close(c) })
		return c
	}

	plain := dial("no keep-alive")
	sys := read(plain)
	if sys.on != 0 {
		t.Errorf("SO_KEEPALIVE = %d without SetKeepAlive, want 0", sys.on)
	}

	ep.SetKeepAlive(&net.KeepAliveConfig{Enable: true, Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 4})
	if got, want := read(dial("all three set")), (probes{1, 7, 3, 4}); got != want {
		t.Errorf("keep-alive %+v, want %+v", got, want)
	}
	ep.SetKeepAlive(&net.KeepAliveConfig{Enable: true, Idle: 11 * time.Second, Interval: -1, Count: -1})
	if got, want := read(dial("idle set")), (probes{1, 11, sys.intvl, sys.cnt}); got != want {
		t.Errorf("keep-alive %+v with only the idle time set, want %+v (the rest as the system has it)", got, want)
	}
	ep.SetKeepAlive(nil)
	if got := read(dial("keep-alive taken away")); got.on != 0 {
		t.Errorf("SO_KEEPALIVE = %d after SetKeepAlive(nil), want 0", got.on)
	}
	if got := read(plain); got != sys {
		t.Errorf("a connection opened before the changes has %+v, want the %+v it had", got, sys)
	}
}

// sockopt reads the integer socket option level/name of c, a TCP
// connection.
func sockopt(t *testing.T, c net.Conn, level, name int) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	rc.Control(func(fd uintptr) { n, serr = syscall.GetsockoptInt(int(fd), level, name) })
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}
