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
	idle := func() { t.Helper(); waitIdle(t, n) }
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

// TestCookieClientWaitsForItsFullEndpoint: the same for cookie
// persistence: a request whose cookie names a full endpoint waits for it
// in the queue; without a queue it is served elsewhere and given no new
// cookie, so the client's next request goes back.
func TestCookieClientWaitsForItsFullEndpoint(t *testing.T) {
	n := newNode(t)
	// a answers /hold once the test lets it go.
	arrived, letGo := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-letGo
		}
		io.WriteString(w, "a")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a, b := ln.Addr().String(), backend(t, "b")
	addr := freeAddr(t)
	const tmpl = `
clusters:
  - name: web
    cookie: { name: SRV }
    queue_timeout: %s
    endpoints: [{ name: a, address: "%s", cookie: a, max_conn: 1 }, { name: b, address: "%s", cookie: b, max_conn: 1 }]
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: web }
`
	if err := n.Apply("1", parse(t, tmpl, "5s", a, b, addr)); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}
	// get asks path with cookie SRV=a and returns who answered and any
	// cookie set.
	get := func(path string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Cookie", "SRV=a")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return "", ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), resp.Header.Get("Set-Cookie")
	}
	// hold takes a's one slot until the returned func lets it go.
	hold := func() (release func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); get("/hold") }()
		<-arrived
		return func() { letGo <- struct{}{}; <-done; waitIdle(t, n) }
	}

	release := hold()
	type answer struct{ body, setCookie string }
	got := make(chan answer, 1)
	go func() { body, sc := get("/"); got <- answer{body, sc} }()
	select {
	case ans := <-got:
		t.Fatalf("with a full, the client whose cookie names it got %q at once; want it to wait for a", ans.body)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case ans := <-got:
		if ans.body != "a" || ans.setCookie != "" {
			t.Errorf("once a had room: %q with Set-Cookie %q; want a, and no new cookie", ans.body, ans.setCookie)
		}
	case <-time.After(testTimeout):
		t.Fatal("the waiting client was not served")
	}

	if err := n.Apply("2", parse(t, tmpl, "0s", a, b, addr)); err != nil {
		t.Fatal(err)
	}
	release = hold()
	if body, sc := get("/"); body != "b" || sc != "" {
		t.Errorf("with a full and no queue: %q with Set-Cookie %q; want b, and the cookie left naming a", body, sc)
	}
	release()
	if body, _ := get("/"); body != "a" {
		t.Errorf("after a had room again: %q; want a", body)
	}
}

// waitIdle waits until no work holds a slot of any of n's endpoints: a
// client that read its answer may be a moment ahead of the node.
func waitIdle(t *testing.T, n *Node) {
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
