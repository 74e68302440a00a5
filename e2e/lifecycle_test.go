package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newConns makes requests with a keep-alive Go client and counts the
// connections it had to open, failing on any error a user would see.
func newConns(t *testing.T, url string, requests int, every time.Duration) int {
	t.Helper()
	client := &http.Client{Timeout: testTimeout}
	defer client.CloseIdleConnections()
	var opened atomic.Int32
	for i := range requests {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				opened.Add(1)
			}
		}}
		req, _ := http.NewRequest("GET", url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		time.Sleep(every)
	}
	return int(opened.Load())
}

// TestConnectionLimits is DESIGN problem 3 for HTTP listeners: a keep-alive
// client is made to reconnect by max_requests_per_connection and
// max_connection_age, gracefully: the Go client sees no error.
func TestConnectionLimits(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a := startBackend(t, "a")
	byCount, byAge := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: by-count, address: %s, protocol: HTTP, default_cluster: web, http: { max_requests_per_connection: 5 } }
  - { name: by-age, address: %s, protocol: HTTP, default_cluster: web, http: { max_connection_age: 300ms } }
`, a.addr, byCount, byAge)))

	if n := newConns(t, "http://"+byCount+"/", 20, 0); n != 4 {
		t.Errorf("20 requests with max_requests_per_connection 5 used %d connections, want 4", n)
	}
	// 1.2s of requests every 50ms (more on a slow machine): a new
	// connection at least every 300ms, and not before.
	start := time.Now()
	n := newConns(t, "http://"+byAge+"/", 24, 50*time.Millisecond)
	took := time.Since(start)
	if most := int(took/(300*time.Millisecond)) + 2; n < 3 || n > most {
		t.Errorf("%v of requests with max_connection_age 300ms used %d connections, want 3 to %d", took.Round(time.Millisecond), n, most)
	}
}

// TestErrorPages: the proxy's own 503 and 502 are replaced by the
// listener's pages (httpproxy's tests check that answers from endpoints
// are never replaced).
func TestErrorPages(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a := startBackend(t, "a")
	listen := freeAddr(t)
	dead := freeAddr(t) // nothing listens: connects are refused
	snap := func(stateA string) string {
		return fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s, state: %s }]
  - name: gone
    endpoints: [{ name: x, address: %s }]
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http:
      error_pages:
        - { status: 503, body: "<h1>Back soon</h1>\n" }
        - { status: 502, redirect: "https://status.example.com/", redirect_code: 307 }
`, a.addr, stateA, dead, listen)
	}
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, snap("DISABLED")))
	client := &http.Client{Timeout: testTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "<h1>Back soon</h1>\n" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("no endpoint: %d %q %q; want 503, the page, text/html", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// A connect failure answers the redirect.
	waitVersion(t, dp, c.apply(t, strings.Replace(snap("ACTIVE"), "default_cluster: web", "default_cluster: gone", 1)))
	resp, err = client.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "https://status.example.com/" {
		t.Errorf("connect refused: %d Location %q; want 307 to the status page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestRetryOnConnectFailure: a request or session whose endpoint refuses
// the connection is sent to another endpoint (retries, default 3), even
// under a hash policy that keeps choosing the dead one for its key; with
// retries: 0 it gets 502.
func TestRetryOnConnectFailure(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a := startBackend(t, "a")
	dead := freeAddr(t)
	rr, hash, none, tcp := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	eps := fmt.Sprintf("[{ name: dead, address: %s }, { name: a, address: %s }]", dead, a.addr)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: rr, endpoints: %[1]s }
  - { name: hash, lb_policy: HASH, hash: { key: URL_PARAM, name: k, method: MAGLEV }, endpoints: %[1]s }
  - { name: none, retries: 0, endpoints: %[1]s }
listeners:
  - { name: rr, address: %[2]s, protocol: HTTP, default_cluster: rr }
  - { name: hash, address: %[3]s, protocol: HTTP, default_cluster: hash }
  - { name: none, address: %[4]s, protocol: HTTP, default_cluster: none }
  - { name: tcp, address: %[5]s, protocol: TCP, default_cluster: rr }
`, eps, rr, hash, none, tcp)))
	client := &http.Client{Timeout: testTimeout}
	for i := range 10 {
		if got, err := get(client, "http://"+rr+"/"); err != nil || got != "a" {
			t.Errorf("round robin, request %d: %q, %v; want a", i, got, err)
		}
		if got, err := get(client, fmt.Sprintf("http://%s/?k=key%d", hash, i)); err != nil || got != "a" {
			t.Errorf("hash, key%d: %q, %v; want a", i, got, err)
		}
		if got, err := tcpGet(tcp); err != nil || got != "a" {
			t.Errorf("TCP session %d: %q, %v; want a", i, got, err)
		}
	}
	failed := 0
	for range 10 {
		if _, err := get(client, "http://"+none+"/"); err != nil {
			if !strings.HasPrefix(err.Error(), "status 502") {
				t.Errorf("retries 0: %v, want a 502", err)
			}
			failed++
		}
	}
	if failed != 5 {
		t.Errorf("retries 0: %d of 10 round-robin requests failed, want the 5 sent to the dead endpoint", failed)
	}
}
