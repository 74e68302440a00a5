package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// logBuffer collects an access log; with a non-nil gate, every write
// waits until the gate is closed (a stuck disk).
type logBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	gate chan struct{}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines parses the log written so far.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// accessLogSnapshot is an HTTP listener "public" over a and b (HTTP/1.1
// and h2c) and a TCP listener "db" over raw.
func accessLogSnapshot(a, b, raw *backend, httpAddr, tcpAddr string) string {
	return fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
  - name: dbc
    endpoints:
      - { name: raw, address: %s }
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web, http: { h2c: true } }
  - { name: db, address: %s, protocol: TCP, default_cluster: dbc }
`, a.addr, b.addr, raw.addr, httpAddr, tcpAddr)
}

// flushLog closes the clients' idle connections, waits until the node of
// an accessLogSnapshot-like snapshot (listeners public and db, or public
// alone) has none open, and closes it, which flushes its log. A request is
// logged just after its response is written, and a session once it ended
// on the node, a moment after the client saw it end: once no connection is
// open on the node, all are logged.
func flushLog(t *testing.T, dp *dataplane.Dataplane, clients ...*http.Client) {
	t.Helper()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	waitFor(t, "the connections to end on the node", func() bool {
		m := promtext.Scrape(t, "http://"+dp.AdminAddr().String()+"/metrics")
		return m.Value("sluice_listener_connections", "db") <= 0 && m.Value("sluice_listener_connections", "public") <= 0 // -1: none such
	})
	dp.Close()
}

// TestAccessLog: N requests make exactly N lines, each naming the
// listener, the endpoint that answered (as the client saw it), the
// status, method, host, path and protocol; an HTTP/2 request makes one
// too; a TCP session makes one line with its endpoint, bytes and cause.
func TestAccessLog(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	waitVersion(t, dp, c.apply(t, accessLogSnapshot(a, b, raw, httpAddr, tcpAddr)))

	const n = 20
	client := &http.Client{Timeout: testTimeout}
	var answered []string
	for i := range n {
		body, err := get(client, fmt.Sprintf("http://%s/p?i=%d", httpAddr, i))
		if err != nil {
			t.Fatal(err)
		}
		answered = append(answered, body)
	}
	h2c := h2Client(true)
	h2, err := get(h2c, "http://"+httpAddr+"/over/h2")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := tcpGet(tcpAddr); err != nil || body != "raw" {
		t.Fatalf("TCP: %q, %v", body, err)
	}
	flushLog(t, dp, client, h2c)

	lines := out.lines(t)
	var requests, sessions []map[string]any
	for _, l := range lines {
		switch l["msg"] {
		case "request":
			requests = append(requests, l)
		case "session":
			sessions = append(sessions, l)
		default:
			t.Errorf("line with msg %v: %v", l["msg"], l)
		}
	}
	if len(requests) != n+1 {
		t.Fatalf("%d request lines for %d requests", len(requests), n+1)
	}
	// A line is written once the node has finished with the request,
	// which may be after the client has sent its next one: find each by
	// its path.
	byPath := map[string]map[string]any{}
	for _, l := range requests {
		byPath[fmt.Sprint(l["path"])] = l
	}
	for k, v := range map[string]any{"listener": "public", "proto": "HTTP/2.0", "method": "GET", "path": "/over/h2", "status": 200.0, "endpoint": h2} {
		if got := byPath["/over/h2"][k]; got != v {
			t.Errorf("HTTP/2 request: %s = %v, want %v", k, got, v)
		}
	}
	for i := range n {
		l := byPath[fmt.Sprintf("/p?i=%d", i)]
		if l == nil {
			t.Errorf("request %d: no line with its path", i)
			continue
		}
		want := map[string]any{
			"node": "node-1", "listener": "public", "proto": "HTTP/1.1", "method": "GET", "host": httpAddr,
			"path": fmt.Sprintf("/p?i=%d", i), "status": 200.0, "cluster": "web", "endpoint": answered[i],
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("request %d: %s = %v, want %v", i, k, l[k], v)
			}
		}
		if ap, err := netip.ParseAddrPort(fmt.Sprint(l["client"])); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("request %d: client %v is not a loopback ip:port", i, l["client"])
		}
		if l["bytes_in"].(float64) <= 0 || l["bytes_out"].(float64) <= 0 || l["total_seconds"].(float64) <= 0 || l["first_byte_seconds"].(float64) <= 0 {
			t.Errorf("request %d: bytes or durations missing: %v", i, l)
		}
	}
	if len(sessions) != 1 {
		t.Fatalf("%d session lines for 1 TCP session", len(sessions))
	}
	s := sessions[0]
	for k, v := range map[string]any{"listener": "db", "proto": "TCP", "cluster": "dbc", "endpoint": "raw",
		"bytes_in": float64(len("GET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n")), "cause": "server_closed"} {
		if s[k] != v {
			t.Errorf("session: %s = %v, want %v", k, s[k], v)
		}
	}
	if _, ok := s["connect_seconds"]; !ok {
		t.Errorf("session line has no connect_seconds: %v", s)
	}
}

// TestAccessLogSample: --access-log-sample 0.5 logs about half the
// requests.
func TestAccessLogSample(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out, AccessLogSample: 0.5})
	waitVersion(t, dp, c.apply(t, accessLogSnapshot(a, b, raw, httpAddr, tcpAddr)))
	const n = 400
	client := &http.Client{Timeout: testTimeout}
	for range n {
		if _, err := get(client, "http://"+httpAddr+"/"); err != nil {
			t.Fatal(err)
		}
	}
	dp.Close()
	// Binomial(400, 0.5): sd = 10; 6 sd either way.
	if got := len(out.lines(t)); got < 140 || got > 260 {
		t.Errorf("%d lines for %d requests sampled at 0.5, want about %d", got, n, n/2)
	}
}

// TestAccessLogStuckWriter: with the log's writer stuck, requests go on
// as before: every one is answered, and the lines that did not fit the
// queue are counted in sluice_access_log_dropped_total; once the writer
// moves, the lines kept are written, and kept plus dropped is every
// request.
func TestAccessLogStuckWriter(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	out := &logBuffer{gate: make(chan struct{})}
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: out})
	waitVersion(t, dp, c.apply(t, accessLogSnapshot(a, b, raw, httpAddr, tcpAddr)))
	const n = 5000 // more than the queue (accesslog.DefaultQueue) holds
	client := &http.Client{Timeout: testTimeout}
	for range n {
		if _, err := get(client, "http://"+httpAddr+"/"); err != nil {
			t.Fatal(err)
		}
	}
	// An exchange is logged just after its response is written: once the
	// connection is closed on the node, every line was kept or dropped.
	client.CloseIdleConnections()
	url := "http://" + dp.AdminAddr().String() + "/metrics"
	waitFor(t, "the connection to close on the node", func() bool {
		return promtext.Scrape(t, url).Value("sluice_listener_connections", "public") == 0
	})
	dropped := promtext.Scrape(t, url).Value("sluice_access_log_dropped_total")
	if dropped < 1 {
		t.Errorf("sluice_access_log_dropped_total = %v with a stuck writer and %d requests", dropped, n)
	}
	close(out.gate)
	dp.Close()
	if got := len(out.lines(t)); float64(got)+dropped != n {
		t.Errorf("%d lines written + %v dropped, want %d requests in all", got, dropped, n)
	}
}

// TestAccessLogRotation: the real sluice-dp, its access log moved away as
// logrotate does, and SIGHUP: the node lives on and writes the next lines
// to a new file at the path; the moved file keeps what came before.
func TestAccessLogRotation(t *testing.T) {
	dir := t.TempDir()
	cpAddr, cpHTTP, admin, web, lst := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"))
	start(t, "demo-backend", "--listen", web, "--name", "web1")
	logPath := filepath.Join(dir, "access.log")
	waitFor(t, "sluice-cp /healthz", func() bool {
		resp, err := http.Get("http://" + cpHTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	dp := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", admin, "--access-log", logPath)
	snap := fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: web1, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, web, lst)
	if out, errOut, code := ctl(t, cpAddr, "apply", "-f", writeFile(t, dir, "snap.yaml", snap)); code != 0 {
		t.Fatalf("apply: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// paths waits until the file at p holds a line for each path, in order.
	paths := func(p string, want ...string) {
		t.Helper()
		var got []string
		waitFor(t, fmt.Sprintf("%s to log %v", filepath.Base(p), want), func() bool {
			b, _ := os.ReadFile(p)
			got = got[:0]
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var l struct{ Path string }
				if json.Unmarshal([]byte(line), &l) == nil {
					got = append(got, l.Path)
				}
			}
			return slices.Equal(got, want)
		})
	}
	// The node may connect after the apply: the first request that gets
	// through is the one logged (refused connects never reach the node).
	client := &http.Client{Timeout: testTimeout}
	waitFor(t, "the listener", func() bool { _, err := get(client, "http://"+lst+"/before"); return err == nil })
	paths(logPath, "/before")

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := dp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new file at the path", func() bool { _, err := os.Stat(logPath); return err == nil })
	if _, err := get(client, "http://"+lst+"/after"); err != nil {
		t.Fatal(err)
	}
	paths(logPath, "/after")
	paths(logPath+".1", "/before")
	if !dp.alive() {
		t.Fatal("sluice-dp exited on SIGHUP")
	}
	if out := dp.out.String(); !strings.Contains(out, "SIGHUP: reopened a log file") {
		t.Errorf("the node's log does not say it reopened the file:\n%s", out)
	}
}

// TestAccessLogNamesTheRule: a request or session a rule decided names the
// rule in its line, whether the rule routed it, allowed it, or answered
// it (deny, redirect, respond; a TCP deny), over HTTP/1.1 and HTTP/2; an
// unnamed rule by its place; a request no rule decided names none.
func TestAccessLogNamesTheRule(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b, raw := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "raw")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
  - name: api
    endpoints: [{ name: b, address: %s }]
  - name: dbc
    endpoints: [{ name: raw, address: %s }]
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
    http: { h2c: true }
    rules:
      - { name: to-api, match: { path: { prefix: /api/ } }, route: api }
      - { name: no-admin, match: { path: { prefix: /admin } }, deny: {} }
      - { match: { path: { exact: /old } }, redirect: { path: /new } }
      - { name: health, match: { path: { exact: /healthz } }, respond: { status: 200, body: "ok\n" } }
      - { name: office, match: { path: { prefix: /office/ } }, allow: {} }
  - name: db
    address: %s
    protocol: TCP
    default_cluster: dbc
    rules:
      - { name: not-seven, match: { source: [127.0.0.7] }, deny: {} }
`, a.addr, b.addr, raw.addr, httpAddr, tcpAddr)))

	client := &http.Client{Timeout: testTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h2c := h2Client(true)
	// path: the status the client gets and the rule its line must name
	// ("" for none).
	want := map[string]struct {
		status int
		rule   string
	}{
		"/api/x": {200, "to-api"}, "/admin": {403, "no-admin"}, "/old": {302, "rules[2]"},
		"/healthz": {200, "health"}, "/office/y": {200, "office"}, "/plain": {200, ""},
		"/api/h2": {200, "to-api"}, "/admin/h2": {403, "no-admin"},
	}
	for path, w := range want {
		cl := client
		if strings.HasSuffix(path, "h2") {
			cl = h2c
		}
		resp, err := cl.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != w.status {
			t.Fatalf("GET %s: status %d, want %d", path, resp.StatusCode, w.status)
		}
	}
	if body, err := tcpGet(tcpAddr); err != nil || body != "raw" {
		t.Fatalf("TCP from 127.0.0.1: %q, %v", body, err)
	}
	_, d := clientFrom(7)
	if body, err := tcpGetFrom(d, tcpAddr); body != "" {
		t.Fatalf("TCP from 127.0.0.7: %q, %v; want the connection closed unanswered", body, err)
	}
	flushLog(t, dp, client, h2c)

	seen := map[string]bool{}
	var sessions []map[string]any
	for _, l := range out.lines(t) {
		if l["msg"] == "session" {
			sessions = append(sessions, l)
			continue
		}
		path := fmt.Sprint(l["path"])
		w, ok := want[path]
		if !ok {
			t.Errorf("a line for %s, which no request asked for: %v", path, l)
			continue
		}
		seen[path] = true
		if l["status"] != float64(w.status) {
			t.Errorf("%s: status %v, want %d", path, l["status"], w.status)
		}
		if rule, has := l["rule"]; w.rule == "" && has {
			t.Errorf("%s, which no rule decided: rule %v", path, rule)
		} else if w.rule != "" && rule != w.rule {
			t.Errorf("%s: rule %v, want %s", path, rule, w.rule)
		}
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("no line for %s", path)
		}
	}
	if len(sessions) != 2 {
		t.Fatalf("%d session lines for 2 TCP sessions: %v", len(sessions), sessions)
	}
	for _, s := range sessions {
		ap, _ := netip.ParseAddrPort(fmt.Sprint(s["client"]))
		switch ap.Addr() {
		case netip.MustParseAddr("127.0.0.7"):
			if s["rule"] != "not-seven" || s["cause"] != "denied" {
				t.Errorf("the denied session: rule %v, cause %v; want not-seven, denied", s["rule"], s["cause"])
			}
		default:
			if rule, has := s["rule"]; has || s["endpoint"] != "raw" {
				t.Errorf("the served session: rule %v, endpoint %v; want no rule, raw", rule, s["endpoint"])
			}
		}
	}
}
