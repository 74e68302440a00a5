package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/persist"
)

// cookieBackend answers "NAME|COOKIE", COOKIE being the Cookie field it
// received, and sets a SRV cookie of its own, which the proxy must remove.
func cookieBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "SRV=from-the-app")
		w.Header().Add("Set-Cookie", "session=abc; Path=/")
		io.WriteString(w, name+"|"+r.Header.Get("Cookie"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// answer is one response as the client saw it.
type answer struct {
	backend, cookie string   // which backend, and the Cookie field it got
	setCookie       []string // Set-Cookie fields
	cacheControl    []string
}

func cookieGet(t *testing.T, client *http.Client, url, cookie string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	b, c, _ := strings.Cut(string(body), "|")
	return answer{backend: b, cookie: c, setCookie: resp.Header.Values("Set-Cookie"), cacheControl: resp.Header.Values("Cache-Control")}
}

// TestCookiePersistence: HAProxy's "cookie SRV insert indirect nocache
// httponly secure": the first answer sets a cookie naming its endpoint
// (not its address), requests bringing it return to that endpoint without
// the application seeing it, and an endpoint that goes away redispatches.
func TestCookiePersistence(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	addrs := map[string]string{}
	for _, n := range []string{"a", "b", "c", "sorry"} {
		addrs[n] = cookieBackend(t, n)
	}
	listen := freeAddr(t)
	snap := func(states map[string]string) string {
		var eps strings.Builder
		for _, n := range []string{"a", "b", "c"} {
			extra := ""
			if n == "a" {
				extra = ", cookie: web-a"
			}
			if s := states[n]; s != "" {
				extra += ", state: " + s
			}
			fmt.Fprintf(&eps, "      - { name: %s, address: %s%s }\n", n, addrs[n], extra)
		}
		return fmt.Sprintf(`
clusters:
  - name: web
    cookie: { name: SRV, indirect: true, nocache: true, httponly: true, secure: true, max_age: 1h }
    endpoints:
%s      - { name: sorry, address: %s, backup: true }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, eps.String(), addrs["sorry"], listen)
	}
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, snap(nil)))
	client := &http.Client{Timeout: testTimeout}
	url := "http://" + listen + "/"

	// First visit: one cookie, exactly as configured, and the app's own
	// SRV cookie gone while its other cookies pass.
	first := cookieGet(t, client, url, "")
	value := persist.CookieValue("web", first.backend, map[string]string{"a": "web-a"}[first.backend])
	want := []string{"session=abc; Path=/", "SRV=" + value + "; Path=/; Max-Age=3600; HttpOnly; Secure"}
	if strings.Join(first.setCookie, "\n") != strings.Join(want, "\n") {
		t.Errorf("first answer (from %s) Set-Cookie = %q, want %q", first.backend, first.setCookie, want)
	}
	if len(first.cacheControl) != 1 || first.cacheControl[0] != "private" {
		t.Errorf("Cache-Control = %q, want [private] (nocache)", first.cacheControl)
	}
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		if strings.Contains(value, port) || strings.Contains(value, "127.0.0.1") {
			t.Errorf("cookie value %q leaks the address %s", value, a)
		}
	}

	// With the cookie: always the same endpoint, no new cookie, and the
	// application never sees SRV (indirect) but keeps the rest.
	for range 20 {
		got := cookieGet(t, client, url, "theme=dark; SRV="+value+"; lang=en")
		if got.backend != first.backend {
			t.Fatalf("request with SRV=%s answered by %s, want %s", value, got.backend, first.backend)
		}
		if got.cookie != "theme=dark; lang=en" {
			t.Fatalf("backend saw Cookie %q, want %q", got.cookie, "theme=dark; lang=en")
		}
		if len(got.setCookie) != 1 || len(got.cacheControl) != 0 {
			t.Fatalf("client with a valid cookie got Set-Cookie %q Cache-Control %q; want only the app's session cookie", got.setCookie, got.cacheControl)
		}
	}

	// An unknown value is balanced and corrected.
	got := cookieGet(t, client, url, "SRV=bogus")
	if len(got.setCookie) != 2 || got.cookie != "" {
		t.Errorf("bogus cookie: Set-Cookie %q, backend saw %q; want a new SRV cookie and no SRV upstream", got.setCookie, got.cookie)
	}

	// The endpoint is disabled: its clients are redispatched and get a
	// cookie for their new endpoint.
	waitVersion(t, dp, c.apply(t, snap(map[string]string{first.backend: "DISABLED"})))
	got = cookieGet(t, client, url, "SRV="+value)
	if got.backend == first.backend || got.backend == "sorry" {
		t.Errorf("with %s disabled, its cookie went to %s; want another primary", first.backend, got.backend)
	}
	if len(got.setCookie) != 2 || !strings.HasPrefix(got.setCookie[1], "SRV=") || strings.HasPrefix(got.setCookie[1], "SRV="+value) {
		t.Errorf("redispatched answer Set-Cookie = %q, want a cookie for %s", got.setCookie, got.backend)
	}

	// Every primary disabled: the backup serves, and is never recorded.
	all := map[string]string{"a": "DISABLED", "b": "DISABLED", "c": "DISABLED"}
	waitVersion(t, dp, c.apply(t, snap(all)))
	got = cookieGet(t, client, url, "")
	if got.backend != "sorry" || len(got.setCookie) != 1 {
		t.Errorf("all primaries disabled: answered by %s with Set-Cookie %q; want sorry, and no SRV cookie", got.backend, got.setCookie)
	}

	// Primaries back: a cookie naming the backup does not keep a client
	// on it.
	waitVersion(t, dp, c.apply(t, snap(nil)))
	backupCookie := "SRV=" + persist.CookieValue("web", "sorry", "")
	for range 10 {
		if got := cookieGet(t, client, url, backupCookie); got.backend == "sorry" {
			t.Fatalf("a primary is up, yet the backup's cookie reached the backup")
		}
	}
}

// TestCookieNotIndirect: without indirect the application sees the
// persistence cookie too.
func TestCookieNotIndirect(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, batch := cookieBackend(t, "a"), cookieBackend(t, "b"), cookieBackend(t, "batch")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    cookie: { name: SRV, path: /shop, domain: example.com, same_site: LAX }
    endpoints:
      - { name: a, address: %s, cookie: s1 }
      - { name: b, address: %s, cookie: s2 }
      - { name: batch, address: %s, non_stick: true }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, a, b, batch, listen)))
	client := &http.Client{Timeout: testTimeout}
	got := cookieGet(t, client, "http://"+listen+"/", "SRV=s2")
	if got.backend != "b" || got.cookie != "SRV=s2" {
		t.Errorf("SRV=s2: answered by %s, backend saw %q; want b, SRV=s2", got.backend, got.cookie)
	}
	// Round robin over a, b and batch: a and b get their cookie, the
	// non_stick batch endpoint none.
	seen := map[string]bool{}
	for range 3 {
		got = cookieGet(t, client, "http://"+listen+"/", "")
		seen[got.backend] = true
		want := []string{"session=abc; Path=/", "SRV=" + map[string]string{"a": "s1", "b": "s2"}[got.backend] + "; Path=/shop; Domain=example.com; SameSite=Lax"}
		if got.backend == "batch" {
			want = want[:1]
		}
		if strings.Join(got.setCookie, "\n") != strings.Join(want, "\n") || len(got.cacheControl) != 0 {
			t.Errorf("answer from %s: Set-Cookie %q Cache-Control %q, want %q and none", got.backend, got.setCookie, got.cacheControl, want)
		}
	}
	if len(seen) != 3 {
		t.Errorf("3 requests reached %v; want a, b and batch in turn", seen)
	}
}

// TestStickTable: "stick on src": a client address keeps its endpoint on
// HTTP and TCP listeners although the policy is round robin, and moves
// when that endpoint is disabled.
func TestStickTable(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	snap := func(stateA string) string {
		return fmt.Sprintf(`
clusters:
  - name: web
    stick: { on: SOURCE_IP, expire: 10m }
    endpoints:
      - { name: a, address: %s, state: %s }
      - { name: b, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, a.addr, stateA, b.addr, httpAddr, tcpAddr)
	}
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, snap("ACTIVE")))

	home := map[int]string{}
	for i := 1; i <= 6; i++ {
		client, dial := clientFrom(i)
		for j := range 6 {
			var got string
			var err error
			if j%2 == 0 {
				got, err = get(client, "http://"+httpAddr+"/")
			} else {
				got, err = tcpGetFrom(dial, tcpAddr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				home[i] = got
			} else if got != home[i] {
				t.Fatalf("client 127.0.0.%d went to %s, then to %s", i, home[i], got)
			}
		}
	}
	// Round robin over new clients spreads them.
	if spread := map[string]bool{home[1]: true, home[2]: true}; len(spread) != 2 {
		t.Errorf("clients 1 and 2 both stuck to %s; round robin should have spread them", home[1])
	}

	waitVersion(t, dp, c.apply(t, snap("DISABLED")))
	for i := 1; i <= 6; i++ {
		client, _ := clientFrom(i)
		if got, err := get(client, "http://"+httpAddr+"/"); err != nil || got != "b" {
			t.Errorf("with a disabled, client %d went to %q (%v); want b", i, got, err)
		}
	}
	// Clients moved off a stay on b when a is back.
	waitVersion(t, dp, c.apply(t, snap("ACTIVE")))
	for i := 1; i <= 6; i++ {
		client, _ := clientFrom(i)
		if got, err := get(client, "http://"+httpAddr+"/"); err != nil || got != "b" {
			t.Errorf("a back: client %d went to %q (%v); want b, where it is stuck now", i, got, err)
		}
	}
}

// clientFrom returns an HTTP client and a dialer whose connections come
// from 127.0.0.i.
func clientFrom(i int) (*http.Client, *net.Dialer) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))}, Timeout: testTimeout}
	return &http.Client{Timeout: testTimeout, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}, d
}

func tcpGetFrom(d *net.Dialer, addr string) (string, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	raw, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	_, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	return body, nil
}

// TestQueueing: with every endpoint at max_conn, a request waits for a
// free slot and is served when one frees; beyond max_queue it gets 503 at
// once, and a request that waits out queue_timeout gets 503.
func TestQueueing(t *testing.T) {
	t.Run("served when a slot frees", func(t *testing.T) {
		f := startPolicy(t, "    queue_timeout: 10s", []int{1}, []int{1}, "a")
		a := f.backends[0]
		go get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/slow")
		waitFor(t, "a to hold the slow request", func() bool { return a.held.Load() == 1 })
		done := make(chan string, 1)
		go func() {
			got, err := get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/")
			if err != nil {
				got = err.Error()
			}
			done <- got
		}()
		select {
		case got := <-done:
			t.Fatalf("answered %q while a was at max_conn; want it to wait", got)
		case <-time.After(300 * time.Millisecond):
		}
		close(a.release)
		if got := <-done; got != "a" {
			t.Errorf("queued request: %q, want a once its slot freed", got)
		}
	})
	t.Run("503 when the queue is full or the wait ends", func(t *testing.T) {
		const wait = 2 * time.Second
		f := startPolicy(t, "    max_queue: 1\n    queue_timeout: 2s", []int{1}, []int{1}, "a")
		a := f.backends[0]
		defer close(a.release)
		go get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/slow")
		waitFor(t, "a to hold the slow request", func() bool { return a.held.Load() == 1 })
		type result struct {
			err  error
			took time.Duration
		}
		queued := make(chan result, 1)
		go func() {
			start := time.Now()
			_, err := get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/")
			queued <- result{err, time.Since(start)}
		}()
		waitFor(t, "the request to take the one place in the queue", func() bool { return f.queued() == 1 })
		_, err := get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/")
		if err == nil || !strings.HasPrefix(err.Error(), "status 503") {
			t.Errorf("with the queue full: %v; want 503", err)
		}
		// At once: while the queued request still waits out its 2s.
		select {
		case r := <-queued:
			t.Errorf("with the queue full, the 503 came only after the queued request's answer (%v after %v)", r.err, r.took)
			queued <- r
		default:
		}
		r := <-queued
		if r.err == nil || !strings.HasPrefix(r.err.Error(), "status 503") || r.took < wait-50*time.Millisecond {
			t.Errorf("queued request: %v after %v; want 503 after queue_timeout %v", r.err, r.took, wait)
		}
	})
}
