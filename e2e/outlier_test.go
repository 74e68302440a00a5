package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/dataplane/node"
)

// statusBackend answers every request with its name and the status in
// status, and counts the requests it got.
type statusBackend struct {
	addr   string
	status atomic.Int32
	hits   atomic.Int32
}

func startStatusBackend(t *testing.T, name string, status int) *statusBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &statusBackend{addr: ln.Addr().String()}
	b.status.Store(int32(status))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.WriteHeader(int(b.status.Load()))
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// whoAnswers makes one request and returns which backend answered, with what
// status, and when the answer was in.
func whoAnswers(t *testing.T, client *http.Client, url string) (string, int, time.Time) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp.StatusCode, time.Now()
}

// endpointStatus returns what the node says of endpoint name.
func endpointStatus(t *testing.T, dp *dataplane.Dataplane, name string) node.EndpointStatus {
	t.Helper()
	for _, st := range dp.Node.Endpoints() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("node has no endpoint %s", name)
	return node.EndpointStatus{}
}

// TestOutlierEjects5xx: of three endpoints, the one answering 500 is
// ejected after consecutive_5xx answers in a row and gets no traffic; it
// comes back by itself when base_ejection_time is up; failing again at
// once, it is ejected for twice as long.
func TestOutlierEjects5xx(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startStatusBackend(t, "a", 200), startStatusBackend(t, "b", 200)
	bad := startStatusBackend(t, "bad", 500)
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	const base = time.Second
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 1s, max_ejection_percent: 34 }
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
      - { name: bad, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a.addr, b.addr, bad.addr, listen)))
	url := "http://" + listen + "/"
	client := &http.Client{Timeout: testTimeout}
	defer client.CloseIdleConnections()

	// eject sends requests until the node ejected bad for the n-th time,
	// which its 500s in a row (3) must do within 30 requests (round robin
	// over 3), and returns bad's status then.
	eject := func(n int, length time.Duration) node.EndpointStatus {
		t.Helper()
		from := bad.hits.Load()
		for i := 0; endpointStatus(t, dp, "bad").Ejections < uint64(n); i++ {
			if i == 30 {
				t.Fatalf("bad not ejected (ejection %d) after 30 requests, %d of them answered by it", n, bad.hits.Load()-from)
			}
			if name, status, _ := whoAnswers(t, client, url); (name == "bad") != (status == 500) {
				t.Fatalf("%s answered %d", name, status)
			}
		}
		st := endpointStatus(t, dp, "bad")
		detail := fmt.Sprintf("3 consecutive 5xx responses, ejected for %v (ejection %d)", length, n)
		if st.Health != "EJECTED" || st.Detail != detail || st.Ejections != uint64(n) {
			t.Fatalf("after more 500s from bad: %+v; want EJECTED, %q, %d ejections", st, detail, n)
		}
		return st
	}
	// out checks that bad gets no traffic while it is ejected, from the
	// ejection on: the node picks around it before its picker is rebuilt.
	out := func(st node.EndpointStatus, length time.Duration) {
		t.Helper()
		for i := range 20 {
			name, status, at := whoAnswers(t, client, url)
			if at.After(st.Since.Add(length)) {
				break // back by now
			}
			if name == "bad" || status != 200 {
				t.Errorf("request %d, %v into bad's %v ejection: %s answered %d", i, at.Sub(st.Since), length, name, status)
			}
		}
	}
	// back waits until bad answers a request again, and returns how long
	// after its ejection.
	back := func(st node.EndpointStatus) time.Duration {
		t.Helper()
		var at time.Time
		waitFor(t, "bad back in traffic", func() bool {
			name, _, when := whoAnswers(t, client, url)
			at = when
			return name == "bad"
		})
		return at.Sub(st.Since)
	}

	st := eject(1, base)
	out(st, base)
	first := back(st)
	if first < base || first > base+3*time.Second {
		t.Errorf("bad back %v after its first ejection, want base_ejection_time (%v) and a little", first, base)
	}
	if st := endpointStatus(t, dp, "bad"); st.Health != "UP" {
		t.Errorf("bad back in traffic but status %s", st.Health)
	}

	// Still failing, at once: the second ejection in a row lasts 2x.
	st = eject(2, 2*base)
	out(st, 2*base)
	second := back(st)
	if second < 2*base || second > 2*base+3*time.Second {
		t.Errorf("bad back %v after its second ejection, want 2 x base_ejection_time (%v) and a little", second, 2*base)
	}
	t.Logf("ejections lasted %v, then %v", first, second)
}

// TestOutlierMaxEjectionPercent: with two of three endpoints answering 500
// and max_ejection_percent 34, only one is ejected; the other keeps its
// share of the traffic.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	good := startStatusBackend(t, "good", 200)
	bad1, bad2 := startStatusBackend(t, "bad1", 500), startStatusBackend(t, "bad2", 500)
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 30s, max_ejection_percent: 34 }
    endpoints:
      - { name: good, address: %s }
      - { name: bad1, address: %s }
      - { name: bad2, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, good.addr, bad1.addr, bad2.addr, listen)))
	url := "http://" + listen + "/"
	client := &http.Client{Timeout: testTimeout}
	defer client.CloseIdleConnections()

	for range 9 { // 3 each
		whoAnswers(t, client, url)
	}
	ejected, kept := "bad1", bad2
	if endpointStatus(t, dp, "bad2").Health == "EJECTED" {
		ejected, kept = "bad2", bad1
	}
	gone := bad1
	if kept == bad1 {
		gone = bad2
	}
	waitFor(t, ejected+" out of traffic", func() bool {
		from := gone.hits.Load()
		for range 3 {
			whoAnswers(t, client, url)
		}
		return gone.hits.Load() == from
	})
	from := kept.hits.Load()
	got := map[string]int{}
	for range 30 {
		name, _, _ := whoAnswers(t, client, url)
		got[name]++
	}
	if got[ejected] != 0 || got["good"] < 10 || kept.hits.Load()-from < 10 {
		t.Errorf("30 requests with %s ejected: %v; want none to it, the rest shared by the other two", ejected, got)
	}
	var states []string
	for _, st := range dp.Node.Endpoints() {
		states = append(states, st.Name+" "+st.Health)
	}
	want := "bad1 UP, bad2 EJECTED, good UP"
	if ejected == "bad1" {
		want = "bad1 EJECTED, bad2 UP, good UP"
	}
	if got := strings.Join(states, ", "); got != want {
		t.Errorf("endpoints: %s; want %s (a second ejection would be 67%% > 34%%)", got, want)
	}
}

// TestOutlierConnectFailuresTCP: behind a TCP listener, an endpoint whose
// port is closed is ejected after consecutive_connect_failures; every
// session meanwhile succeeds on the others by retrying, and once it is
// out no session tries it any more.
func TestOutlierConnectFailuresTCP(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	dead, listen := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: db
    outlier_detection: { consecutive_connect_failures: 2, base_ejection_time: 30s }
    endpoints:
      - { name: a, address: %s }
      - { name: dead, address: %s }
      - { name: b, address: %s }
listeners:
  - { name: db, address: %s, protocol: TCP, default_cluster: db }
`, a.addr, dead, b.addr, listen)))
	session := func(i int) {
		t.Helper()
		if got, err := tcpGet(listen); err != nil || (got != "a" && got != "b") {
			t.Fatalf("session %d: %q, %v; want an answer from a or b", i, got, err)
		}
	}
	for i := 0; endpointStatus(t, dp, "dead").Health != "EJECTED"; i++ {
		if i == 12 {
			t.Fatalf("dead not ejected after 12 sessions: %+v", endpointStatus(t, dp, "dead"))
		}
		session(i)
	}
	st := endpointStatus(t, dp, "dead")
	if want := "2 consecutive connect failures, ejected for 30s (ejection 1)"; st.Detail != want {
		t.Errorf("detail %q, want %q", st.Detail, want)
	}
	waitFor(t, "dead out of picking", func() bool {
		from := endpointStatus(t, dp, "dead").Stats.ConnectErrors
		for i := range 3 {
			session(i)
		}
		return endpointStatus(t, dp, "dead").Stats.ConnectErrors == from
	})
	from := endpointStatus(t, dp, "dead").Stats
	for i := range 20 {
		session(i)
	}
	if now := endpointStatus(t, dp, "dead").Stats; now.ConnectErrors != from.ConnectErrors || now.Requests != from.Requests {
		t.Errorf("20 sessions with dead ejected: it got %d more sessions, %d more failed connects; want none",
			now.Requests-from.Requests, now.ConnectErrors-from.ConnectErrors)
	}
}
