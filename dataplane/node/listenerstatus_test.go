package node

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
)

// TestListenersStatus: Listeners names each listener of the running
// snapshot with its address, protocol and the client connections open on
// it now; a listener renamed on the same address shows its new name.
func TestListenersStatus(t *testing.T) {
	n := newNode(t)
	be := backend(t, "a")
	web, db := freeAddr(t), freeAddr(t)
	const tmpl = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: %s, address: "%s", protocol: HTTP, default_cluster: web }
  - { name: db, address: "%s", protocol: TCP, default_cluster: web }
`
	if err := n.Apply("1", parse(t, tmpl, be, "public", web, db)); err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", db)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	want := []ListenerStatus{
		{Name: "db", Address: db, Protocol: "TCP", Conns: 2},
		{Name: "public", Address: web, Protocol: "HTTP", Conns: 0},
	}
	waitUntil(t, "two connections on db", func() bool { return slices.Equal(n.Listeners(), want) })

	if err := n.Apply("2", parse(t, tmpl, be, "edge", web, db)); err != nil {
		t.Fatal(err)
	}
	want[1].Name = "edge"
	if got := n.Listeners(); !slices.Equal(got, want) {
		t.Errorf("after renaming public to edge: Listeners = %+v, want %+v", got, want)
	}
}

// publicOnly is a snapshot of cluster web, endpoint a at the first %s, and
// the HTTP listener public at the second; publicAndDB adds the TCP
// listener db at a third.
const (
	publicOnly = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web }
`
	publicAndDB = publicOnly + `  - { name: db, address: "%s", protocol: TCP, default_cluster: web }
`
)

// TestRemovedListenerStatus: a listener the snapshot removes stays in
// Listeners, marked draining with the time its grace ends, while its
// sessions run on, and its meter stays among ListenerMeters, so that the
// status page, /status and sluice_listener_connections show what still
// drains. It leaves both when its last session ends. Added back on its
// address while it drains, it is one listener again, counting both, with
// the one draining and when its grace ends, on the same meter; removed
// again, one draining listener.
func TestRemovedListenerStatus(t *testing.T) {
	const grace = time.Minute // the sessions end before: the test closes them
	n := New(Options{Logger: slog.New(slog.DiscardHandler), ListenerGrace: grace})
	t.Cleanup(n.Close)
	be := backend(t, "a")
	web, db := freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, publicAndDB, be, web, db)); err != nil {
		t.Fatal(err)
	}
	clients := []net.Conn{dialListener(t, db, false), dialListener(t, db, false)}
	waitUntil(t, "two sessions on db", func() bool {
		m := meterNamed(n, "db")
		return n.Connections().Open == 2 && m != nil && m.Counts().Active == 2
	})

	// ends is when the apply between before and after ends db's drain.
	ends := func(before, after time.Time) (time.Time, time.Time) { return before.Add(grace), after.Add(grace) }
	// check compares Listeners, but for db's GraceEnds, which must fall in
	// [from, to] (both zero: unset).
	check := func(when string, want []ListenerStatus, from, to time.Time) {
		t.Helper()
		got := n.Listeners()
		if len(got) > 0 && got[0].Name == "db" {
			if g := got[0].GraceEnds; g.Before(from) || g.After(to) {
				t.Errorf("%s: db's grace ends at %v, want from %v to %v", when, g, from, to)
			}
			got[0].GraceEnds = time.Time{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Listeners = %+v, want %+v", when, got, want)
		}
	}
	active := func(when string, want int64) {
		t.Helper()
		m := meterNamed(n, "db")
		if m == nil {
			t.Errorf("%s: no meter of db among ListenerMeters", when)
		} else if got := m.Counts().Active; got != want {
			t.Errorf("%s: db's meter counts %d active, want %d", when, got, want)
		}
	}

	before := time.Now()
	if err := n.Apply("2", parse(t, publicOnly, be, web)); err != nil {
		t.Fatal(err)
	}
	from, to := ends(before, time.Now())
	want := []ListenerStatus{
		{Name: "db", Address: db, Protocol: "TCP", Conns: 2, DrainingConns: 2, Draining: true},
		{Name: "public", Address: web, Protocol: "HTTP"},
	}
	check("after db's removal", want, from, to)
	active("after db's removal", 2)

	clients[0].Close()
	want[0].Conns, want[0].DrainingConns = 1, 1
	waitUntil(t, "db to count one session", func() bool {
		got := n.Listeners()
		return len(got) == 2 && got[0].Conns == 1
	})
	check("after a session ended", want, from, to)

	// Added back on its address: one listener, counting its draining
	// session with its own, on the same meter.
	if err := n.Apply("3", parse(t, publicAndDB, be, web, db)); err != nil {
		t.Fatal(err)
	}
	want[0].Draining = false
	check("db added back", want, from, to)
	active("db added back", 1)
	clients = append(clients, dialListener(t, db, false))
	want[0].Conns = 2
	// The session is in the listener's set once accepted, and in its
	// meter once its goroutine runs: wait for both.
	waitUntil(t, "db to count the new session beside the draining one", func() bool {
		got, m := n.Listeners(), meterNamed(n, "db")
		return len(got) == 2 && got[0].Conns == 2 && m != nil && m.Counts().Active == 2
	})
	check("a new session on db", want, from, to)
	active("a new session on db", 2)

	// Removed again: one entry for the address, whose grace ends when the
	// later of its two drains does.
	before = time.Now()
	if err := n.Apply("4", parse(t, publicOnly, be, web)); err != nil {
		t.Fatal(err)
	}
	from, to = ends(before, time.Now())
	want[0].Draining, want[0].DrainingConns = true, 2
	check("db removed again", want, from, to)
	clients[1].Close()
	clients[2].Close()
	waitUntil(t, "db to leave the status once its sessions ended", func() bool {
		return slices.Equal(n.Listeners(), want[1:]) && meterNamed(n, "db") == nil
	})
}

// meterNamed is n's listener meter of that name, or nil.
func meterNamed(n *Node, name string) *meter.Listener {
	for _, m := range n.ListenerMeters() {
		if m.Name() == name {
			return m
		}
	}
	return nil
}

// TestNodeDrainStatus: once the node drains, every connection still open
// counts as draining, until the drain's deadline, which also cuts short
// the grace of a listener removed before it.
func TestNodeDrainStatus(t *testing.T) {
	n := New(Options{Logger: slog.New(slog.DiscardHandler), ListenerGrace: time.Hour})
	t.Cleanup(n.Close)
	be := backend(t, "a")
	web, db, cache := freeAddr(t), freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, publicAndDB+`  - { name: cache, address: "%s", protocol: TCP, default_cluster: web }
`, be, web, db, cache)); err != nil {
		t.Fatal(err)
	}
	dialListener(t, db, false)
	dialListener(t, cache, false)
	waitUntil(t, "a session on db and on cache", func() bool { return n.Connections().Open == 2 })
	if err := n.Apply("2", parse(t, publicAndDB, be, web, db)); err != nil { // cache drains for an hour
		t.Fatal(err)
	}

	deadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- n.Drain(ctx) }()
	waitUntil(t, "the node to drain", n.Draining)
	want := []ListenerStatus{
		{Name: "cache", Address: cache, Protocol: "TCP", Conns: 1, DrainingConns: 1, GraceEnds: deadline, Draining: true},
		{Name: "db", Address: db, Protocol: "TCP", Conns: 1, DrainingConns: 1, GraceEnds: deadline},
		{Name: "public", Address: web, Protocol: "HTTP"},
	}
	// Drain sets its deadline under the lock Listeners takes, with Draining.
	if got := n.Listeners(); !slices.EqualFunc(got, want, sameStatus) {
		t.Errorf("Listeners = %+v, want %+v", got, want)
	}
	cancel()
	if err := <-drained; err == nil {
		t.Error("Drain returned nil with two sessions open; want ctx's error")
	}
}

// sameStatus compares two ListenerStatus, their GraceEnds as instants.
func sameStatus(a, b ListenerStatus) bool {
	ends := a.GraceEnds.Equal(b.GraceEnds)
	a.GraceEnds, b.GraceEnds = time.Time{}, time.Time{}
	return ends && a == b
}
