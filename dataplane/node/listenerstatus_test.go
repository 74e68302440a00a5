package node

import (
	"net"
	"slices"
	"testing"
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
