package upstream

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestReceiveBuffer: every kind of connection to the endpoint gets the
// receive buffer set last (Linux reports twice the figure asked for),
// connections already open keep theirs, and 0 gives the kernel's default
// back.
func TestReceiveBuffer(t *testing.T) {
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	rcvbuf := func(c net.Conn) int {
		t.Helper()
		return sockopt(t, c, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}
	plain, err := ep.Dial(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close(plain)
	def := rcvbuf(plain)

	const set = 24 << 10
	ep.SetReceiveBuffer(set)
	if got := ep.ReceiveBuffer(); got != set {
		t.Errorf("ReceiveBuffer() = %d after SetReceiveBuffer(%d)", got, set)
	}
	dials := map[string]func() (net.Conn, error){
		"Dial":        func() (net.Conn, error) { return ep.Dial(ctx, time.Second) },
		"DialSession": func() (net.Conn, error) { return ep.DialSession(ctx, time.Second) },
		"DialPlain":   func() (net.Conn, error) { return ep.DialPlain(ctx, time.Second, nil) },
		"DialWithHeader": func() (net.Conn, error) {
			return ep.DialWithHeader(ctx, time.Second, false, []byte("PROXY UNKNOWN\r\n"))
		},
	}
	for name, dial := range dials {
		c, err := dial()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := rcvbuf(c); got != 2*set {
			t.Errorf("%s: SO_RCVBUF = %d with the receive buffer at %d, want %d", name, got, set, 2*set)
		}
		ep.Close(c)
	}
	if got := rcvbuf(plain); got != def {
		t.Errorf("a connection opened before the change has SO_RCVBUF %d, want the %d it had", got, def)
	}

	ep.SetReceiveBuffer(0)
	c, err := ep.Dial(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close(c)
	if got := rcvbuf(c); got != def {
		t.Errorf("SO_RCVBUF = %d after SetReceiveBuffer(0), want the kernel's %d", got, def)
	}
}

// TestReceiveBufferChangeEmptiesPool: after a change no request goes out
// on a connection with the old buffer: the idle pool is emptied, and a
// busy connection dialed before the change is closed when it is handed
// back, while one dialed after is pooled.
func TestReceiveBufferChangeEmptiesPool(t *testing.T) {
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	dial := func() net.Conn {
		t.Helper()
		c, err := ep.Dial(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	idle, busy := dial(), dial()
	ep.PutIdle(idle, Pooled{})

	ep.SetReceiveBuffer(32 << 10)
	if !closed(idle) {
		t.Error("the connection idle at the change is still open")
	}
	if c, _, _ := ep.GetIdleSince(); c != nil {
		t.Errorf("the pool still hands out a connection from before the change: %v", c.LocalAddr())
	}
	ep.PutIdle(busy, Pooled{})
	if !closed(busy) {
		t.Error("a connection dialed before the change, handed back after it, is open")
	}
	if c, _, _ := ep.GetIdleSince(); c != nil {
		t.Error("a connection dialed before the change was pooled after it")
	}

	fresh := dial()
	ep.PutIdle(fresh, Pooled{})
	if c, _, _ := ep.GetIdleSince(); c != fresh {
		t.Errorf("GetIdleSince = %v after pooling a connection dialed with the new buffer, want it", c)
	}
	ep.Close(fresh)
	if n := ep.Conns(); n != 0 {
		t.Errorf("Conns = %d with every connection closed, want 0", n)
	}

	// Setting the same value again changes nothing.
	kept := dial()
	ep.PutIdle(kept, Pooled{})
	ep.SetReceiveBuffer(32 << 10)
	if c, _, _ := ep.GetIdleSince(); c != kept {
		t.Error("setting the same receive buffer again emptied the pool")
	}
	ep.Close(kept)
}
