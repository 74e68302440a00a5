package node

import (
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

// TestRemovedListenerStatus: a listener the snapshot removes stays in
// Listeners, marked draining with the time its grace ends, while its
// sessions run on, and its meter stays among ListenerMeters, so that the
// status page, /status and sluice_listener_connections show what still
// drains. It leaves both when its last session ends. Added back on its
// address while it drains, it is one listener again, counting both, and
// removed again, one draining listener.
func TestRemovedListenerStatus(t *testing.T) {
	const grace = time.Minute // the sessions end before: the test closes them
	n := New(Options{Logger: slog.New(slog.DiscardHandler), ListenerGrace: grace})
	t.Cleanup(n.Close)
	be := backend(t, "a")
	web, db := freeAddr(t), freeAddr(t)
	const cluster = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web }
`
	const withDB = cluster + `  - { name: db, address: "%s", protocol: TCP, default_cluster: web }
`
	if err := n.Apply("1", parse(t, withDB, be, web, db)); err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	clients := []net.Conn{dial(), dial()}
	waitUntil(t, "two sessions on db", func() bool { return n.Connections().Open == 2 })

	before := time.Now()
	if err := n.Apply("2", parse(t, cluster, be, web)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := n.Listeners()
	if len(got) != 2 {
		t.Fatalf("after db's removal: Listeners = %+v, want public and db draining", got)
	}
	d := got[0]
	if ends := d.GraceEnds; ends.Before(before.Add(grace)) || ends.After(after.Add(grace)) {
		t.Errorf("db's grace ends at %v, want %v after the apply", ends, grace)
	}
	d.GraceEnds = time.Time{}
	want := []ListenerStatus{
		{Name: "db", Address: db, Protocol: "TCP", Conns: 2, Draining: true},
		{Name: "public", Address: web, Protocol: "HTTP"},
	}
	if got[0] = d; !slices.Equal(got, want) {
		t.Errorf("after db's removal: Listeners = %+v, want %+v", got, want)
	}
	if m := meterNamed(n, "db"); m == nil || m.Counts().Active != 2 {
		t.Errorf("db's meter among ListenerMeters: %v, want it, with 2 active", m)
	}

	clients[0].Close()
	want[0].Conns = 1
	waitUntil(t, "db to count one session", func() bool {
		got := n.Listeners()
		if len(got) > 0 {
			got[0].GraceEnds = time.Time{}
		}
		return slices.Equal(got, want)
	})

	// Added back on its address: one listener, its drained session counted
	// with one of its own.
	if err := n.Apply("3", parse(t, withDB, be, web, db)); err != nil {
		t.Fatal(err)
	}
	if got := n.Listeners(); len(got) != 2 || got[0].Draining || got[0].Conns != 1 {
		t.Errorf("db added back: Listeners = %+v, want db running, counting the session still draining", got)
	}
	clients = append(clients, dial())
	want[0].Conns = 2
	want[0].Draining = false
	waitUntil(t, "db to count the new session beside the draining one", func() bool { return slices.Equal(n.Listeners(), want) })

	// Removed again: one entry for the address, whose grace ends when the
	// later of its two drains does.
	before = time.Now()
	if err := n.Apply("4", parse(t, cluster, be, web)); err != nil {
		t.Fatal(err)
	}
	want[0].Draining = true
	got = n.Listeners()
	if len(got) > 0 {
		if got[0].GraceEnds.Before(before.Add(grace)) {
			t.Errorf("db removed again: its grace ends at %v, want the second removal's, %v after %v", got[0].GraceEnds, grace, before)
		}
		got[0].GraceEnds = time.Time{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("db removed again: Listeners = %+v, want %+v", got, want)
	}
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
