package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/snapshot"
)

// echoBackend answers with its name and the X-Env and Server it was sent /
// sends: "name env=X".
func echoBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "app/1.0")
		io.WriteString(w, name+" env="+r.Header.Get("X-Env"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHTTPRules(t *testing.T) {
	n := newNode(t)
	web, static := echoBackend(t, "web"), echoBackend(t, "static")
	addr := freeAddr(t)
	snap := parse(t, `
clusters:
  - { name: web, endpoints: [{ name: w, address: "%s" }] }
  - { name: static, endpoints: [{ name: s, address: "%s" }] }
listeners:
  - name: l
    address: "%s"
    protocol: HTTP
    default_cluster: web
    rules:
      - { name: tag, request_headers: { set: { X-Env: prod } }, response_headers: { remove: Server } }
      - { name: old, match: { path: { prefix: /old/ } }, redirect: { prefix: /new, code: 301 } }
      - { name: bots, match: { header: { name: User-Agent, contains: curl, ignore_case: true } }, deny: {} }
      - { name: health, match: { path: { exact: /healthz } }, respond: { body: "ok\n", headers: { Cache-Control: no-store } } }
      - { name: static, match: { path: { suffix: [.css, .js] } }, route: static }
`, web, static, addr)
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{
		Timeout:       testTimeout,
		Transport:     &http.Transport{MaxConnsPerHost: 1},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		path, agent string
		status      int
		body        string
		header      string // name: value the response must have
	}{
		{"/", "", 200, "web env=prod", ""},
		{"/app.js", "", 200, "static env=prod", ""},
		{"/app.js", "curl/8.5", 403, "request denied\n", "Cache-Control: no-cache"},
		{"/healthz", "", 200, "ok\n", "Cache-Control: no-store"},
		{"/old/a?b=1", "", 301, "", "Location: http://" + addr + "/new/old/a?b=1"},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
		if tc.agent != "" {
			req.Header.Set("User-Agent", tc.agent)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(body) != tc.body {
			t.Errorf("%s (%s): %d %q, want %d %q", tc.path, tc.agent, resp.StatusCode, body, tc.status, tc.body)
		}
		if name, value, ok := strings.Cut(tc.header, ": "); ok && resp.Header.Get(name) != value {
			t.Errorf("%s: %s: %q, want %q", tc.path, name, resp.Header.Get(name), value)
		}
		if resp.StatusCode == 200 && strings.Contains(string(body), "env=") && resp.Header.Get("Server") != "" {
			t.Errorf("%s: the endpoint's Server field was not removed", tc.path)
		}
	}
}

func TestTCPRules(t *testing.T) {
	n := newNode(t)
	a, b := backend(t, "a"), backend(t, "b")
	var reached atomic.Int32
	counting, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer counting.Close()
	go func() {
		for {
			c, err := counting.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()
	denied, routed, other := freeAddr(t), freeAddr(t), freeAddr(t)
	snap := parse(t, `
clusters:
  - { name: a, endpoints: [{ name: a, address: "%s" }] }
  - { name: b, endpoints: [{ name: b, address: "%s" }] }
  - { name: counted, endpoints: [{ name: c, address: "%s" }] }
listeners:
  - { name: denied, address: "%s", protocol: TCP, default_cluster: counted, rules: [{ match: { source: 127.0.0.0/8 }, deny: {} }] }
  - { name: routed, address: "%s", protocol: TCP, default_cluster: a, rules: [{ match: { source: 127.0.0.1 }, route: b }] }
  - { name: other, address: "%s", protocol: TCP, default_cluster: a, rules: [{ match: { source: 10.0.0.0/8 }, route: b }] }
`, a, b, counting.Addr(), denied, routed, other)
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	if got, err := tcpGet(routed); err != nil || got != "b" {
		t.Errorf("routed: %q %v, want b", got, err)
	}
	if got, err := tcpGet(other); err != nil || got != "a" {
		t.Errorf("no rule holds: %q %v, want a", got, err)
	}
	// The denied connection is closed before anything reaches an endpoint.
	c := sendGet(t, denied, "/")
	if rest, err := io.ReadAll(c); len(rest) > 0 || err != nil && !errors.Is(err, io.EOF) && !isConnReset(err) {
		t.Errorf("denied connection got %q, %v; want it closed", rest, err)
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the endpoint of the denied listener was reached %d times", n)
	}
}

func isConnReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// tcpGet sends one HTTP request through a TCP listener and returns the body.
func tcpGet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// A snapshot whose rules do not compile is refused whole: Validate refuses
// it first, and the node would refuse it even so.
func TestRulesRefused(t *testing.T) {
	n := newNode(t)
	bad := parse(t, `
clusters: [{ name: web }]
listeners: [{ name: l, address: "%s", protocol: HTTP, default_cluster: web, rules: [{ match: { path: { regex: "(" } }, deny: {} }] }]
`, freeAddr(t))
	if err := n.Apply("1", bad); err == nil || !strings.Contains(err.Error(), "listeners[0].rules[0].match.path.regex[0]") {
		t.Errorf("Apply = %v, want the regex refused", err)
	}
}

// BenchmarkHTTPRules is requests over keep-alive connections through two
// HTTP listeners of one node, to the same backend: one without rules and
// one with 20 rules of which none holds (every one is evaluated). The two
// take turns, 500 requests at a time, so that both see the same machine;
// each request is timed, and req/s is reported for each (norules-req/s,
// rules-req/s) and as their ratio.
func BenchmarkHTTPRules(b *testing.B) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nhello from backend 1\n"
	be := loopback.FixedBackend(b, resp)
	req := []byte("GET /static/app.js?v=42 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nCookie: session=0123456789abcdef\r\n\r\n")
	n := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer n.Close()
	plain, ruled := loopback.FreeAddr(b), loopback.FreeAddr(b)
	var sb strings.Builder
	fmt.Fprintf(&sb, "clusters: [{ name: web, endpoints: [{ name: e, address: %q }] }, { name: other }]\n", be)
	fmt.Fprintf(&sb, "listeners:\n  - { name: plain, address: %q, protocol: HTTP, default_cluster: web }\n", plain)
	fmt.Fprintf(&sb, "  - name: ruled\n    address: %q\n    protocol: HTTP\n    default_cluster: web\n    rules:\n", ruled)
	for i := range 20 {
		fmt.Fprintf(&sb, "      - %s\n", benchRule(i))
	}
	snap, err := snapshot.Parse([]byte(sb.String()), "")
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Apply("1", snap); err != nil {
		b.Fatal(err)
	}
	var conns [2]net.Conn
	for i, addr := range []string{plain, ruled} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	buf := make([]byte, len(resp))
	var spent [2]time.Duration
	var done [2]int
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		side := i / 500 % 2
		start := time.Now()
		if _, err := conns[side].Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conns[side], buf); err != nil {
			b.Fatal(err)
		}
		spent[side] += time.Since(start)
		done[side]++
	}
	if string(buf) != resp {
		b.Fatalf("response %q", buf)
	}
	if done[1] == 0 {
		return // too few iterations to compare
	}
	plainRate, ruledRate := float64(done[0])/spent[0].Seconds(), float64(done[1])/spent[1].Seconds()
	b.ReportMetric(plainRate, "norules-req/s")
	b.ReportMetric(ruledRate, "rules-req/s")
	b.ReportMetric(ruledRate/plainRate, "rules/norules")
}

// benchRule is the i-th of the rules of BenchmarkHTTPRules, of the kinds
// people write, none of which holds for its request.
func benchRule(i int) string {
	templates := []string{
		`{match: {host: {exact: [tenant{i}.example.com, tenant{i}.example.net]}}, route: other}`,
		`{match: {path: {prefix: /svc{i}/}}, route: other}`,
		`{match: {header: {name: User-Agent, contains: [bot{i}, crawler{i}], ignore_case: true}}, deny: {}}`,
		`{match: {source: [192.0.{i}.0/24, 198.51.100.{i}]}, deny: {}}`,
		`{match: {method: [POST, PUT], path: {regex: "^/api/v[0-9]+/item{i}$"}}, route: other}`,
		`{match: {query: {name: debug{i}}, not: {source: 10.{i}.0.0/16}}, deny: {status: 404}}`,
		`{match: {host: {domain: shop{i}.example.org}, path: {suffix: [.php{i}, .asp]}}, deny: {}}`,
		`{match: {any: [{header: {name: X-Tenant, exact: t{i}}}, {query: {name: tenant, exact: t{i}}}]}, route: other}`,
		`{match: {host: {suffix: .legacy{i}.com}}, redirect: {host: new{i}.example.com, code: 301}}`,
		`{match: {header: {name: Cookie, contains: beta{i}=on}}, route: other}`,
	}
	return strings.ReplaceAll(templates[i%len(templates)], "{i}", fmt.Sprint(i))
}

// TestRateLimitCountsRetriesOnce: a request (or TCP session) that retries
// after a failed connect picks again, and is not counted again by a
// rate_limit: a client sending its limit's worth through a cluster with a
// dead endpoint gets every one of them served, and is refused the next.
func TestRateLimitCountsRetriesOnce(t *testing.T) {
	n := newNode(t)
	web, tcp := echoBackend(t, "web"), backend(t, "a")
	dead := freeAddr(t) // nothing listens: connects are refused
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	snap := parse(t, `
clusters:
  - { name: web, endpoints: [{ name: dead, address: "%s" }, { name: live, address: "%s" }] }
  - { name: tcp, endpoints: [{ name: dead, address: "%s" }, { name: live, address: "%s" }] }
listeners:
  - { name: h, address: "%s", protocol: HTTP, default_cluster: web, rules: [{ name: limit, rate_limit: { requests: 6, period: 1m }, deny: { status: 429 } }] }
  - { name: t, address: "%s", protocol: TCP, default_cluster: tcp, rules: [{ name: limit, rate_limit: { requests: 6, period: 1m }, deny: {} }] }
`, dead, web, dead, tcp, httpAddr, tcpAddr)
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	var got []string
	for range 7 {
		resp, err := client.Get("http://" + httpAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
	}
	want := strings.Repeat("200 web env= ", 6) + "429 request denied\n"
	if strings.Join(got, " ") != want {
		t.Errorf("7 requests, limit 6, through a dead and a live endpoint: %q, want %q", got, want)
	}
	got = got[:0]
	for range 7 {
		body, err := tcpGet(tcpAddr)
		if err != nil {
			body = "closed"
		}
		got = append(got, body)
	}
	if want := "a a a a a a closed"; strings.Join(got, " ") != want {
		t.Errorf("7 connections, limit 6, through a dead and a live endpoint: %q, want %q", got, want)
	}
}
