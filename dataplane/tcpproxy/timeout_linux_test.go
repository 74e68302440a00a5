package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// testIdleTimeout is the idle timeout these tests wait for: long against
// the kernel's clock ticks and the scans' spacing, short for a test.
const testIdleTimeout = 300 * time.Millisecond

// longIdleTimeout is the idle timeout of sessions that must outlive it
// while the test goroutine talks to them or changes their configuration:
// long against the stalls of a busy machine's goroutines.
const longIdleTimeout = time.Second

// closeWatch is a backend that echoes lines and tells, through closed,
// when its connection ended.
func closeWatch(closed chan<- error) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				closed <- err
				return
			}
			if _, err := c.Write(line); err != nil {
				closed <- err
				return
			}
		}
	}
}

// readEOF reads c until it ends and returns when that happened; a reset
// or a byte fails the test.
func readEOF(t *testing.T, c client) time.Time {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if b, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("read %q, %v; want the proxy's FIN", b, err)
	}
	return time.Now()
}

// TestIdleTimeout: a session that carries nothing for the idle timeout is
// closed, its client and its endpoint each see a clean end, and the
// record says CLIENT_TIMEOUT; one that keeps exchanging, for several
// timeouts in all, is not closed until it stops. The times are taken
// before the last bytes are sent, so that a stall can only lengthen what
// is measured.
func TestIdleTimeout(t *testing.T) {
	const timeout = longIdleTimeout // the busy session's pauses are well under it
	closed := make(chan error, 2)
	ep := upstream.New("c", "e", startBackend(t, closeWatch(closed)))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}, IdleTimeout: timeout}, onClose)
	addr := startProxy(t, s)

	quiet, busy := dialClient(t, addr), dialClient(t, addr)
	last := time.Now()
	exchange(t, quiet, quiet.r, "hello\n")
	var quietEnd time.Time
	ended := make(chan time.Time, 1)
	go func() {
		quiet.SetReadDeadline(time.Now().Add(testTimeout))
		if b, err := quiet.r.ReadByte(); err != io.EOF {
			t.Errorf("the quiet session read %q, %v; want the proxy's FIN", b, err)
		}
		ended <- time.Now()
	}()
	for time.Since(last) < 3*timeout {
		exchange(t, busy, busy.r, "still here\n")
		time.Sleep(timeout / 10)
	}
	busyLast := time.Now()
	exchange(t, busy, busy.r, "still here\n")
	select {
	case quietEnd = <-ended:
	case <-time.After(testTimeout):
		t.Fatal("the quiet session was not closed")
	}
	// The kernel's times are in clock ticks: allow one (at most 10ms).
	if d := quietEnd.Sub(last); d < timeout-10*time.Millisecond {
		t.Errorf("the quiet session closed %v after its last byte, before its timeout of %v", d, timeout)
	}
	if err := <-closed; err != io.EOF {
		t.Errorf("the quiet session's endpoint read %v, want EOF", err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT || ci.Endpoint != "e" || ci.BytesIn != 6 {
		t.Errorf("record: reason %v endpoint %q, %d bytes in; want CLIENT_TIMEOUT e, 6", ci.Reason, ci.Endpoint, ci.BytesIn)
	}
	if d := readEOF(t, busy).Sub(busyLast); d < timeout-10*time.Millisecond {
		t.Errorf("the busy session closed %v after its last byte, before its timeout of %v", d, timeout)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("record of the busy session: reason %v, want CLIENT_TIMEOUT", ci.Reason)
	}
	waitUntil(t, "no session left", func() bool { return s.Sessions(ep) == 0 })
}

// TestIdleTimeoutStalledClient: a client that stops reading a download
// carries nothing once the buffers on the way are full, and its session
// is closed by the idle timeout; the endpoint's write then fails.
func TestIdleTimeoutStalledClient(t *testing.T) {
	big := make([]byte, 64<<20) // more than every buffer on the way holds
	wrote := make(chan error, 1)
	ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			wrote <- err
			return
		}
		c.SetWriteDeadline(time.Now().Add(testTimeout))
		_, err := c.Write(big)
		wrote <- err
	}))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}, IdleTimeout: testIdleTimeout}, onClose)
	c := dialClient(t, startProxy(t, s))
	if _, err := c.Write([]byte("download\n")); err != nil {
		t.Fatal(err)
	}
	// Not reading.
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("record: reason %v, want CLIENT_TIMEOUT", ci.Reason)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("the endpoint wrote its whole answer to a client that never read")
		}
	case <-time.After(testTimeout):
		t.Error("the endpoint's write did not end with the session")
	}
}

// TestIdleTimeoutApplied: a timeout set by SetConfig closes the sessions
// already open, and one taken away leaves them be. The timeout taken away
// is long, so that the session outlives it until it is taken away however
// slowly the test goroutine gets there; the wait after is twice as long.
func TestIdleTimeoutApplied(t *testing.T) {
	ep := upstream.New("c", "e", startBackend(t, lineEcho))
	onClose, infos := recorder()
	cfg := Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}
	s := NewServer(&cfg, onClose)
	addr := startProxy(t, s)

	c := dialClient(t, addr)
	exchange(t, c, c.r, "hello\n")
	time.Sleep(2 * testIdleTimeout)
	exchange(t, c, c.r, "no timeout yet\n")

	timed := cfg
	timed.IdleTimeout = testIdleTimeout
	s.SetConfig(&timed)
	readEOF(t, c)
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("record: reason %v, want CLIENT_TIMEOUT", ci.Reason)
	}

	long := cfg
	long.IdleTimeout = longIdleTimeout
	s.SetConfig(&long)
	c = dialClient(t, addr)
	exchange(t, c, c.r, "hello\n")
	s.SetConfig(&cfg)
	time.Sleep(2 * longIdleTimeout)
	exchange(t, c, c.r, "the timeout is gone\n")
}

// BenchmarkQuietFor is what an idle scan costs per session: the kernel's
// times of its two sockets.
func BenchmarkQuietFor(b *testing.B) {
	client, _ := loopback.Pair(b)
	backend, _ := loopback.Pair(b)
	crc, _ := client.SyscallConn()
	brc, _ := backend.SyscallConn()
	var q quietReader
	for b.Loop() {
		if _, ok := q.quietFor(crc, brc); !ok {
			b.Fatal("quietFor failed")
		}
	}
}
