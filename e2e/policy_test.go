package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
)

// policyFixture is one node whose cluster "web" balances over named
// backends with the given policy lines, weights and max_conn, behind an
// HTTP and a TCP listener.
type policyFixture struct {
	httpAddr, tcpAddr string
	backends          []*backend
	dp                *dataplane.Dataplane
}

func startPolicy(t *testing.T, policy string, weights []int, maxConn []int, names ...string) *policyFixture {
	t.Helper()
	c := startCP(t, t.TempDir(), "")
	f := &policyFixture{httpAddr: freeAddr(t), tcpAddr: freeAddr(t)}
	var eps strings.Builder
	for i, n := range names {
		b := startBackend(t, n)
		f.backends = append(f.backends, b)
		fmt.Fprintf(&eps, "      - { name: %s, address: %s, weight: %d, max_conn: %d }\n", n, b.addr, weights[i], maxConn[i])
	}
	v := c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
%s
    endpoints:
%slisteners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, policy, eps.String(), f.httpAddr, f.tcpAddr))
	f.dp = startNode(t, c.addr, "node-1")
	waitVersion(t, f.dp, v)
	return f
}

// queued is how many requests and sessions wait in cluster web's queue.
func (f *policyFixture) queued() int {
	for _, cm := range f.dp.Node.ClusterMeters() {
		if cm.Name() == "web" {
			return cm.Queued
		}
	}
	return 0
}

// count sends n requests for path over one keep-alive connection and counts
// the answers per backend.
func count(t *testing.T, url string, n int, header http.Header) map[string]int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: testTimeout}
	defer client.CloseIdleConnections()
	counts := map[string]int{}
	for range n {
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range header {
			req.Header[k] = v
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
		counts[string(body)]++
	}
	return counts
}

// within reports whether got is within tol (a share, e.g. 0.05) of want.
func within(got, total int, want, tol float64) bool {
	share := float64(got) / float64(total)
	return share >= want-tol && share <= want+tol
}

func TestPolicyStaticRR(t *testing.T) {
	f := startPolicy(t, "    lb_policy: STATIC_RR", []int{2, 1}, []int{0, 0}, "a", "b")
	got := count(t, "http://"+f.httpAddr+"/", 300, nil)
	if got["a"] != 200 || got["b"] != 100 {
		t.Errorf("STATIC_RR 2:1 over 300 = %v, want exactly a:200 b:100", got)
	}
}

func TestPolicyRandom(t *testing.T) {
	for _, draws := range []int{1, 2} {
		t.Run(fmt.Sprintf("draws=%d", draws), func(t *testing.T) {
			f := startPolicy(t, fmt.Sprintf("    lb_policy: RANDOM\n    random: { draws: %d }", draws), []int{2, 1}, []int{0, 0}, "a", "b")
			got := count(t, "http://"+f.httpAddr+"/", 1500, nil)
			if !within(got["a"], 1500, 2.0/3, 0.05) {
				t.Errorf("RANDOM 2:1 over 1500 = %v, want a at 2/3 ±5%%", got)
			}
		})
	}
}

// TestPolicyLeastConn: new work goes to the idle endpoint while the other
// holds a slow request.
func TestPolicyLeastConn(t *testing.T) {
	f := startPolicy(t, "    lb_policy: LEAST_CONN", []int{1, 1}, []int{0, 0}, "a", "b")
	done := make(chan error, 1)
	go func() { _, err := get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/slow"); done <- err }()
	var busy, idle *backend
	waitFor(t, "the slow request to reach a backend", func() bool {
		for i, b := range f.backends {
			if b.held.Load() == 1 {
				busy, idle = b, f.backends[1-i]
				return true
			}
		}
		return false
	})
	got := count(t, "http://"+f.httpAddr+"/", 20, nil)
	if got[idle.name] != 20 {
		t.Errorf("while %s holds a request, answers = %v; want all 20 from %s", busy.name, got, idle.name)
	}
	close(busy.release)
	if err := <-done; err != nil {
		t.Errorf("slow request: %v", err)
	}
}

// TestPolicyFirst: the first endpoint takes the work until its max_conn;
// only then does the next one get any.
func TestPolicyFirst(t *testing.T) {
	f := startPolicy(t, "    lb_policy: FIRST", []int{1, 1}, []int{1, 0}, "a", "b")
	a := f.backends[0]
	if got := count(t, "http://"+f.httpAddr+"/", 10, nil); got["a"] != 10 {
		t.Fatalf("with a free, answers = %v; want all 10 from a", got)
	}
	done := make(chan error, 1)
	go func() { _, err := get(&http.Client{Timeout: testTimeout}, "http://"+f.httpAddr+"/slow"); done <- err }()
	waitFor(t, "a to hold the slow request", func() bool { return a.held.Load() == 1 })
	if got := count(t, "http://"+f.httpAddr+"/", 10, nil); got["b"] != 10 {
		t.Errorf("with a at max_conn 1, answers = %v; want all 10 from b", got)
	}
	close(a.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := count(t, "http://"+f.httpAddr+"/", 10, nil); got["a"] != 10 {
		t.Errorf("after a's slot freed, answers = %v; want all 10 from a", got)
	}
}

// TestPolicyHashKeys: the same key always lands on the same endpoint, and
// different keys spread over the endpoints.
func TestPolicyHashKeys(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		// request for key k: a path and headers
		req func(k int) (string, http.Header)
	}{
		{"uri maglev", "hash: { key: URI, method: MAGLEV }", func(k int) (string, http.Header) { return fmt.Sprintf("/item/%d?x=1", k), nil }},
		{"path ring", "hash: { key: PATH, method: RING }", func(k int) (string, http.Header) { return fmt.Sprintf("/p%d?nonce=%d", k, time.Now().UnixNano()), nil }},
		{"url_param", "hash: { key: URL_PARAM, name: user }", func(k int) (string, http.Header) {
			return fmt.Sprintf("/?a=%d&user=u%d", time.Now().UnixNano(), k), nil
		}},
		{"header", "hash: { key: HEADER, name: User-Agent }", func(k int) (string, http.Header) {
			return "/", http.Header{"User-Agent": {fmt.Sprintf("agent-%d", k)}}
		}},
		{"host domain only", "hash: { key: HEADER, name: Host, use_domain_only: true }", func(k int) (string, http.Header) {
			return "/", http.Header{"X-Host": {fmt.Sprintf("www%d.site%d.example", time.Now().UnixNano()%7, k)}}
		}},
		{"cookie bounded", "hash: { key: COOKIE, name: session, balance_factor: 150 }", func(k int) (string, http.Header) {
			return "/", http.Header{"Cookie": {fmt.Sprintf("theme=dark; session=s%d", k)}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startPolicy(t, "    lb_policy: HASH\n    "+tt.policy, []int{1, 1, 1}, []int{0, 0, 0}, "a", "b", "c")
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: testTimeout}
			defer client.CloseIdleConnections()
			home := map[int]string{}
			used := map[string]bool{}
			for round := range 3 {
				for k := range 30 {
					path, h := tt.req(k)
					req, _ := http.NewRequest("GET", "http://"+f.httpAddr+path, nil)
					for name, v := range h {
						if name == "X-Host" {
							req.Host = v[0]
							continue
						}
						req.Header[name] = v
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got := string(body)
					if round == 0 {
						home[k] = got
						used[got] = true
					} else if home[k] != got {
						t.Fatalf("key %d answered by %s, then by %s", k, home[k], got)
					}
				}
			}
			if len(used) < 2 {
				t.Errorf("30 keys all landed on %v; want them spread", used)
			}
		})
	}
}

// TestPolicyHashSourceIP: sessions and requests from one client address
// always reach the same endpoint, on TCP and HTTP listeners alike.
func TestPolicyHashSourceIP(t *testing.T) {
	f := startPolicy(t, "    lb_policy: HASH\n    hash: { key: SOURCE_IP, method: MAGLEV }", []int{1, 1, 1}, []int{0, 0, 0}, "a", "b", "c")
	used := map[string]bool{}
	for i := 1; i <= 12; i++ {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))}
		dialer := &net.Dialer{LocalAddr: src, Timeout: testTimeout}
		client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
		var home string
		for j := range 5 {
			body, err := get(client, "http://"+f.httpAddr+"/")
			if err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				home = body
				used[body] = true
			} else if body != home {
				t.Fatalf("HTTP from %v answered by %s, then by %s", src.IP, home, body)
			}
			// The TCP listener hashes the same address the same way.
			c, err := dialer.DialContext(context.Background(), "tcp", f.tcpAddr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(testTimeout))
			io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
			raw, _ := io.ReadAll(c)
			c.Close()
			if !strings.HasSuffix(string(raw), "\r\n\r\n"+home) {
				t.Fatalf("TCP from %v answered %q, want the HTTP listener's endpoint %s", src.IP, raw, home)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("12 client addresses all landed on %v; want them spread", used)
	}
}
