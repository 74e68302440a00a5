package node

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// sickableBackend answers name to every request but /health, which it
// answers 503 while sick is set.
func sickableBackend(t *testing.T, name string, sick *atomic.Bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// fetch GETs url through client, with the cookie SRV=cookie unless cookie
// is "", and returns the answer's body and its Set-Cookie field.
func fetch(client *http.Client, url, cookie string) (body, setCookie string, err error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", "", err
	}
	if cookie != "" {
		req.Header.Set("Cookie", "SRV="+cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.Header.Get("Set-Cookie"), err
}

// holdRebuilds puts the node's batched picker rebuilds off for the rest of
// the test, as when a health change comes within rebuildEvery of the last
// rebuild (on a node of many checked endpoints, most of the time): the
// pickers that changes call for are built only at the next rebuild.
func holdRebuilds(n *Node) {
	n.rebuildMu.Lock()
	n.lastRebuild = time.Now().Add(time.Hour)
	n.rebuildMu.Unlock()
}

// waitTold waits until the node has been told that checks marked a down
// (down) or up again: Endpoints shows the checker's state a moment before
// the checker tells the node (healthChanged).
func waitTold(t *testing.T, n *Node, down bool) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("the node told of a (down %v)", down), func() bool {
		return (*n.current.Load())["web"].picker.Load().markedDown(member(t, n, "a")) == down
	})
}

// sickableCluster applies a cluster web of two endpoints checked over
// HTTP, a (which answers its checks 503 while sick is set) and b, with
// cookies a and b and extra in the cluster's spec, behind an HTTP
// listener at the address it returns; and waits for both to be up.
func sickableCluster(t *testing.T, n *Node, extra string, sick *atomic.Bool) (addr string) {
	t.Helper()
	addr = freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    %s
    health_check: { interval: 100ms, fall: 1, rise: 1, http: { path: /health } }
    endpoints:
      - { name: a, address: "%s", cookie: a }
      - { name: b, address: "%s", cookie: b }
listeners:
  - { name: http, address: "%s", protocol: HTTP, default_cluster: web }
`, extra, sickableBackend(t, "a", sick), backend(t, "b"), addr)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a and b up", func() bool {
		return status(t, n, "web", "a").Health == "UP" && status(t, n, "web", "b").Health == "UP"
	})
	return addr
}

// TestDownEndpointPickedAroundBeforeRebuild: once checks mark an endpoint
// down, no request goes to it, even before the batched rebuild of its
// cluster's picker (rebuildEvery) comes: HAProxy takes a server out of
// rotation as it marks it DOWN. One that checks mark up again before that
// rebuild is picked again at once, the picker never having left it out.
func TestDownEndpointPickedAroundBeforeRebuild(t *testing.T) {
	for _, policy := range []string{"ROUND_ROBIN", "LEAST_CONN", "HASH\n    hash: { key: PATH, method: MAGLEV }"} {
		t.Run(strings.Fields(policy)[0], func(t *testing.T) {
			n := newNode(t)
			var sick atomic.Bool
			addr := sickableCluster(t, n, "lb_policy: "+policy, &sick)
			client := &http.Client{Timeout: testTimeout}
			t.Cleanup(client.CloseIdleConnections)
			// answers counts who answered 40 requests, each for a path
			// of its own: a hash of the path spreads them.
			answers := func() map[string]int {
				t.Helper()
				got := map[string]int{}
				for i := range 40 {
					body, _, err := fetch(client, fmt.Sprintf("http://%s/%d", addr, i), "")
					if err != nil {
						t.Fatal(err)
					}
					got[body]++
				}
				return got
			}
			if got := answers(); got["a"] == 0 || got["b"] == 0 {
				t.Fatalf("both up: %v, want a and b to answer", got)
			}

			holdRebuilds(n)
			sick.Store(true)
			waitUntil(t, "a down", func() bool { return status(t, n, "web", "a").Health == "DOWN" })
			waitTold(t, n, true)
			if got := answers(); fmt.Sprint(got) != "map[b:40]" {
				t.Errorf("a down, its picker not rebuilt yet: %v, want all 40 answered by b", got)
			}

			sick.Store(false)
			waitUntil(t, "a up again", func() bool { return status(t, n, "web", "a").Health == "UP" })
			waitTold(t, n, false)
			if got := answers(); got["a"] == 0 || got["b"] == 0 {
				t.Errorf("a up again, no rebuild since it went down: %v, want a and b to answer", got)
			}
		})
	}
}

// TestDownEndpointLetsGoOfPersistentClientsBeforeRebuild: a client whose
// cookie names an endpoint checks just marked down is served by another
// and given that one's cookie, before the batched rebuild as after it.
func TestDownEndpointLetsGoOfPersistentClientsBeforeRebuild(t *testing.T) {
	n := newNode(t)
	var sick atomic.Bool
	addr := sickableCluster(t, n, "cookie: { name: SRV }", &sick)
	client := &http.Client{Timeout: testTimeout}
	t.Cleanup(client.CloseIdleConnections)
	// withCookieOfA is who answered a request sent with a's cookie, and
	// the cookie it was given.
	withCookieOfA := func() (answer, cookie string) {
		t.Helper()
		answer, cookie, err := fetch(client, "http://"+addr+"/", "a")
		if err != nil {
			t.Fatal(err)
		}
		return answer, cookie
	}
	for range 5 {
		if got, _ := withCookieOfA(); got != "a" {
			t.Fatalf("a up: the cookie of a answered by %q", got)
		}
	}
	holdRebuilds(n)
	sick.Store(true)
	waitUntil(t, "a down", func() bool { return status(t, n, "web", "a").Health == "DOWN" })
	waitTold(t, n, true)
	for range 5 {
		if got, cookie := withCookieOfA(); got != "b" || !strings.HasPrefix(cookie, "SRV=b;") {
			t.Errorf("a down, its picker not rebuilt yet: the cookie of a answered by %q with Set-Cookie %q, want b with SRV=b", got, cookie)
		}
	}
}

// TestQueuedPersistentClientLeavesEndpointMarkedDown: a client waiting in
// the queue for the full endpoint its cookie names, which checks then mark
// down, is balanced to another endpoint when the queue next wakes it, not
// sent to the endpoint known down, before the batched rebuild as after it.
func TestQueuedPersistentClientLeavesEndpointMarkedDown(t *testing.T) {
	n := newNode(t)
	var sick atomic.Bool
	arrived, letGo := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health" && sick.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case r.URL.Path == "/hold":
			arrived <- struct{}{}
			<-letGo
		}
		io.WriteString(w, "a")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    cookie: { name: SRV }
    queue_timeout: 5s
    health_check: { interval: 100ms, fall: 1, rise: 1, http: { path: /health } }
    endpoints: [{ name: a, address: "%s", cookie: a, max_conn: 1 }, { name: b, address: "%s", cookie: b, max_conn: 1 }]
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: web }
`, ln.Addr().String(), backend(t, "b"), addr)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a and b up", func() bool {
		return status(t, n, "web", "a").Health == "UP" && status(t, n, "web", "b").Health == "UP"
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}
	type answer struct{ body, setCookie string }
	get := func(path string, got chan<- answer) {
		body, setCookie, err := fetch(client, "http://"+addr+path, "a")
		if err != nil {
			t.Error(err)
		}
		got <- answer{body, setCookie}
	}
	held, queued := make(chan answer, 1), make(chan answer, 1)
	go get("/hold", held)
	<-arrived // a's one slot is taken
	go get("/", queued)
	q := (*n.current.Load())["web"].queue
	waitUntil(t, "the second client queued for a", func() bool { return q.len() == 1 })

	holdRebuilds(n)
	sick.Store(true)
	waitUntil(t, "a down", func() bool { return status(t, n, "web", "a").Health == "DOWN" })
	waitTold(t, n, true)
	close(letGo) // a's slot frees: the queue wakes its client
	if ans := <-held; ans.body != "a" {
		t.Fatalf("the held request: %q, want a", ans.body)
	}
	select {
	case ans := <-queued:
		if ans.body != "b" || !strings.HasPrefix(ans.setCookie, "SRV=b;") {
			t.Errorf("queued for a, which went down: %q with Set-Cookie %q, want b with SRV=b", ans.body, ans.setCookie)
		}
	case <-time.After(testTimeout):
		t.Fatal("the queued client was not served")
	}
}

// ejectingNode is a node running cluster web with outlier detection
// (ejection after 3 5xx in a row, for a minute): a, which the tests
// eject, and second, a flow mapping of one more endpoint.
func ejectingNode(t *testing.T, second string) *Node {
	t.Helper()
	n := newNode(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 1m }
    endpoints:
      - { name: a, address: 127.0.0.1:1 }
      - %s
`, second)); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEjectedEndpointPickedAroundBeforeRebuild: an endpoint outlier
// detection ejects takes no more work from then on, before the batched
// rebuild of its picker as after it; back from its ejection before that
// rebuild, it takes work again at once.
func TestEjectedEndpointPickedAroundBeforeRebuild(t *testing.T) {
	n := ejectingNode(t, "{ name: b, address: 127.0.0.1:2 }")
	// The ejection's end comes when the test says.
	j := (*n.current.Load())["web"].outlier
	var end func()
	j.mu.Lock()
	j.afterFunc = func(_ time.Duration, f func()) func() bool { end = f; return func() bool { return true } }
	j.mu.Unlock()

	holdRebuilds(n)
	for range 3 {
		member(t, n, "a").Responded(500)
	}
	if st := statusOf(n, "a"); st.Health != "EJECTED" {
		t.Fatalf("a after 3 5xx: %+v, want EJECTED", st)
	}
	if got := shares(t, n, "web", 30); fmt.Sprint(got) != "map[b:30]" {
		t.Errorf("a ejected, its picker not rebuilt yet: %v, want all 30 to b", got)
	}
	end()
	if st := statusOf(n, "a"); st.Health != "UP" {
		t.Fatalf("a after its ejection ended: %+v, want UP", st)
	}
	if got := shares(t, n, "web", 30); got["a"] != 15 || got["b"] != 15 {
		t.Errorf("a back, no rebuild since it was ejected: %v, want 15 each", got)
	}
}

// TestBackupTakesOverAtOnceWhenLastPrimaryGoesOut: when checks mark the
// last primary down, or outlier detection ejects it, the backup takes the
// work at once: only a rebuild of the picker brings it in, and that one
// does not wait for the batched rebuild.
func TestBackupTakesOverAtOnceWhenLastPrimaryGoesOut(t *testing.T) {
	t.Run("checks", func(t *testing.T) {
		n := newNode(t)
		var sick atomic.Bool
		addr := freeAddr(t)
		if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 1, rise: 1, http: { path: /health } }
    endpoints:
      - { name: a, address: "%s" }
      - { name: s, address: "%s", backup: true }
listeners:
  - { name: http, address: "%s", protocol: HTTP, default_cluster: web }
`, sickableBackend(t, "a", &sick), backend(t, "s"), addr)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "a and s up", func() bool {
			return status(t, n, "web", "a").Health == "UP" && status(t, n, "web", "s").Health == "UP"
		})
		holdRebuilds(n)
		sick.Store(true)
		waitUntil(t, "a down", func() bool { return status(t, n, "web", "a").Health == "DOWN" })
		// Told, the node rebuilds the picker at once: from then on no pick
		// chooses a.
		waitUntil(t, "a picker without a", func() bool { return shares(t, n, "web", 1)["a"] == 0 })
		client := &http.Client{Timeout: testTimeout}
		t.Cleanup(client.CloseIdleConnections)
		for range 10 {
			body, _, err := fetch(client, "http://"+addr+"/", "")
			if err != nil {
				t.Fatal(err)
			}
			if body != "s" {
				t.Fatalf("the only primary down: answered by %q, want the backup s", body)
			}
		}
	})
	t.Run("ejection", func(t *testing.T) {
		n := ejectingNode(t, "{ name: s, address: 127.0.0.1:2, backup: true }")
		holdRebuilds(n)
		for range 3 {
			member(t, n, "a").Responded(500)
		}
		// The rebuild runs beside the request that ejected a.
		waitUntil(t, "the backup s in use", func() bool { return shares(t, n, "web", 1)["s"] == 1 })
		if got := shares(t, n, "web", 30); fmt.Sprint(got) != "map[s:30]" {
			t.Errorf("the only primary ejected: %v, want all 30 to the backup s", got)
		}
	})
}

// TestEjectionDuringRebuildIsPickedAround: an ejection that comes while a
// picker rebuild is under way, after the rebuild read the ejections, is
// marked for the picker that rebuild makes, not only for the one it
// replaces. The ejected endpoint takes no more work, and a backup takes
// over at once if it was the last primary, without the batched rebuild.
func TestEjectionDuringRebuildIsPickedAround(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second string // the endpoint beside a, which takes all the work
		other  string // its name
		// told: the node hears of the ejection as it happens, and marks
		// the running picker, which the rebuild then replaces. Without
		// it, the ejection is only found by the rebuild looking again.
		told bool
	}{
		{"two primaries", "{ name: b, address: 127.0.0.1:2 }", "b", true},
		{"the last primary", "{ name: s, address: 127.0.0.1:2, backup: true }", "s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := ejectingNode(t, tc.second)
			holdRebuilds(n)
			c := (*n.current.Load())["web"]
			j := c.outlier
			once := false
			j.mu.Lock()
			if !tc.told {
				j.changed = func(string, *upstream.Endpoint, bool) {}
			}
			j.read = func() {
				if once {
					return
				}
				once = true
				for range 3 {
					member(t, n, "a").Responded(500)
				}
			}
			j.mu.Unlock()
			c.rebuild(n.checker.State)
			if st := statusOf(n, "a"); st.Health != "EJECTED" {
				t.Fatalf("a after 3 5xx: %+v, want EJECTED", st)
			}
			// A backup comes in with a rebuild beside the test.
			waitUntil(t, tc.other+" picked", func() bool { return shares(t, n, "web", 1)[tc.other] == 1 })
			if got, want := shares(t, n, "web", 30), map[string]int{tc.other: 30}; !maps.Equal(got, want) {
				t.Errorf("a ejected during a rebuild: %v, want %v", got, want)
			}
		})
	}
}

// markBox is a running picker's box over n endpoints, as mark sees it.
func markBox(n int) *pickerBox {
	set := make(lb.Set, n)
	for i := range set {
		set[i] = lb.Member{Endpoint: upstream.New("web", fmt.Sprint(i), fmt.Sprintf("127.0.0.1:%d", i+1)), Weight: 1}
	}
	return &pickerBox{set: set, eligible: set.Eligible(), gen: boxGens.Add(1)}
}

// TestAllMarked: the scan for a member left starts where the last one
// found one, and still finds a member left before it.
func TestAllMarked(t *testing.T) {
	b := markBox(5)
	ep := func(i int) *upstream.Endpoint { return b.eligible[i].Endpoint }
	for _, i := range []int{2, 0, 4, 1} {
		ep(i).MarkDown(b.gen, upstream.MarkChecks)
		if b.allMarked() {
			t.Fatalf("after marking %d: all marked, though 3 is not", i)
		}
	}
	ep(3).MarkDown(b.gen, upstream.MarkEjected)
	if !b.allMarked() {
		t.Fatal("every member marked: not all marked")
	}
	ep(0).UnmarkDown(b.gen, upstream.MarkChecks)
	if b.allMarked() {
		t.Fatal("0 unmarked, behind where the last scan stopped: all marked")
	}
	ep(0).MarkDown(b.gen+1, upstream.MarkChecks) // for another picker
	if b.allMarked() {
		t.Fatal("0 marked for another picker: all marked")
	}
}

// BenchmarkMarkMassFailure is a rack going down under the batched
// rebuild: each of a cluster's 10,000 members marked out in turn, each
// mark followed by the scan for a member left.
func BenchmarkMarkMassFailure(b *testing.B) {
	box := markBox(10000)
	for b.Loop() {
		box.gen = boxGens.Add(1)
		box.left.Store(0)
		for i := range box.eligible {
			box.eligible[i].Endpoint.MarkDown(box.gen, upstream.MarkChecks)
			box.allMarked()
		}
	}
}
