package node

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// unanswered is how long a connection beyond max_connections is watched
// for an answer that must not come.
const unanswered = 300 * time.Millisecond

// keptConn is a client connection of an HTTP listener that sent a GET.
type keptConn struct {
	net.Conn
	br *bufio.Reader
}

func getOn(t *testing.T, addr string) *keptConn {
	t.Helper()
	c := sendGet(t, addr, "/")
	return &keptConn{c, bufio.NewReader(c)}
}

// answered reads the answer to the GET last sent on c, within testTimeout.
func (c *keptConn) answered(t *testing.T, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", what, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "a" {
		t.Fatalf("%s: %d %q, want 200 from endpoint a", what, resp.StatusCode, body)
	}
}

// waiting checks that the GET sent on c gets no answer: its connection
// waits in the accept queue.
func (c *keptConn) waiting(t *testing.T, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(unanswered))
	if _, err := c.br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read %v, want no answer while the listener is full", what, err)
	}
}

// cappedHTTP is a snapshot of HTTP listener public (address, then
// max_connections) in front of endpoint a (address, first).
const cappedHTTP = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web, max_connections: %d }
`

// TestMaxConnectionsHTTP: at max_connections the listener accepts no more;
// a connection beyond it is served once one closes, or once an apply
// raises the cap. Lowering the cap closes nothing.
func TestMaxConnectionsHTTP(t *testing.T) {
	n := newNode(t)
	a := backend(t, "a")
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, cappedHTTP, a, addr, 2)); err != nil {
		t.Fatal(err)
	}
	c1, c2 := getOn(t, addr), getOn(t, addr)
	c1.answered(t, "first connection")
	c2.answered(t, "second connection")
	c3 := getOn(t, addr)
	c3.waiting(t, "third connection, two open")
	if s := n.Listeners()[0]; s.Conns != 2 || s.MaxConns != 2 || s.Full == 0 {
		t.Errorf("status %+v, want 2 connections of 2, full at least once", s)
	}

	c1.Close()
	c3.answered(t, "third connection, after the first closed")

	c4 := getOn(t, addr)
	c4.waiting(t, "fourth connection, two open")
	if err := n.Apply("2", parse(t, cappedHTTP, a, addr, 3)); err != nil {
		t.Fatal(err)
	}
	c4.answered(t, "fourth connection, after the cap was raised to 3")

	// Down to 1 with three open: they stay and are served; a new one waits.
	if err := n.Apply("3", parse(t, cappedHTTP, a, addr, 1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*keptConn{c2, c3, c4} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.answered(t, "a connection open before the cap was lowered")
	}
	c5 := getOn(t, addr)
	c5.waiting(t, "a new connection, three open and a cap of 1")
	c2.Close()
	c3.Close()
	c5.waiting(t, "a new connection, two open and a cap of 1")
	c4.Close()
	c5.answered(t, "a new connection, after every older one closed")

	if err := n.Apply("4", parse(t, cappedHTTP, a, addr, 0)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		getOn(t, addr).answered(t, "a connection without a cap, "+string(rune('1'+i)))
	}
}

// TestMaxConnectionsTCP: a TCP listener at max_connections leaves the next
// session in the accept queue; its bytes reach the endpoint once the
// first session ends.
func TestMaxConnectionsTCP(t *testing.T) {
	n := newNode(t)
	echo := loopback.Serve(t, func(c net.Conn) { defer c.Close(); io.Copy(c, c) })
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: db
    endpoints: [{ name: e, address: "%s" }]
listeners:
  - { name: db, address: "%s", protocol: TCP, default_cluster: db, max_connections: 1 }
`, echo, addr)); err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	echoed := func(c net.Conn, msg string) error {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		if err == nil && string(buf) != msg {
			t.Fatalf("echo %q, want %q", buf, msg)
		}
		return err
	}
	s1 := dial()
	s1.SetDeadline(time.Now().Add(testTimeout))
	if err := echoed(s1, "one"); err != nil {
		t.Fatalf("first session: %v", err)
	}
	s2 := dial()
	s2.SetDeadline(time.Now().Add(unanswered))
	if err := echoed(s2, "two"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second session with the first open: %v, want no echo", err)
	}
	s1.Close()
	s2.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(s2, buf); err != nil || string(buf) != "two" {
		t.Fatalf("second session after the first closed: %q, %v; want its bytes echoed", buf, err)
	}
}

// TestCloseWhileFull: a node whose listener waits for a free slot still
// closes, and drains, at once: the connection holding the slot is idle,
// and Drain ends idle connections.
func TestCloseWhileFull(t *testing.T) {
	for _, drain := range []bool{false, true} {
		n := newNode(t)
		a := backend(t, "a")
		addr := freeAddr(t)
		if err := n.Apply("1", parse(t, cappedHTTP, a, addr, 1)); err != nil {
			t.Fatal(err)
		}
		c1 := getOn(t, addr)
		c1.answered(t, "first connection")
		getOn(t, addr).waiting(t, "second connection")
		done := make(chan struct{})
		go func() {
			defer close(done)
			if drain {
				n.Drain(t.Context())
			}
			n.Close()
		}()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Fatalf("drain %v: the node did not close while its listener was full", drain)
		}
	}
}

// TestNodeMaxConnections: the node's cap holds over all its listeners. A
// connection to one listener waits while the other holds the last slot,
// and is served when a connection of the other closes; removing a
// listener whose accept loop waits for the node's slot does not hang.
func TestNodeMaxConnections(t *testing.T) {
	n := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxConnections: 2})
	t.Cleanup(n.Close)
	a := backend(t, "a")
	addrA, addrB := freeAddr(t), freeAddr(t)
	const both = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: one, address: "%s", protocol: HTTP, default_cluster: web }
  - { name: two, address: "%s", protocol: HTTP, default_cluster: web }
`
	if err := n.Apply("1", parse(t, both, a, addrA, addrB)); err != nil {
		t.Fatal(err)
	}
	a1, b1 := getOn(t, addrA), getOn(t, addrB)
	a1.answered(t, "first connection to one")
	b1.answered(t, "first connection to two")
	a2 := getOn(t, addrA)
	a2.waiting(t, "second connection to one, two open on the node")
	if s := n.Connections(); s.Open != 2 || s.Max != 2 || s.Full == 0 {
		t.Errorf("Connections() = %+v, want 2 open of 2, full at least once", s)
	}
	b1.Close()
	a2.answered(t, "second connection to one, after two's closed")

	// two's accept loop now waits for the node's slot: an apply that
	// removes two closes it at once and keeps one's connections.
	b2 := getOn(t, addrB)
	b2.waiting(t, "second connection to two, two open on the node")
	applied := make(chan error, 1)
	go func() {
		applied <- n.Apply("2", parse(t, `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: one, address: "%s", protocol: HTTP, default_cluster: web }
`, a, addrA))
	}()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("an apply removing a listener that waits for the node's slot did not return")
	}
	b2.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := b2.br.Peek(1); err == nil {
		t.Error("a connection waiting on the removed listener got an answer")
	}
	for _, c := range []*keptConn{a1, a2} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.answered(t, "a connection to one, after two was removed")
	}
	a1.Close()
	getOn(t, addrA).answered(t, "a new connection to one, after one of its two closed")
}
