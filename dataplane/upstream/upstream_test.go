package upstream

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

func listen(t *testing.T) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c)
	})
}

func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestDrainAndShutdown checks which connections each step closes: Drain
// the idle ones, CloseSessions the TCP sessions, Shutdown the rest.
func TestDrainAndShutdown(t *testing.T) {
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	idle, err := ep.Dial(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ep.PutIdle(idle, Pooled{})
	busy, _ := ep.Dial(ctx, time.Second)
	session, _ := ep.DialSession(ctx, time.Second)
	if n := ep.Conns(); n != 3 {
		t.Fatalf("Conns = %d, want 3", n)
	}

	ep.Drain()
	if !closed(idle) || closed(busy) || closed(session) {
		t.Fatalf("after Drain: idle closed %v, busy %v, session %v; want true false false", closed(idle), closed(busy), closed(session))
	}
	if _, err := ep.Dial(ctx, time.Second); err != ErrClosed {
		t.Errorf("Dial while draining: %v, want ErrClosed", err)
	}
	ep.CloseSessions()
	if closed(busy) || !closed(session) {
		t.Fatalf("after CloseSessions: busy closed %v, session %v; want false true", closed(busy), closed(session))
	}
	ep.Shutdown()
	if !closed(busy) || ep.Conns() != 0 {
		t.Fatalf("after Shutdown: busy closed %v, conns %d; want true 0", closed(busy), ep.Conns())
	}
}

// TestPoolNewestFirst: the most recently used connection is reused first.
func TestPoolNewestFirst(t *testing.T) {
	ep := New("c", "e", listen(t))
	a, _ := ep.Dial(context.Background(), time.Second)
	b, _ := ep.Dial(context.Background(), time.Second)
	ep.PutIdle(a, Pooled{})
	ep.PutIdle(b, Pooled{})
	if got, _, _ := ep.GetIdleSince(); got != b {
		t.Errorf("GetIdleSince returned the older connection")
	}
	if got, _, _ := ep.GetIdleSince(); got != a {
		t.Errorf("second GetIdleSince did not return the remaining connection")
	}
	if got, _, _ := ep.GetIdleSince(); got != nil {
		t.Errorf("empty pool returned a connection")
	}
	ep.Shutdown()
}

// TestPoolEvictsStale: connections that sat unused for MaxIdleAge are
// closed when the pool is next used.
func TestPoolEvictsStale(t *testing.T) {
	ep := New("c", "e", listen(t))
	old, _ := ep.Dial(context.Background(), time.Second)
	ep.PutIdle(old, Pooled{})
	ep.mu.Lock()
	ep.idle[0].since = time.Now().Add(-MaxIdleAge - time.Second)
	ep.mu.Unlock()
	fresh, _ := ep.Dial(context.Background(), time.Second)
	ep.PutIdle(fresh, Pooled{})
	if !closed(old) {
		t.Errorf("stale pooled connection still open")
	}
	got, _, _ := ep.GetIdleSince()
	rest, _, _ := ep.GetIdleSince()
	if got != fresh || rest != nil || ep.Conns() != 1 {
		t.Errorf("pool after eviction: want only the fresh connection")
	}
	ep.Shutdown()
}

// TestShutdownSessions: every connection closes, busy, idle or session,
// the count says so, the endpoint still dials, and only the busy ones it
// closed are marked as shut down, until their user closes them.
func TestShutdownSessions(t *testing.T) {
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	idle, err := ep.Dial(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ep.PutIdle(idle, Pooled{})
	busy, _ := ep.Dial(ctx, time.Second)
	session, _ := ep.DialSession(ctx, time.Second)

	if n := ep.ShutdownSessions(); n != 3 {
		t.Errorf("ShutdownSessions closed %d, want 3", n)
	}
	if !closed(idle) || !closed(busy) || !closed(session) || ep.Conns() != 0 {
		t.Fatalf("after ShutdownSessions: idle closed %v, busy %v, session %v, conns %d; want all closed, 0",
			closed(idle), closed(busy), closed(session), ep.Conns())
	}
	if !ep.WasShutDown(busy) || !ep.WasShutDown(session) || ep.WasShutDown(idle) {
		t.Errorf("WasShutDown: busy %v, session %v, idle %v; want true true false", ep.WasShutDown(busy), ep.WasShutDown(session), ep.WasShutDown(idle))
	}
	if ep.Draining() {
		t.Error("ShutdownSessions drained the endpoint")
	}
	fresh, err := ep.DialSession(ctx, time.Second)
	if err != nil {
		t.Fatalf("dial after ShutdownSessions: %v", err)
	}
	if ep.WasShutDown(fresh) || ep.Conns() != 1 {
		t.Errorf("a new session is marked shut down, or not tracked (conns %d)", ep.Conns())
	}
	// A busy HTTP connection closed under its user goes back to the pool
	// no more; its user's Close forgets the mark.
	ep.PutIdle(busy, Pooled{})
	if got, _, _ := ep.GetIdleSince(); got != nil {
		t.Error("a connection ShutdownSessions closed was pooled")
	}
	ep.Close(session)
	if ep.WasShutDown(session) || ep.WasShutDown(busy) || len(ep.shut) != 0 {
		t.Errorf("marks left after the users closed their connections: %d", len(ep.shut))
	}
	if n := ep.CloseConns(); n != 1 || ep.WasShutDown(fresh) {
		t.Errorf("CloseConns closed %d, want 1, and marks nothing", n)
	}
	ep.Shutdown()
}

// TestFailuresMatchTheServer: an endpoint an apply made anew for a server
// (removed, then added back) counts as failed where the one it replaced
// failed; only HasExactly tells them apart.
func TestFailuresMatchTheServer(t *testing.T) {
	old, anew := New("web", "a", "127.0.0.1:1"), New("web", "a", "127.0.0.1:1")
	moved, other := New("web", "a", "127.0.0.1:2"), New("api", "a", "127.0.0.1:1")
	f := Failures{old}
	for _, tt := range []struct {
		name         string
		ep           *Endpoint
		has, exactly bool
	}{
		{"the endpoint that failed", old, true, true},
		{"one made anew for its server", anew, true, false},
		{"one of the same name at another address", moved, false, false},
		{"one of another cluster at its address", other, false, false},
	} {
		if got, gotExactly := f.Has(tt.ep), f.HasExactly(tt.ep); got != tt.has || gotExactly != tt.exactly {
			t.Errorf("%s: Has %v, HasExactly %v; want %v, %v", tt.name, got, gotExactly, tt.has, tt.exactly)
		}
	}
}

// TestDownMarks: an endpoint stays marked out for a picker while any
// reason marked for that picker stands, and a mark for a newer picker
// replaces the older's.
func TestDownMarks(t *testing.T) {
	e := New("web", "a", "127.0.0.1:1")
	check := func(what string, gen uint64, want bool) {
		t.Helper()
		if got := e.MarkedDown(gen); got != want {
			t.Errorf("%s: MarkedDown(%d) = %v, want %v", what, gen, got, want)
		}
	}
	check("new", 1, false)
	e.MarkDown(1, MarkChecks)
	e.MarkDown(1, MarkEjected)
	e.UnmarkDown(1, MarkEjected)
	check("checks still mark it", 1, true)
	e.UnmarkDown(1, MarkChecks)
	check("both reasons undone", 1, false)

	e.MarkDown(1, MarkChecks)
	e.MarkDown(2, MarkEjected)
	check("a newer picker's mark", 2, true)
	check("the older picker's", 1, false)
	e.UnmarkDown(1, MarkEjected)
	e.UnmarkDown(2, MarkChecks)
	check("undone for other pickers or reasons", 2, true)
	check("picker 0, which none is", 0, false)
}

// TestPoolKeepsBursts: connections that come back together past MaxIdle
// are all pooled, for the next burst; once they sat unused for IdleTrim,
// those past MaxIdle are closed as another comes back, the least recently
// used first.
func TestPoolKeepsBursts(t *testing.T) {
	ep := New("c", "e", listen(t))
	defer ep.Shutdown()
	conns := pooled(t, ep, MaxIdle+10)
	for i, c := range conns {
		if closed(c) {
			t.Fatalf("connection %d of %d closed when it came back", i+1, len(conns))
		}
	}

	// The 15 that came back first sat unused past IdleTrim.
	ep.mu.Lock()
	for i := range 15 {
		ep.idle[i].since = time.Now().Add(-IdleTrim - time.Second)
	}
	ep.mu.Unlock()
	fresh, _ := ep.Dial(context.Background(), time.Second)
	ep.PutIdle(fresh, Pooled{})
	for i, c := range conns[:15] {
		if want := i < 11; closed(c) != want {
			t.Errorf("connection %d, unused past IdleTrim: closed %v, want %v", i+1, closed(c), want)
		}
	}
	ep.mu.Lock()
	n := len(ep.idle)
	ep.mu.Unlock()
	if n != MaxIdle || ep.Conns() != MaxIdle {
		t.Errorf("pool of %d, %d connections open; want %d, %d", n, ep.Conns(), MaxIdle, MaxIdle)
	}
	if got, _, _ := ep.GetIdleSince(); got != fresh {
		t.Errorf("GetIdleSince did not return the connection that came back last")
	}
}

// TestPoolBoundsBursts: a pool holds MaxIdleBurst at most (the next one
// back is closed), and taking a connection from a pool past MaxIdle
// closes those that sat unused past IdleTrim too.
func TestPoolBoundsBursts(t *testing.T) {
	ep := New("c", "e", listen(t))
	defer ep.Shutdown()
	conns := pooled(t, ep, MaxIdleBurst)
	over := pooled(t, ep, 1)[0]
	if !closed(over) {
		t.Errorf("a connection back to a pool of %d was kept", MaxIdleBurst)
	}
	if closed(conns[0]) || closed(conns[MaxIdleBurst-1]) {
		t.Errorf("a connection of the full pool was closed")
	}

	ep.mu.Lock()
	for i := range 10 {
		ep.idle[i].since = time.Now().Add(-IdleTrim - time.Second)
	}
	ep.mu.Unlock()
	if got, _, _ := ep.GetIdleSince(); got != conns[MaxIdleBurst-1] {
		t.Errorf("GetIdleSince did not return the connection that came back last")
	}
	for i, c := range conns[:11] {
		if want := i < 10; closed(c) != want {
			t.Errorf("connection %d: closed %v, want %v", i+1, closed(c), want)
		}
	}
}

// TestTrimIdle: with nothing coming back or taken, TrimIdle closes the
// pooled connections that sat unused for MaxIdleAge, and past MaxIdle
// those that sat unused for IdleTrim, and keeps the rest.
func TestTrimIdle(t *testing.T) {
	ep := New("c", "e", listen(t))
	defer ep.Shutdown()
	conns := pooled(t, ep, MaxIdle+3)
	ep.mu.Lock()
	ep.idle[0].since = time.Now().Add(-MaxIdleAge - time.Second)
	for i := 1; i < 6; i++ {
		ep.idle[i].since = time.Now().Add(-IdleTrim - time.Second)
	}
	ep.mu.Unlock()
	ep.TrimIdle()
	// The one past MaxIdleAge, then two past IdleTrim, down to MaxIdle;
	// the other three past IdleTrim stay.
	for i, c := range conns[:7] {
		if want := i < 3; closed(c) != want {
			t.Errorf("connection %d: closed %v, want %v", i+1, closed(c), want)
		}
	}
	if n := ep.Conns(); n != MaxIdle {
		t.Errorf("%d connections open, want %d", n, MaxIdle)
	}
}

// pooled dials n connections to ep and gives each back to its pool
// (PutIdle), in order, and returns them.
func pooled(t *testing.T, ep *Endpoint, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := ep.Dial(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		ep.PutIdle(c, Pooled{})
	}
	return conns
}
