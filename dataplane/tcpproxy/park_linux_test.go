//go:build linux

package tcpproxy

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// These tests drive sessions whose halves are parked (no goroutine, their
// sockets in the poller's epoll set) and check that everything a session
// does still happens: either side wakes it, half-closes go through, every
// way of closing it ends it with the right record.

// parkedSessions counts the sessions of s with endpoint ep whose two
// halves are parked.
func parkedSessions(s *Server, ep *upstream.Endpoint) int {
	l := s.sessions.list(ep)
	if l == nil {
		return 0
	}
	all := l.appendAll(nil)
	parking.mu.Lock()
	defer parking.mu.Unlock()
	n := 0
	for _, ss := range all {
		if ss.up.parkID != 0 && ss.down.parkID != 0 {
			n++
		}
	}
	return n
}

func waitParked(t *testing.T, s *Server, ep *upstream.Endpoint, n int) {
	t.Helper()
	waitUntil(t, "parked sessions", func() bool { return parkedSessions(s, ep) == n })
}

// setSweepEvery has the poller sweep every d until the test ends, when the
// spacing it had comes back; a sweep already set is set again for d from
// now, each time.
func setSweepEvery(t *testing.T, d time.Duration) {
	set := func(d time.Duration) {
		parking.mu.Lock()
		defer parking.mu.Unlock()
		sweepEvery = d
		if parking.sweepArmed {
			parking.sweeping.Reset(d)
		}
	}
	old := sweepEvery
	set(d)
	t.Cleanup(func() { set(old) })
}

// pushBackend echoes each line, writes whatever the test sends on the push
// channel of the connection, unasked, and closes the connection at the
// client's EOF.
type pushBackend struct {
	conns chan *pushConn
}

type pushConn struct {
	net.Conn
	push chan string
	eof  chan struct{} // closed when the client's bytes ended
}

func newPushBackend(t *testing.T) (*pushBackend, string) {
	b := &pushBackend{conns: make(chan *pushConn, 16)}
	addr := startBackend(t, func(c net.Conn) {
		defer c.Close()
		pc := &pushConn{Conn: c, push: make(chan string), eof: make(chan struct{})}
		b.conns <- pc
		var wmu sync.Mutex
		go func() {
			for s := range pc.push {
				wmu.Lock()
				c.Write([]byte(s))
				wmu.Unlock()
			}
		}()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(pc.eof)
				return
			}
			wmu.Lock()
			c.Write([]byte(line))
			wmu.Unlock()
		}
	})
	return b, addr
}

func (b *pushBackend) next(t *testing.T) *pushConn {
	t.Helper()
	select {
	case pc := <-b.conns:
		return pc
	case <-time.After(testTimeout):
		t.Fatal("no connection reached the backend")
		return nil
	}
}

// TestParkedResumesEitherSide: a parked session wakes for the client's
// next request and for bytes the endpoint sends unasked, parks again after
// each, and its record counts every byte.
func TestParkedResumesEitherSide(t *testing.T) {
	b, addr := newPushBackend(t)
	ep := upstream.New("c", "e", addr)
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	proxy := startProxy(t, s)
	c := dialClient(t, proxy)
	exchange(t, c, c.r, "hello\n")
	pc := b.next(t)
	waitParked(t, s, ep, 1)

	exchange(t, c, c.r, "again\n") // the client wakes it
	waitParked(t, s, ep, 1)

	pc.push <- "pushed\n" // the endpoint wakes it
	if got, err := c.r.ReadString('\n'); err != nil || got != "pushed\n" {
		t.Fatalf("read %q, %v; want the endpoint's push", got, err)
	}
	waitParked(t, s, ep, 1)

	c.Close()
	ci := waitInfo(t, infos)
	if ci.BytesIn != 12 || ci.BytesOut != 19 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("record: %d bytes in, %d out, %v; want 12, 19, CLIENT_CLOSED", ci.BytesIn, ci.BytesOut, ci.Reason)
	}
	close(pc.push)
}

// TestParkedClosedByEitherSide: a parked session ends when either side
// closes: the other side sees the close, the record says who.
func TestParkedClosedByEitherSide(t *testing.T) {
	for _, tt := range []struct {
		name   string
		close  func(c client, pc *pushConn)
		seen   func(t *testing.T, c client, pc *pushConn) // the other side sees it
		reason sluicev1.CloseReason
	}{
		{
			name:  "client",
			close: func(c client, pc *pushConn) { c.Close() },
			seen: func(t *testing.T, c client, pc *pushConn) {
				select {
				case <-pc.eof:
				case <-time.After(testTimeout):
					t.Error("the endpoint did not see the client's close")
				}
			},
			reason: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED,
		},
		{
			name:  "endpoint",
			close: func(c client, pc *pushConn) { pc.Close() },
			seen: func(t *testing.T, c client, pc *pushConn) {
				c.SetDeadline(time.Now().Add(testTimeout))
				if b, err := c.r.ReadByte(); err != io.EOF {
					t.Errorf("client read %q, %v; want EOF", b, err)
				}
				c.Close() // the session ends when both sides have
			},
			reason: sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, addr := newPushBackend(t)
			ep := upstream.New("c", "e", addr)
			onClose, infos := recorder()
			s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
			c := dialClient(t, startProxy(t, s))
			exchange(t, c, c.r, "hello\n")
			pc := b.next(t)
			defer close(pc.push)
			waitParked(t, s, ep, 1)
			tt.close(c, pc)
			tt.seen(t, c, pc)
			if ci := waitInfo(t, infos); ci.Reason != tt.reason {
				t.Errorf("reason %v, want %v", ci.Reason, tt.reason)
			}
			waitUntil(t, "the session to go", func() bool { return s.Sessions(ep) == 0 })
			if ep.Inflight() != 0 || ep.Conns() != 0 {
				t.Errorf("endpoint after the session: inflight %d, conns %d; want 0 0", ep.Inflight(), ep.Conns())
			}
		})
	}
}

// TestParkedHalfClose: the client half-closes a parked session; the
// endpoint reads to its EOF and can still answer, and then close; the other
// way round, the endpoint half-closes and the client can still send.
func TestParkedHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		got := make(chan string, 1)
		ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReader(c)
			line, _ := r.ReadString('\n')
			c.Write([]byte(line))
			rest, _ := io.ReadAll(r) // to the client's half-close
			got <- string(rest)
			time.Sleep(100 * time.Millisecond) // parked again, but for its half-close
			c.Write([]byte("bye " + string(rest)))
		}))
		onClose, infos := recorder()
		s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
		c := dialClient(t, startProxy(t, s))
		exchange(t, c, c.r, "hello\n")
		waitParked(t, s, ep, 1)
		c.Write([]byte("last"))
		c.Conn.(*net.TCPConn).CloseWrite()
		select {
		case rest := <-got:
			if rest != "last" {
				t.Fatalf("endpoint read %q after the first line, want last", rest)
			}
		case <-time.After(testTimeout):
			t.Fatal("the endpoint did not see the client's half-close")
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		if rest, err := io.ReadAll(c.r); err != nil || string(rest) != "bye last" {
			t.Fatalf("client read %q, %v after its half-close; want bye last", rest, err)
		}
		ci := waitInfo(t, infos)
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.BytesIn != 10 || ci.BytesOut != 14 {
			t.Errorf("record: %v, %d in, %d out; want CLIENT_CLOSED, 10, 14", ci.Reason, ci.BytesIn, ci.BytesOut)
		}
	})
	t.Run("endpoint first", func(t *testing.T) {
		got := make(chan string, 1)
		ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
			defer c.Close()
			c.Write([]byte("hi\n"))
			c.(*net.TCPConn).CloseWrite()
			rest, _ := io.ReadAll(c)
			got <- string(rest)
		}))
		onClose, infos := recorder()
		s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
		c := dialClient(t, startProxy(t, s))
		c.SetDeadline(time.Now().Add(testTimeout))
		if all, err := io.ReadAll(c.r); err != nil || string(all) != "hi\n" {
			t.Fatalf("client read %q, %v; want hi and EOF", all, err)
		}
		waitUntil(t, "the client half to park", func() bool {
			parking.mu.Lock()
			defer parking.mu.Unlock()
			l := s.sessions.list(ep)
			return l != nil && l.head != nil && l.head.up.parkID != 0
		})
		c.Write([]byte("still talking"))
		c.Conn.(*net.TCPConn).CloseWrite()
		select {
		case rest := <-got:
			if rest != "still talking" {
				t.Errorf("endpoint read %q, want still talking", rest)
			}
		case <-time.After(testTimeout):
			t.Fatal("the endpoint did not get the client's bytes after its own half-close")
		}
		if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED {
			t.Errorf("reason %v, want SERVER_CLOSED", ci.Reason)
		}
	})
}

// TestParkedClosedByTheEndpoint: the endpoint's own ways of closing its
// connections (shutdown-sessions, down, drain) end parked sessions: the
// client sees its connection close soon after, the record says why.
func TestParkedClosedByTheEndpoint(t *testing.T) {
	for _, tt := range []struct {
		name   string
		close  func(ep *upstream.Endpoint)
		reason sluicev1.CloseReason
	}{
		{"shutdown sessions", func(ep *upstream.Endpoint) { ep.ShutdownSessions() }, sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN},
		{"down", func(ep *upstream.Endpoint) { ep.CloseConns() }, sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN},
		{"drained", func(ep *upstream.Endpoint) { ep.CloseSessions() }, sluicev1.CloseReason_CLOSE_REASON_DRAINED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ep := upstream.New("c", "e", startBackend(t, lineEcho))
			onClose, infos := recorder()
			s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
			c := dialClient(t, startProxy(t, s))
			exchange(t, c, c.r, "hello\n")
			waitParked(t, s, ep, 1)
			start := time.Now()
			tt.close(ep)
			c.SetDeadline(time.Now().Add(testTimeout))
			if _, err := c.r.ReadByte(); err == nil {
				t.Fatal("client read a byte; want its connection closed")
			}
			// Closed by the sweep, within sweepEvery of the endpoint's close.
			if took := time.Since(start); took > sweepEvery+time.Second {
				t.Errorf("the client's connection closed %v after the endpoint's, want within %v", took, sweepEvery+time.Second)
			}
			if ci := waitInfo(t, infos); ci.Reason != tt.reason {
				t.Errorf("reason %v, want %v", ci.Reason, tt.reason)
			}
		})
	}
}

// TestParkedClientClosedUnderIt: the client socket closed by someone else
// (the listener's connection set, when a listener goes) ends a parked
// session: the endpoint sees its connection close, a record is made.
func TestParkedClientClosedUnderIt(t *testing.T) {
	b, addr := newPushBackend(t)
	ep := upstream.New("c", "e", addr)
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	accepted := make(chan *net.TCPConn, 1)
	proxy := loopback.Serve(t, func(c net.Conn) {
		accepted <- c.(*net.TCPConn)
		s.ServeConn(c.(*net.TCPConn))
	})
	c := dialClient(t, proxy)
	exchange(t, c, c.r, "hello\n")
	pc := b.next(t)
	defer close(pc.push)
	waitParked(t, s, ep, 1)
	(<-accepted).Close()
	select {
	case <-pc.eof:
	case <-time.After(testTimeout):
		t.Fatal("the endpoint's connection stayed open")
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_IO_ERROR {
		t.Errorf("reason %v, want IO_ERROR", ci.Reason)
	}
}

// TestMarkClosingEndsParked: a listener's removal (MarkClosing) ends its
// parked sessions at once, recorded as closed by the listener. The sweep
// is put off for the test: a server that left its parked sessions to it
// would leave the records (or the clients) waiting until their deadlines.
func TestMarkClosingEndsParked(t *testing.T) {
	setSweepEvery(t, time.Hour)
	ep := upstream.New("c", "e", startBackend(t, lineEcho))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	proxy := startProxy(t, s)
	var cs []client
	for range 3 {
		c := dialClient(t, proxy)
		exchange(t, c, c.r, "hello\n")
		cs = append(cs, c)
	}
	waitParked(t, s, ep, 3)
	s.MarkClosing()
	deadline := time.Now().Add(testTimeout)
	for i, c := range cs {
		c.SetDeadline(deadline)
		if b, err := c.r.ReadByte(); err != io.EOF {
			t.Errorf("client %d read %q, %v; want EOF", i, b, err)
		}
	}
	for range 3 {
		if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
			t.Errorf("reason %v, want LISTENER_CLOSED", ci.Reason)
		}
	}
}

// TestBusyHalfParksAgain: back-to-back exchanges (the poller gives such a
// half a goroutine) go through in order, and the session parks again once
// quiet.
func TestBusyHalfParksAgain(t *testing.T) {
	ep := upstream.New("c", "e", startBackend(t, lineEcho))
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
	c := dialClient(t, startProxy(t, s))
	for i := range 200 {
		exchange(t, c, c.r, string(rune('a'+i%26))+"\n")
	}
	waitParked(t, s, ep, 1)
	exchange(t, c, c.r, "after\n")
}

// TestBulkBothWays: megabytes each way at once arrive whole and in order,
// spliced or copied, the record counts them, and the session then parks
// holding no pipe.
func TestBulkBothWays(t *testing.T) { eachSpliceMode(t, bulkBothWays) }

func bulkBothWays(t *testing.T) {
	const size = 24 << 20
	ep := upstream.New("c", "e", startBackend(t, echo))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	c := dialClient(t, startProxy(t, s))
	c.SetDeadline(time.Now().Add(4 * testTimeout))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// In pieces of many sizes, so that reads end short and full.
		for p := data; len(p) > 0; {
			n := min(len(p), 1+rand.IntN(200<<10))
			if _, err := c.Write(p[:n]); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			p = p[n:]
		}
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c.r, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	wg.Wait()
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("the bytes came back changed")
	}
	waitParked(t, s, ep, 1)
	parking.mu.Lock()
	ss := s.sessions.list(ep).head
	pipes := ss.up.pipe != nil || ss.down.pipe != nil
	parking.mu.Unlock()
	if pipes {
		t.Error("a parked half holds a pipe")
	}
	exchange(t, c, c.r, "small again\n")
	c.Close()
	if ci := waitInfo(t, infos); ci.BytesIn != size+12 || ci.BytesOut != size+12 {
		t.Errorf("record: %d in, %d out; want %d each", ci.BytesIn, ci.BytesOut, size+12)
	}
}

// TestIdleSessionsHoldNoGoroutine: sessions set up through Go and served
// with ServeConnAsync, as the node does, hold no goroutine once idle.
func TestIdleSessionsHoldNoGoroutine(t *testing.T) {
	const n = 300
	ep := upstream.New("c", "e", startBackend(t, lineEcho))
	var ended sync.WaitGroup
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
	addr := serveAsync(t, s, func() { ended.Add(1) }, ended.Done)
	before := runtime.NumGoroutine()
	var cs []client
	for range n {
		c := dialClient(t, addr)
		c.Write([]byte("hello\n"))
		cs = append(cs, c)
	}
	for _, c := range cs {
		c.SetDeadline(time.Now().Add(testTimeout))
		if got, err := c.r.ReadString('\n'); err != nil || got != "hello\n" {
			t.Fatalf("read %q, %v; want hello", got, err)
		}
	}
	waitParked(t, s, ep, n)
	// The backend's handlers hold one goroutine per session; the proxy
	// none (a few may come and go).
	if extra := runtime.NumGoroutine() - before - n; extra > 10 {
		t.Errorf("%d goroutines beyond the backend's for %d idle sessions, want none", extra, n)
	}
	for _, c := range cs {
		c.Close()
	}
	ended.Wait()
	if s.setups.InFlight() != 0 {
		t.Errorf("%d setups counted after all ended", s.setups.InFlight())
	}
}

// TestBusyHalfSeesFINWithData: a half on its own goroutine (busy) whose
// last bytes and FIN are queued together passes the EOF on; it does not
// wait for more (the poller's set sees the FIN the Go poller's one wake-up
// hid, and tells the half). The client's last bytes and its FIN travel in
// one segment (TCP_CORK), so they are queued together. The half's
// patience is long, so that its read deadline cannot be what finds the
// FIN.
func TestBusyHalfSeesFINWithData(t *testing.T) {
	ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				c.Write([]byte("eof\n"))
				return
			}
			c.Write([]byte(line))
		}
	}))
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
	s.parkAfter = time.Minute
	proxy := startProxy(t, s)
	for range 5 {
		c := dialClient(t, proxy)
		for range 50 { // busy: the client half gets a goroutine
			exchange(t, c, c.r, "x\n")
		}
		raw, _ := c.Conn.(*net.TCPConn).SyscallConn()
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
		c.Write([]byte("last\n"))
		c.Conn.(*net.TCPConn).CloseWrite()
		c.SetDeadline(time.Now().Add(testTimeout)) // well within the half's patience
		if rest, err := io.ReadAll(c.r); err != nil || string(rest) != "last\neof\n" {
			t.Fatalf("read %q, %v after the client's last line and FIN; want last, eof", rest, err)
		}
	}
}

// TestBusyHalfSeesResetBehindData: a half on its own goroutine (busy)
// whose last bytes have a reset queued behind them passes the bytes on and
// ends the session at once, as closed by the client. So that both are
// queued before the half runs, the test runs on one P and sends the bytes
// and the reset with raw system calls, which keep the P, from a socket of
// its own. The half's patience is long, as above.
func TestBusyHalfSeesResetBehindData(t *testing.T) {
	lines := make(chan string, 64)
	ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- line
			if line == "x\n" { // not the last: an answer would meet the reset
				c.Write([]byte(line))
			}
		}
	}))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	s.parkAfter = time.Minute
	proxy := netip.MustParseAddrPort(startProxy(t, s))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for range 5 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: proxy.Addr().As4(), Port: int(proxy.Port())}); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: int64(testTimeout / time.Second)})
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		buf := make([]byte, 16)
		for range 50 { // busy: the client half gets a goroutine
			unix.Write(fd, []byte("x\n"))
			if n, err := unix.Read(fd, buf); err != nil || string(buf[:n]) != "x\n" {
				unix.Close(fd)
				t.Fatalf("read %q, %v; want x", buf[:max(n, 0)], err)
			}
			<-lines
		}
		last := []byte("last\n")
		unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&last[0])), uintptr(len(last)))
		unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) // the reset (SO_LINGER 0)
		ci := waitInfo(t, infos)
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
			t.Errorf("reason %v, want CLIENT_CLOSED", ci.Reason)
		}
		select {
		case l := <-lines:
			if l != "last\n" {
				t.Errorf("endpoint read %q, want last", l)
			}
		case <-time.After(testTimeout):
			t.Fatal("the endpoint did not get the bytes the reset came behind")
		}
	}
}

// TestParkedTLSEndpoint: with an endpoint that speaks TLS, the client's
// half parks (and is encrypted on its way when woken) while the half that
// reads TLS keeps a goroutine; exchanges go on both ways after parking.
func TestParkedTLSEndpoint(t *testing.T) {
	ca := testcert.NewCA(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	ep := upstream.New("db", "db1", startBackend(t, func(c net.Conn) {
		tc := tls.Server(c, srvCfg)
		lineEcho(tc)
	}))
	ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "db", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	c := dialClient(t, startProxy(t, s))
	exchange(t, c, c.r, "hello\n")
	isParked := func() bool {
		parking.mu.Lock()
		defer parking.mu.Unlock()
		l := s.sessions.list(ep)
		return l != nil && l.head != nil && l.head.up.parkID != 0 && l.head.down.parkID == 0
	}
	waitUntil(t, "the client's half to park", isParked)
	exchange(t, c, c.r, "again\n")
	waitUntil(t, "the client's half to park again", isParked)
	c.Close()
	if ci := waitInfo(t, infos); ci.BytesIn != 12 || ci.BytesOut != 12 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("record: %d in, %d out, %v; want 12, 12, CLIENT_CLOSED", ci.BytesIn, ci.BytesOut, ci.Reason)
	}
}

// stuckFirst sends its first n picks to stuck, with a connect timeout
// longer than any test, and the others to live.
type stuckFirst struct {
	n           int64
	stuck, live *upstream.Endpoint
	picks       atomic.Int64
}

func (d *stuckFirst) Pick(net.Addr, *Attempt) (*upstream.Endpoint, time.Duration, error) {
	if d.picks.Add(1) <= d.n {
		d.stuck.Acquire()
		return d.stuck, time.Hour, nil
	}
	d.live.Acquire()
	return d.live, time.Second, nil
}

// TestGoDoesNotWaitForSlowEndpoints: Go paces the accept loop on the CPU,
// never on the network: with far more than pace.After sessions stuck
// connecting to an endpoint that does not answer, sessions to a healthy
// one are still set up and served. The stuck setups wait for as long as
// the test runs, so a Go that waited for them would leave the sessions to
// the healthy one unserved: their exchanges would fail at their deadlines.
func TestGoDoesNotWaitForSlowEndpoints(t *testing.T) {
	const stuckN, liveN = 3 * pace.After, pace.After
	d := &stuckFirst{n: stuckN, stuck: upstream.New("c", "stuck", loopback.UnresponsiveAddr(t)), live: upstream.New("c", "live", startBackend(t, lineEcho))}
	s := NewServer(&Config{Listener: "l", Director: d}, nil)
	addr := serveAsync(t, s, func() {}, func() {})
	t.Cleanup(s.MarkClosing) // ends the stuck connects with the test
	for range stuckN {
		dialClient(t, addr)
	}
	waitUntil(t, "the stuck setups", func() bool { return d.picks.Load() == stuckN })
	for range liveN {
		c := dialClient(t, addr)
		exchange(t, c, c.r, "hi\n")
	}
	if got := s.setups.InFlight(); got < stuckN {
		t.Errorf("%d setups in flight at the end, want the %d stuck ones still counted", got, stuckN)
	}
}

// serveAsync serves s on a new loopback listener as the node does: each
// accepted connection set up through Go and served by ServeConnAsync,
// accepted called before and done when it ends. It returns the address.
func serveAsync(t *testing.T, s *Server, accepted, done func()) string {
	t.Helper()
	return loopback.Accept(t, func(c net.Conn) {
		accepted()
		s.Go(func() {
			s.ServeConnAsync(c.(*net.TCPConn), c.RemoteAddr().(*net.TCPAddr).AddrPort(), netip.AddrPort{}, done)
		})
	})
}
