package tcpproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// testIdle is the min_idle of these tests: many kernel clock ticks, so
// that "idle for testIdle" is not a matter of rounding.
const testIdle = 50 * time.Millisecond

// TestCloseIdleOldestFirst: CloseIdle closes the oldest idle sessions of
// the endpoint, up to the number asked; their clients read a clean EOF,
// the others keep working, and the records say REBALANCED.
func TestCloseIdleOldestFirst(t *testing.T) {
	ep := upstream.New("c", "e", startBackend(t, lineEcho))
	other := upstream.New("c", "other", startBackend(t, lineEcho))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	addr := startProxy(t, s)
	var cs []client
	for range 4 {
		c := dialClient(t, addr)
		exchange(t, c, c.r, "hello\n")
		cs = append(cs, c)
	}
	time.Sleep(testIdle + 20*time.Millisecond) // every session is now idle
	waitParked(t, s, ep, 4)                    // and waits without a goroutine

	if n := s.CloseIdle(other, 5, testIdle); n != 0 {
		t.Errorf("CloseIdle of an endpoint without sessions = %d, want 0", n)
	}
	if n := s.CloseIdle(ep, 2, testIdle); n != 2 {
		t.Fatalf("CloseIdle(2) = %d, want 2", n)
	}
	for i, c := range cs[:2] {
		c.SetDeadline(time.Now().Add(testTimeout))
		if b, err := c.r.ReadByte(); err != io.EOF {
			t.Errorf("client %d (among the oldest): read %q, %v; want EOF", i, b, err)
		}
	}
	for _, c := range cs[2:] {
		exchange(t, c, c.r, "still here\n")
	}
	for range 2 {
		if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_REBALANCED || ci.Endpoint != "e" {
			t.Errorf("record: reason %v endpoint %q, want REBALANCED e", ci.Reason, ci.Endpoint)
		}
	}
	waitUntil(t, "two sessions left", func() bool { return s.Sessions(ep) == 2 })
}

// heldBackend answers each line only when told to, through answer.
func heldBackend(answer chan string) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "hold") {
				line = <-answer
			}
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	}
}

// TestCloseIdleSparesExchanges: a session is not idle, and not closed,
// while its last request waits for the endpoint's answer, while bytes sit
// in a queue, or while it carried a byte less than min_idle ago; once the
// answer went through it is.
func TestCloseIdleSparesExchanges(t *testing.T) {
	answer := make(chan string, 1)
	ep := upstream.New("c", "e", startBackend(t, heldBackend(answer)))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	addr := startProxy(t, s)

	c := dialClient(t, addr)
	exchange(t, c, c.r, "hello\n")
	if n := s.CloseIdle(ep, 1, time.Second); n != 0 {
		t.Fatalf("CloseIdle right after an exchange, min_idle 1s = %d, want 0", n)
	}
	// The next request a few clock ticks after the last answer, so that the
	// kernel's times tell which came last; the endpoint holds its answer
	// for longer than min_idle.
	time.Sleep(20 * time.Millisecond)
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte("hold\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testIdle) // idle for min_idle but waiting for an answer
	if n := s.CloseIdle(ep, 1, testIdle); n != 0 {
		t.Fatalf("CloseIdle while the endpoint owes an answer = %d, want 0", n)
	}
	answer <- "answered\n"
	if got, err := c.r.ReadString('\n'); err != nil || got != "answered\n" {
		t.Fatalf("read %q, %v; want the held answer", got, err)
	}
	time.Sleep(testIdle + 20*time.Millisecond)
	if n := s.CloseIdle(ep, 1, testIdle); n != 1 {
		t.Fatalf("CloseIdle once answered and idle = %d, want 1", n)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_REBALANCED {
		t.Errorf("reason %v, want REBALANCED", ci.Reason)
	}
}

// TestCloseIdleSparesAFirstRequest: a session whose first request still
// waits for its answer is not idle, though it was sent in the clock tick
// the connection was made in (where the kernel's times of the backend
// socket compare equal); a session where neither side spoke yet is, as
// is one whose answer went through.
func TestCloseIdleSparesAFirstRequest(t *testing.T) {
	answer := make(chan string, 1)
	ep := upstream.New("c", "e", startBackend(t, heldBackend(answer)))
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	addr := startProxy(t, s)

	c := dialClient(t, addr)
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte("hold\n")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the session", func() bool { return s.Sessions(ep) == 1 })
	time.Sleep(3 * testIdle)
	if n := s.CloseIdle(ep, 1, testIdle); n != 0 {
		t.Fatalf("CloseIdle while the first request waits for its answer = %d, want 0", n)
	}

	silent := dialClient(t, addr) // says nothing, and is told nothing
	waitUntil(t, "two sessions", func() bool { return s.Sessions(ep) == 2 })
	time.Sleep(testIdle + 20*time.Millisecond)
	if n := s.CloseIdle(ep, 2, testIdle); n != 1 {
		t.Fatalf("CloseIdle of a waiting and a silent session = %d, want 1, the silent one", n)
	}
	silent.SetDeadline(time.Now().Add(testTimeout))
	if b, err := silent.r.ReadByte(); err != io.EOF {
		t.Errorf("the silent client read %q, %v; want EOF", b, err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_REBALANCED {
		t.Errorf("reason %v, want REBALANCED", ci.Reason)
	}

	answer <- "answered\n"
	if got, err := c.r.ReadString('\n'); err != nil || got != "answered\n" {
		t.Fatalf("read %q, %v; want the held answer", got, err)
	}
	time.Sleep(testIdle + 20*time.Millisecond)
	if n := s.CloseIdle(ep, 1, testIdle); n != 1 {
		t.Fatalf("CloseIdle once the first request was answered = %d, want 1", n)
	}
}

// TestCloseIdleSparesQueued: a session is not idle while bytes wait in a
// queue, though none has moved for longer than min_idle: towards an
// endpoint that does not read, or towards a client that does not read a
// long answer (there the endpoint did speak last).
func TestCloseIdleSparesQueued(t *testing.T) {
	big := make([]byte, 64<<20) // more than every buffer on the way holds
	for _, tt := range []struct {
		name    string
		backend func(c net.Conn, stop chan struct{})
		fill    func(c client) error // fills the queues, or says why not
	}{
		{
			name:    "towards the endpoint",
			backend: func(c net.Conn, stop chan struct{}) { <-stop },
			fill: func(c client) error {
				c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
				if n, err := c.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("wrote %d bytes, %v; want the write to block until its deadline", n, err)
				}
				return nil
			},
		},
		{
			name: "towards the client",
			backend: func(c net.Conn, stop chan struct{}) {
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				c.Write(big) // ends when the test closes the connection
				<-stop
			},
			fill: func(c client) error {
				if _, err := c.Write([]byte("download\n")); err != nil {
					return err
				}
				// Not reading: the answer fills the buffers.
				time.Sleep(200 * time.Millisecond)
				return nil
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stop := make(chan struct{})
			ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
				defer c.Close()
				tt.backend(c, stop)
			}))
			defer close(stop)
			s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
			addr := startProxy(t, s)
			c := dialClient(t, addr)
			if err := tt.fill(c); err != nil {
				t.Fatalf("filling the queues: %v", err)
			}
			waitUntil(t, "the session to register", func() bool { return s.Sessions(ep) == 1 })
			time.Sleep(3 * testIdle)
			if n := s.CloseIdle(ep, 1, testIdle); n != 0 {
				t.Fatalf("CloseIdle with bytes queued = %d, want 0", n)
			}
		})
	}
}
