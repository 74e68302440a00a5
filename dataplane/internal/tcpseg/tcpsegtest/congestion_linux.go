package tcpsegtest

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Congestion has the TCP socket under c send under the congestion control
// name ("bbr", "cubic") from now on, whatever the host's default is. It
// skips the test where the kernel does not have that one, or does not let
// this user set it (net.ipv4.tcp_allowed_congestion_control).
func Congestion(t testing.TB, c syscall.Conn, name string) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, name)
	}); cerr != nil {
		t.Fatal(cerr)
	}
	switch {
	case err == unix.ENOENT:
		t.Skipf("the kernel has no congestion control %q", name)
	case err == unix.EPERM:
		t.Skipf("this user may not set congestion control %q", name)
	case err != nil:
		t.Fatalf("setting congestion control %q: %v", name, err)
	}
}
