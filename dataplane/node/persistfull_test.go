package node

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestStuckClientWaitsForItsFullEndpoint: a client stuck to an endpoint at
// its max_conn waits in the cluster's queue for that endpoint, as HAProxy
// queues persistent work on its server, rather than go to another and
// lose its place for good. Without a queue it is served elsewhere that
// once and stays stuck to its endpoint.
func TestStuckClientWaitsForItsFullEndpoint(t *testing.T) {
	n := newNode(t)
	a, heldA := namedHoldingBackend(t, "a")
	b, heldB := namedHoldingBackend(t, "b")
	held := map[string]func(){"a": heldA, "b": heldB}
	addr := freeAddr(t)
	const tmpl = `
clusters:
  - name: db
    lb_policy: LEAST_CONN
    stick: { on: SOURCE_IP }
    queue_timeout: %s
    endpoints: [{ name: a, address: "%s", max_conn: 1 }, { name: b, address: "%s", max_conn: 1 }]
listeners:
  - { name: db, address: "%s", protocol: TCP, default_cluster: db }
`
	if err := n.Apply("1", parse(t, tmpl, "5s", a, b, addr)); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}
	get := func() string {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	// idle waits until no session holds a slot of any endpoint: a client
	// that read its answer may be a moment ahead of the node.
	idle := func() {
		t.Helper()
		for deadline := time.Now().Add(testTimeout); ; time.Sleep(5 * time.Millisecond) {
			busy := false
			for _, e := range n.Endpoints() {
				busy = busy || e.Inflight > 0
			}
			if !busy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the endpoints' slots were not released")
			}
		}
	}
	// hold takes the one slot of the endpoint the client is stuck to.
	hold := func(stuck string) (release func()) {
		t.Helper()
		idle()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
		held[stuck]()
		return func() { c.Close() }
	}
	stuck := get()
	other := map[string]string{"a": "b", "b": "a"}[stuck]

	release := hold(stuck)
	got := make(chan string, 1)
	go func() { got <- get() }()
	select {
	case body := <-got:
		t.Fatalf("with %s full, the client stuck to it got %q at once; want it to wait for %s", stuck, body, stuck)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case body := <-got:
		if body != stuck {
			t.Errorf("once %s had room, the waiting client got %q; want %s", stuck, body, stuck)
		}
	case <-time.After(testTimeout):
		t.Fatal("the waiting client was not served")
	}

	// Without a queue: served elsewhere that once, still stuck.
	if err := n.Apply("2", parse(t, tmpl, "0s", a, b, addr)); err != nil {
		t.Fatal(err)
	}
	release = hold(stuck)
	if body := get(); body != other {
		t.Errorf("with %s full and no queue: got %q, want %s", stuck, body, other)
	}
	release()
	idle()
	if body := get(); body != stuck {
		t.Errorf("after %s had room again: got %q; want the client still stuck to it", stuck, body)
	}
}
