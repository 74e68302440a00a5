package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// holdSlot opens a TCP session through the listener at addr and waits
// until it holds the one slot of endpoint ep of cluster name: the work
// queued behind it waits as long as the session stays open.
func holdSlot(t *testing.T, n *Node, addr, name string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitUntil(t, "the held slot", func() bool {
		return (*n.current.Load())[name].members[0].Endpoint.Inflight() == 1
	})
	return c
}

// getAsync GETs url and sends what came back: the body, or the error.
func getAsync(url string) <-chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 2 * testTimeout}).Get(url)
		if err != nil {
			out <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- resp.Status + " " + string(b)
	}()
	return out
}

// answerOf waits for what getAsync sends; after testTimeout it fails the
// test, saying what the request was still waiting for.
func answerOf(t *testing.T, answer <-chan string, waiting string) string {
	t.Helper()
	select {
	case got := <-answer:
		return got
	case <-time.After(testTimeout):
		t.Fatalf("the queued request is still waiting %s", waiting)
		return ""
	}
}

// TestQueuedWorkServedByNewerSnapshot: a request queued for a full
// cluster is served as soon as a snapshot gives the cluster room, by
// raising max_conn or adding an endpoint, as HAProxy dequeues onto new
// capacity, not left to time out against the picker it queued with.
func TestQueuedWorkServedByNewerSnapshot(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	const tmpl = `
clusters:
  - { name: full, queue_timeout: 60s, endpoints: [{ name: a, address: "%s", max_conn: %d }%s] }
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: full }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: full }
`
	for _, tt := range []struct {
		name    string
		maxConn int
		more    string
		want    string
	}{
		{"max_conn raised", 2, "", "200 OK a"},
		{"endpoint added", 1, `, { name: b, address: "` + b + `" }`, "200 OK b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t)
			hold, web := freeAddr(t), freeAddr(t)
			if err := n.Apply("1", parse(t, tmpl, a, 1, "", hold, web)); err != nil {
				t.Fatal(err)
			}
			holdSlot(t, n, hold, "full")
			answer := getAsync("http://" + web + "/")
			waitUntil(t, "the request queued", func() bool { return (*n.current.Load())["full"].queue.len() == 1 })
			if err := n.Apply("2", parse(t, tmpl, a, tt.maxConn, tt.more, hold, web)); err != nil {
				t.Fatal(err)
			}
			if got := answerOf(t, answer, "after the snapshot gave the cluster room"); got != tt.want {
				t.Errorf("queued request: %q, want %q", got, tt.want)
			}
		})
	}
}

// TestQueuedWorkAnsweredWhenQueueGoes: a request queued for a full
// cluster gets its answer, 503, as soon as a snapshot turns the cluster's
// queueing off (queue_timeout 0s), as new work for the full cluster does,
// or removes the cluster; it does not wait out the queue_timeout it
// queued with.
func TestQueuedWorkAnsweredWhenQueueGoes(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	const tmpl = `
clusters:
  - { name: other, endpoints: [{ name: b, address: "%s" }] }
%s
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: %s }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: %s }
`
	full := func(timeout string) string {
		// drain_timeout keeps the held session open when the cluster is
		// removed: only the apply can answer the queued request.
		return `  - { name: full, queue_timeout: ` + timeout + `, drain_timeout: 60s, endpoints: [{ name: a, address: "` + a + `", max_conn: 1 }] }`
	}
	for _, tt := range []struct {
		name          string
		next          string // the clusters the second snapshot adds to other
		hold, web     string // their default clusters
		want, wantNew string
	}{
		{"queueing turned off", full("0s"), "full", "full", "503 Service Unavailable", "503 Service Unavailable"},
		{"cluster removed", "", "other", "other", "503 Service Unavailable", "200 OK b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t)
			hold, web := freeAddr(t), freeAddr(t)
			if err := n.Apply("1", parse(t, tmpl, b, full("60s"), hold, "full", web, "full")); err != nil {
				t.Fatal(err)
			}
			holdSlot(t, n, hold, "full")
			answer := getAsync("http://" + web + "/")
			waitUntil(t, "the request queued", func() bool { return (*n.current.Load())["full"].queue.len() == 1 })
			if err := n.Apply("2", parse(t, tmpl, b, tt.next, hold, tt.hold, web, tt.web)); err != nil {
				t.Fatal(err)
			}
			if got := answerOf(t, answer, "after the snapshot"); !strings.HasPrefix(got, tt.want) {
				t.Errorf("queued request: %q, want %s", got, tt.want)
			}
			if got := <-getAsync("http://" + web + "/"); !strings.HasPrefix(got, tt.wantNew) {
				t.Errorf("new request: %q, want %s", got, tt.wantNew)
			}
		})
	}
}

// TestQueuedWorkWaitsThroughApplies: snapshots that replace a full
// cluster but keep its queue, applied one after another while a request
// waits, leave the request in the line: it is served once the slot frees,
// never answered 503 as if its cluster's queue had gone.
func TestQueuedWorkWaitsThroughApplies(t *testing.T) {
	n := newNode(t)
	a := backend(t, "a")
	hold, web := freeAddr(t), freeAddr(t)
	const tmpl = `
clusters:
  - { name: full, queue_timeout: 60s, endpoints: [{ name: a, address: "%s", max_conn: 1, weight: %d }] }
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: full }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: full }
`
	if err := n.Apply("1", parse(t, tmpl, a, 1, hold, web)); err != nil {
		t.Fatal(err)
	}
	session := holdSlot(t, n, hold, "full")
	answer := getAsync("http://" + web + "/")
	waitUntil(t, "the request queued", func() bool { return (*n.current.Load())["full"].queue.len() == 1 })
	for i := range 200 {
		if err := n.Apply(fmt.Sprint(i+2), parse(t, tmpl, a, 2+i%2, hold, web)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-answer:
			t.Fatalf("the queued request was answered %q after %d applies, with the slot still held", got, i+1)
		default:
		}
	}
	session.Close()
	if got := answerOf(t, answer, "after the slot freed"); got != "200 OK a" {
		t.Errorf("queued request: %q, want 200 OK a", got)
	}
}

// TestRefusedApplyKeepsMaxQueue: a snapshot refused as a whole (here for a
// port in use) leaves the running cluster's max_queue as it was: three
// requests still queue behind a held slot, where the refused bound of one
// would have answered two of them 503 at once.
func TestRefusedApplyKeepsMaxQueue(t *testing.T) {
	n := newNode(t)
	a := backend(t, "a")
	hold, web := freeAddr(t), freeAddr(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	const tmpl = `
clusters:
  - { name: full, queue_timeout: 60s, max_queue: %d, endpoints: [{ name: a, address: "%s", max_conn: 1 }] }
listeners:
  - { name: hold, address: "%s", protocol: TCP, default_cluster: full }
  - { name: web, address: "%s", protocol: HTTP, default_cluster: full }
%s`
	if err := n.Apply("1", parse(t, tmpl, 10, a, hold, web, "")); err != nil {
		t.Fatal(err)
	}
	clash := `  - { name: clash, address: "` + taken.Addr().String() + `", protocol: TCP, default_cluster: full }`
	if err := n.Apply("2", parse(t, tmpl, 1, a, hold, web, clash)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Apply = %v, want address already in use", err)
	}
	session := holdSlot(t, n, hold, "full")
	var answers []<-chan string
	for range 3 {
		answers = append(answers, getAsync("http://"+web+"/"))
	}
	waitUntil(t, "three requests queued", func() bool { return (*n.current.Load())["full"].queue.len() == 3 })
	session.Close()
	for i, answer := range answers {
		if got := answerOf(t, answer, "after the slot freed"); got != "200 OK a" {
			t.Errorf("request %d: %q, want 200 OK a", i, got)
		}
	}
}

// TestDrainEndsWithTheSnapshot: an endpoint drained, then made active again
// before its drain_timeout, keeps the sessions it had (HAProxy's drain, then
// ready); and an endpoint removed by a snapshot that also sets its
// cluster's drain_timeout drains by that timeout, not the one it ran with.
func TestDrainEndsWithTheSnapshot(t *testing.T) {
	const tmpl = `
clusters:
  - { name: tcp, %s endpoints: [{ name: a, address: "%s" %s }, { name: b, address: "%s" }] }
listeners:
  - { name: l, address: "%s", protocol: TCP, default_cluster: tcp }
`
	t.Run("active again", func(t *testing.T) {
		n := newNode(t)
		a, b, addr := startEcho(t), startEcho(t), freeAddr(t)
		const drain = "drain_timeout: 1s,"
		if err := n.Apply("1", parse(t, tmpl, drain, a.addr, ", weight: 1", b.addr, addr)); err != nil {
			t.Fatal(err)
		}
		// Round robin: one session goes to a, the other to b.
		sessions := []echoSession{openEchoSession(t, addr), openEchoSession(t, addr)}
		if a.open.Load() != 1 {
			t.Fatalf("%d sessions open to a, want 1", a.open.Load())
		}
		if err := n.Apply("2", parse(t, tmpl, drain, a.addr, ", state: DRAINING", b.addr, addr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := n.Apply("3", parse(t, tmpl, drain, a.addr, ", weight: 1", b.addr, addr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // past the drain_timeout
		for i, c := range sessions {
			if !c.alive() {
				t.Errorf("session %d: closed, want it open: its endpoint is active again", i)
			}
		}
		// The endpoint takes new sessions again: one of the next two.
		openEchoSession(t, addr)
		openEchoSession(t, addr)
		if a.open.Load() != 2 {
			t.Errorf("two new sessions: %d open to a, want 2", a.open.Load())
		}
	})
	t.Run("the new drain_timeout", func(t *testing.T) {
		n := newNode(t)
		a, b, addr := startEcho(t), startEcho(t), freeAddr(t)
		if err := n.Apply("1", parse(t, tmpl, "", a.addr, "", b.addr, addr)); err != nil {
			t.Fatal(err)
		}
		// Round robin sends one of two sessions to a: c is that one.
		var c net.Conn
		for c == nil {
			s := openEchoSession(t, addr)
			if a.open.Load() == 1 {
				c = s.Conn
			} else if b.open.Load() > 1 {
				t.Fatalf("two sessions to b, none to a")
			}
		}
		if err := n.Apply("2", parse(t, tmpl, "drain_timeout: 60s,", a.addr, ", state: DRAINING", b.addr, addr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if !echoed(c) {
			t.Error("the session to the drained endpoint closed at once, want it kept for the snapshot's drain_timeout of 60s")
		}
	})
}
