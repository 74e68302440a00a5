package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// ruleBackend is an HTTP server that answers with its name, says
// "Server: app/1.0" and counts the requests that reach it.
type ruleBackend struct {
	addr string
	hits atomic.Int32
}

func startRuleBackend(t *testing.T, name string) *ruleBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ruleBackend{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("Server", "app/1.0")
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// ruleClient is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is loopback on Linux), so that source
// rules can be tried on one machine. It does not follow redirects.
func ruleClient(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testTimeout}
	return &http.Client{
		Timeout:       testTimeout,
		Transport:     &http.Transport{DialContext: d.DialContext, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ruleAnswer is what a client saw.
type ruleAnswer struct {
	status     int
	body       string
	location   string
	server     string
	retryAfter string
}

func doFrom(t *testing.T, c *http.Client, method, url, host, agent string) ruleAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if agent != "" {
		req.Header.Set("User-Agent", agent)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return ruleAnswer{resp.StatusCode, string(body), resp.Header.Get("Location"), resp.Header.Get("Server"), resp.Header.Get("Retry-After")}
}

// passedBeforeLimit sends request i with do, from 0 on, until one gets a
// 429 with body, and returns how many passed before: each 200 from web,
// limit of them, or up to two more when the requests straddle the turn of
// a rate's period (the window slides, as HAProxy's rates do). The 429
// says when to come back: a Retry-After of a second up to two of the
// rate's periods.
func passedBeforeLimit(t *testing.T, limit int, period time.Duration, body string, do func(i int) ruleAnswer) int {
	t.Helper()
	passed := 0
	for ; passed < limit+3; passed++ {
		got := do(passed)
		if got.status == 429 {
			if got.body != body {
				t.Errorf("over the rate: %d %q, want 429 %q", got.status, got.body, body)
			}
			if s, err := strconv.Atoi(got.retryAfter); err != nil || s < 1 || time.Duration(s)*time.Second > 2*period {
				t.Errorf("over the rate: Retry-After %q, want whole seconds from 1 to %v", got.retryAfter, 2*period)
			}
			break
		}
		if got.status != 200 || got.body != "web" {
			t.Fatalf("request %d: %d %q, want 200 from web", passed+1, got.status, got.body)
		}
	}
	if passed < limit || passed > limit+2 {
		t.Fatalf("%d requests passed before a 429, want %d (or up to %d across a period's turn)", passed, limit, limit+2)
	}
	return passed
}

// TestACLExamples runs examples/acl.yaml as written, on loopback: only the
// addresses change (listeners on free ports, endpoints on test backends,
// and the documentation prefixes 192.0.2.0/24 and 198.51.100.7 of the
// blacklists become 127.0.2.0/24 and 127.0.100.7, where a test client can
// come from). Every seed example of DESIGN problem 5 is tried with real
// requests, and what the client sees is checked: which backend answered, or
// the status, body and Location of the proxy's own answer.
func TestACLExamples(t *testing.T) {
	raw, err := os.ReadFile("../examples/acl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	web, static, com, db := startRuleBackend(t, "web"), startRuleBackend(t, "static"), startRuleBackend(t, "com"), startRuleBackend(t, "db")
	public, admin, plain, mysql := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	doc := strings.NewReplacer(
		"127.0.0.1:8080", public, "127.0.0.1:8081", admin, "127.0.0.1:8082", plain, "127.0.0.1:3307", mysql,
		"127.0.0.1:9001", web.addr, "127.0.0.1:9002", static.addr, "127.0.0.1:9003", com.addr, "127.0.0.1:3306", db.addr,
		"192.0.2.0/24", "127.0.2.0/24", "198.51.100.7", "127.0.100.7",
	).Replace(string(raw))

	c := startCP(t, t.TempDir(), "")
	v := c.apply(t, doc)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	local := ruleClient("127.0.0.1")

	t.Run("routing by host and path", func(t *testing.T) {
		for _, tc := range []struct {
			path, host, want string
		}{
			{"/", "shop.example.com", "com"},         // .com hosts to one cluster
			{"/", "SHOP.EXAMPLE.COM:8080", "com"},    // whatever the case and port
			{"/", "example.org", "web"},              // the rest to the default
			{"/", "example.community", "web"},        // a suffix, not a substring
			{"/app.js?v=3", "example.com", "static"}, // static suffixes first
			{"/img/logo.svg", "example.org", "static"},
			{"/app.js.map", "example.org", "web"},
		} {
			got := doFrom(t, local, "GET", "http://"+public+tc.path, tc.host, "")
			if got.status != 200 || got.body != tc.want {
				t.Errorf("GET %s (Host %s): %d %q, want 200 from %s", tc.path, tc.host, got.status, got.body, tc.want)
			}
			if got.server != "" {
				t.Errorf("GET %s: Server %q reached the client (hide-server)", tc.path, got.server)
			}
		}
	})

	t.Run("source blacklist", func(t *testing.T) {
		before := web.hits.Load() + com.hits.Load() + static.hits.Load()
		for _, ip := range []string{"127.0.2.1", "127.0.2.254", "127.0.100.7"} {
			got := doFrom(t, ruleClient(ip), "GET", "http://"+public+"/", "shop.example.com", "")
			if got.status != 403 || got.body != "request denied\n" {
				t.Errorf("from %s: %d %q, want 403 request denied", ip, got.status, got.body)
			}
		}
		if got := doFrom(t, ruleClient("127.0.100.8"), "GET", "http://"+public+"/", "shop.example.com", ""); got.status != 200 || got.body != "com" {
			t.Errorf("from 127.0.100.8 (not listed): %d %q, want 200 from com", got.status, got.body)
		}
		if after := web.hits.Load() + com.hits.Load() + static.hits.Load(); after != before+1 {
			t.Errorf("%d requests reached a backend, want only the one not listed", after-before)
		}
	})

	t.Run("curl and wget denied", func(t *testing.T) {
		for _, agent := range []string{"curl/8.5.0", "Wget/1.21.4", "python-requests CURL"} {
			if got := doFrom(t, local, "GET", "http://"+public+"/", "example.org", agent); got.status != 403 || got.body != "request denied\n" {
				t.Errorf("User-Agent %s: %d %q, want 403", agent, got.status, got.body)
			}
		}
		if got := doFrom(t, local, "GET", "http://"+public+"/", "example.org", "Mozilla/5.0"); got.status != 200 || got.body != "web" {
			t.Errorf("a browser: %d %q, want 200 from web", got.status, got.body)
		}
	})

	t.Run("GET and HEAD only", func(t *testing.T) {
		for _, method := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
			if got := doFrom(t, local, method, "http://"+public+"/", "example.org", ""); got.status != 403 {
				t.Errorf("%s: %d %q, want 403", method, got.status, got.body)
			}
		}
		if got := doFrom(t, local, "HEAD", "http://"+public+"/", "example.org", ""); got.status != 200 {
			t.Errorf("HEAD: %d, want 200", got.status)
		}
	})

	t.Run("fixed response", func(t *testing.T) {
		before := web.hits.Load()
		if got := doFrom(t, local, "GET", "http://"+public+"/healthz", "example.org", ""); got.status != 200 || got.body != "ok\n" {
			t.Errorf("/healthz: %d %q, want 200 ok", got.status, got.body)
		}
		if web.hits.Load() != before {
			t.Errorf("/healthz reached the backend")
		}
	})

	t.Run("whitelist with deny-all", func(t *testing.T) {
		if got := doFrom(t, local, "GET", "http://"+admin+"/", "admin", ""); got.status != 200 || got.body != "web" {
			t.Errorf("from 127.0.0.1: %d %q, want 200 from web", got.status, got.body)
		}
		if got := doFrom(t, ruleClient("127.0.0.2"), "GET", "http://"+admin+"/", "admin", ""); got.status != 403 || got.body != "request denied\n" {
			t.Errorf("from 127.0.0.2: %d %q, want 403", got.status, got.body)
		}
	})

	t.Run("http to https", func(t *testing.T) {
		before := web.hits.Load()
		got := doFrom(t, local, "GET", "http://"+plain+"/login?next=%2Faccount", "shop.example.com", "")
		if got.status != 301 || got.location != "https://shop.example.com/login?next=%2Faccount" {
			t.Errorf("got %d Location %q, want 301 to https://shop.example.com/login?next=%%2Faccount", got.status, got.location)
		}
		if web.hits.Load() != before {
			t.Errorf("the redirected request reached the backend")
		}
	})

	t.Run("request rate per client", func(t *testing.T) {
		// 20 requests to /api/ within 10s pass; from then on, more are
		// over the rate. The window slides (as HAProxy's rates do), so
		// requests that straddle the turn of a period may let one or two
		// more through before the first 429.
		ip := ruleClient("127.0.0.3")
		before := web.hits.Load()
		passed := passedBeforeLimit(t, 20, 10*time.Second, "too many requests\n", func(int) ruleAnswer {
			return doFrom(t, ip, "GET", "http://"+public+"/api/orders", "example.org", "")
		})
		for i := range 10 { // denied requests count too
			if got := doFrom(t, ip, "GET", "http://"+public+"/api/orders", "example.org", ""); got.status != 429 {
				t.Fatalf("request %d over the rate: %d %q, want 429", passed+2+i, got.status, got.body)
			}
		}
		if n := web.hits.Load() - before; n != int32(passed) {
			t.Errorf("%d requests reached web, want the %d that passed", n, passed)
		}
		// Other paths, and other clients, are not limited.
		if got := doFrom(t, ip, "GET", "http://"+public+"/orders", "example.org", ""); got.status != 200 {
			t.Errorf("the limited client, outside /api/: %d %q, want 200", got.status, got.body)
		}
		if got := doFrom(t, ruleClient("127.0.0.4"), "GET", "http://"+public+"/api/orders", "example.org", ""); got.status != 200 || got.body != "web" {
			t.Errorf("another client: %d %q, want 200 from web", got.status, got.body)
		}
		// A new version of the listener's rules keeps the counts.
		waitVersion(t, dp, c.apply(t, strings.Replace(doc, "Cache-Control: no-store", "Cache-Control: no-cache", 1)))
		if got := doFrom(t, ip, "GET", "http://"+public+"/api/orders", "example.org", ""); got.status != 429 {
			t.Errorf("the limited client after an apply: %d %q, want 429 still", got.status, got.body)
		}
	})

	t.Run("request rate per API key", func(t *testing.T) {
		// 30 requests a minute per X-API-Key, whatever address they come
		// from; none without a key.
		partner := func(from, key string) ruleAnswer {
			t.Helper()
			req, err := http.NewRequest("GET", "http://"+public+"/partner/stock", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "example.org"
			if key != "" {
				req.Header.Set("X-API-Key", key)
			}
			resp, err := ruleClient(from).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return ruleAnswer{status: resp.StatusCode, body: string(body), retryAfter: resp.Header.Get("Retry-After")}
		}
		if got := partner("127.0.0.1", ""); got.status != 401 || got.body != "an API key is needed\n" {
			t.Errorf("without a key: %d %q, want 401 an API key is needed", got.status, got.body)
		}
		passedBeforeLimit(t, 30, time.Minute, "too many requests for this API key\n", func(i int) ruleAnswer {
			// Three addresses in turn, each far under api-rate's 20.
			return partner(fmt.Sprintf("127.0.0.%d", 21+i%3), "k1")
		})
		if got := partner("127.0.0.24", "k1"); got.status != 429 {
			t.Errorf("key k1 from a new address: %d %q, want 429", got.status, got.body)
		}
		if got := partner("127.0.0.21", "k2"); got.status != 200 || got.body != "web" {
			t.Errorf("key k2 from an address k1 used: %d %q, want 200 from web", got.status, got.body)
		}
	})

	t.Run("TCP listener denies a source", func(t *testing.T) {
		if body, err := tcpRequestFrom("127.0.0.1", mysql); err != nil || body != "db" {
			t.Fatalf("from 127.0.0.1: %q %v, want db", body, err)
		}
		before := db.hits.Load()
		for _, ip := range []string{"127.0.2.1", "127.0.2.200"} {
			body, err := tcpRequestFrom(ip, mysql)
			if err == nil || body != "" {
				t.Errorf("from %s: %q %v, want the connection closed with nothing", ip, body, err)
			}
		}
		if n := db.hits.Load() - before; n != 0 {
			t.Errorf("%d denied connections reached the backend", n)
		}
		// The control plane records them as denied by the rule, with no
		// endpoint.
		waitFor(t, "two denied connections in the records", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			resp, err := c.api.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: "node-1", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			denied := 0
			for _, r := range resp.GetRecords() {
				if r.GetListener() != "mysql" || !strings.HasPrefix(r.GetClientAddress(), "127.0.2.") {
					continue
				}
				if r.GetCloseReason() != sluicev1.CloseReason_CLOSE_REASON_DENIED || r.GetEndpoint() != "" || r.GetRule() != "blacklist" {
					t.Fatalf("record of a denied connection: %v, want reason DENIED by rule blacklist and no endpoint", r)
				}
				denied++
			}
			return denied == 2
		})
	})

	t.Run("TCP connection rate per client", func(t *testing.T) {
		before := db.hits.Load()
		for i := range 10 {
			if body, err := tcpRequestFrom("127.0.0.5", mysql); err != nil || body != "db" {
				t.Fatalf("connection %d from 127.0.0.5: %q %v, want db", i+1, body, err)
			}
		}
		if body, err := tcpRequestFrom("127.0.0.5", mysql); err == nil || body != "" {
			t.Errorf("the 11th connection within a minute: %q %v, want it closed with nothing", body, err)
		}
		if body, err := tcpRequestFrom("127.0.0.6", mysql); err != nil || body != "db" {
			t.Errorf("another client: %q %v, want db", body, err)
		}
		if n := db.hits.Load() - before; n != 11 {
			t.Errorf("%d connections reached db, want 11: 10 from 127.0.0.5, 1 from 127.0.0.6", n)
		}
	})
}

// tcpRequestFrom is tcpGet from the loopback address ip. A connection closed
// without an answer is an error, and the body is empty.
func tcpRequestFrom(ip, addr string) (string, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testTimeout}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n"); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return "", err
	}
	raw, err := io.ReadAll(c)
	if len(raw) == 0 {
		if err == nil {
			err = io.EOF
		}
		return "", err
	}
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", errors.New("bad response: " + string(raw))
	}
	return body, nil
}
