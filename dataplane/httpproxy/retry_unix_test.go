//go:build unix

package httpproxy

import (
	"bufio"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// unresponsiveAddr returns a loopback address whose connects time out: a
// socket listening with the smallest backlog, which never accepts, and
// whose queue is then filled. The kernel drops the SYNs it has no room
// for, as a host that went silent does.
func unresponsiveAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // full: connects time out now
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("the listen queue does not fill up on this system")
	return ""
}

// TestConnectTimeoutIsRetried: an endpoint that does not answer the
// connect within the Director's connect timeout is given up for another,
// and the wait for the response starts with the connect that worked.
func TestConnectTimeoutIsRetried(t *testing.T) {
	live := startBackend(t, "live", &bodyRecorder{name: "live"})
	silent := upstream.New("web", "silent", unresponsiveAddr(t))
	const connectTimeout = 300 * time.Millisecond
	d := &skipDirector{eps: []*upstream.Endpoint{silent, live.ep}, timeout: connectTimeout}
	// A ResponseTimeout shorter than the failed connect: it must not run
	// from before it.
	p := startProxy(t, &Config{Director: d, Retries: 1, ResponseTimeout: 250 * time.Millisecond})
	c := p.dial()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r := readResponse(t, bufio.NewReader(c), "GET")
	took := time.Since(start)
	if r.code != 200 || r.body != "live" {
		t.Errorf("got %d %q, want 200 live", r.code, r.body)
	}
	if took < connectTimeout || took > connectTimeout+time.Second {
		t.Errorf("took %v, want about the %v connect timeout", took, connectTimeout)
	}
	if ci := p.info(); ci.Retries != 1 || ci.Endpoint != "live" {
		t.Errorf("ConnInfo: %d retries, endpoint %q; want 1, live", ci.Retries, ci.Endpoint)
	}
	if silent.Inflight() != 0 || live.ep.Inflight() != 0 || silent.Conns() != 0 {
		t.Errorf("inflight silent %d live %d, silent conns %d; want 0 0 0", silent.Inflight(), live.ep.Inflight(), silent.Conns())
	}
}
