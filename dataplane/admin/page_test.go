package admin

import (
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/poll"
	"github.com/sluice-lb/sluice/internal/promtext"
	"github.com/sluice-lb/sluice/internal/units"
	"github.com/sluice-lb/sluice/snapshot"
)

const testTimeout = 10 * time.Second

// testNode runs a node with cluster web (a, weight 3; b, weight 1) behind
// HTTP listener public; it returns the node and the listener's address.
func testNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	listen := loopback.FreeAddr(t)
	return runNode(t, "7", `
clusters:
  - name: web
    endpoints:
      - { name: a, address: "%s", weight: 3 }
      - { name: b, address: "%s", weight: 1 }
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web }
`, serveHTTP(t, "a"), serveHTTP(t, "b"), listen), listen
}

// runNode runs a node, closed when the test ends, that applied the
// snapshot format and args make as version.
func runNode(t *testing.T, version, format string, args ...any) *node.Node {
	t.Helper()
	return runNodeWith(t, node.Options{}, version, format, args...)
}

// runNodeWith is runNode with opts (their Logger discards).
func runNodeWith(t *testing.T, opts node.Options, version, format string, args ...any) *node.Node {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n := node.New(opts)
	t.Cleanup(n.Close)
	apply(t, n, version, format, args...)
	return n
}

// apply has n apply the snapshot format and args make as version.
func apply(t *testing.T, n *node.Node, version, format string, args ...any) {
	t.Helper()
	snap, err := snapshot.Parse(fmt.Appendf(nil, format, args...), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(version, snap); err != nil {
		t.Fatal(err)
	}
}

// waitUntil waits until cond holds, failing the test after testTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, testTimeout, 5*time.Millisecond, what, cond)
}

// serveHTTP starts an HTTP server on loopback that answers name.
func serveHTTP(t *testing.T, name string) string {
	t.Helper()
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", loopback.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

var client = &http.Client{Timeout: testTimeout}

// fetch GETs url, with user and password unless user is "".
func fetch(t *testing.T, url, user, pass string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// sendRequests sends n requests through the listener at addr and counts
// the answers by backend.
func sendRequests(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		_, body := fetch(t, "http://"+addr+"/", "", "")
		got[body]++
	}
	return got
}

var (
	rowRE  = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// text is what a browser shows of the HTML h: no tags, one space between
// words.
func text(h string) string {
	return strings.Join(strings.Fields(html.UnescapeString(tagRE.ReplaceAllString(h, " "))), " ")
}

// row returns the text of the cells of the table row of page whose first
// cell reads first, as a person sees them.
func row(page, first string) []string {
	for _, r := range rowRE.FindAllStringSubmatch(page, -1) {
		var cells []string
		for _, c := range cellRE.FindAllStringSubmatch(r[1], -1) {
			cells = append(cells, text(c[1]))
		}
		if len(cells) > 0 && cells[0] == first {
			return cells
		}
	}
	return nil
}

// The endpoint table's columns.
const (
	colName = iota
	colAddress
	colState
	colWeight
	colActive
	colConns
	colRequests
	colReqRate
	colIn
	colInRate
	colOut
	colOutRate
	col5xx
	colConnErr
	colErrRate
	colSince
)

// TestStatusPageAuth: with credentials configured, the page, /status and
// /metrics answer 401 with a Basic challenge without them or with wrong
// ones, and the page with the endpoints with the right ones; the probes
// stay open.
func TestStatusPageAuth(t *testing.T) {
	n, _ := testNode(t)
	creds, err := ParseCredentials([]byte("admin:s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + serve(t, creds.Protect(Handler("node-1", n, func() uint64 { return 0 }, nil)))
	for _, path := range []string{"/", "/stats", "/status", "/metrics", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/nothing-here"} {
		for _, who := range [][2]string{{"", ""}, {"admin", "wrong"}, {"root", "s3cret"}} {
			resp, body := fetch(t, base+path, who[0], who[1])
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="sluice"` ||
				strings.Contains(body, "web") {
				t.Errorf("GET %s as %q/%q: %d, WWW-Authenticate %q, body %q; want 401 with a Basic challenge and nothing of the node",
					path, who[0], who[1], resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, body := fetch(t, base+path, "", ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
			t.Errorf("GET %s without credentials: %d %q, want 200 ok", path, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/", "/stats"} {
		resp, page := fetch(t, base+path, "admin", "s3cret")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s as admin: %d %s, want 200 text/html\n%s", path, resp.StatusCode, resp.Header.Get("Content-Type"), page)
		}
		for _, ep := range []string{"a", "b"} {
			if r := row(page, ep); len(r) <= colWeight || r[colState] != "UP" {
				t.Errorf("GET %s as admin: row of endpoint %s = %q, want it UP\n%s", path, ep, r, page)
			}
		}
	}
	if resp, body := fetch(t, base+"/status", "admin", "s3cret"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name": "a"`) {
		t.Errorf("GET /status as admin: %d %q, want 200 with endpoint a", resp.StatusCode, body)
	}
	// The Go profiles, for `go tool pprof`: the goroutine dump names the
	// node's own code.
	if resp, body := fetch(t, base+"/debug/pprof/goroutine?debug=1", "admin", "s3cret"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "sluice/dataplane/") {
		t.Errorf("GET /debug/pprof/goroutine as admin: %d, want 200 with the node's goroutines\n%.500s", resp.StatusCode, body)
	}
}

// TestGuardKeepsProfilesLocal: without credentials, an admin address the
// network reaches refuses the Go profiles and the clients of rate limits,
// and serves the rest; a loopback one serves them too.
func TestGuardKeepsProfilesLocal(t *testing.T) {
	n, _ := testNode(t)
	h := Handler("node-1", n, func() uint64 { return 0 }, nil)
	public := "http://" + serve(t, Guard(h, &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 7072}))
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/rate-limits", "/rate-limits?top=5"} {
		if resp, body := fetch(t, public+path, "", ""); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "--admin-auth-file") {
			t.Errorf("GET %s on a public address: %d %q, want 403 naming --admin-auth-file", path, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/status", "/metrics", "/healthz"} {
		if resp, _ := fetch(t, public+path, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on a public address: %d, want 200", path, resp.StatusCode)
		}
	}
	local := "http://" + serve(t, Guard(h, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7072}))
	if resp, body := fetch(t, local+"/debug/pprof/goroutine?debug=1", "", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "sluice/dataplane/") {
		t.Errorf("GET /debug/pprof/goroutine on loopback: %d, want 200 with the node's goroutines\n%.300s", resp.StatusCode, body)
	}
	if resp, body := fetch(t, local+"/rate-limits", "", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"rate_limits"`) {
		t.Errorf("GET /rate-limits on loopback: %d %q, want 200 with its JSON", resp.StatusCode, body)
	}
}

// TestStatusPageShowsTraffic: the page shows the node, its listener with
// its open connections, each endpoint's state, weight and counters, and
// rates that match the requests sent between two views.
func TestStatusPageShowsTraffic(t *testing.T) {
	n, listen := testNode(t)
	r := newRates()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	base := "http://" + serve(t, statusPage("node-1", n, func() uint64 { return 0 }, nil, r))

	_, page := fetch(t, base+"/", "", "")
	for _, want := range []string{"sluice node node-1", "snapshot version 7", `class="state READY"`, "rates from the next refresh on", `<meta http-equiv="refresh" content="5">`} {
		if !strings.Contains(page, want) {
			t.Errorf("first view lacks %q\n%s", want, page)
		}
	}
	if got, want := row(page, "public"), []string{"public", listen, "HTTP", "0"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("listener row = %q, want %q", got, want)
	}
	if a := row(page, "a"); len(a) <= colSince || a[colRequests] != "0" || a[colReqRate] != "–" || a[colWeight] != "3" {
		t.Errorf("first view, row of a = %q; want weight 3, 0 requests, no rate yet", a)
	}

	// The requests go over one keep-alive connection, which stays open
	// in the client's pool and shows on the listener.
	if got := sendRequests(t, listen, 8); got["a"] != 6 || got["b"] != 2 {
		t.Fatalf("answers %v, want a:6 b:2", got)
	}
	now = now.Add(2 * time.Second)
	_, page = fetch(t, base+"/stats", "", "")
	if !strings.Contains(page, "rates over the last 2s") {
		t.Errorf("second view does not say the rates are over 2s\n%s", page)
	}
	if l := row(page, "public"); len(l) != 4 || l[3] != "1" {
		t.Errorf("listener row with one keep-alive client = %q, want 1 connection", l)
	}
	var eps = map[string]node.EndpointStatus{}
	for _, s := range n.Endpoints() {
		eps[s.Name] = s
	}
	for _, tt := range []struct {
		name, requests, rate string
	}{{"a", "6", "3.0"}, {"b", "2", "1.0"}} {
		got := row(page, tt.name)
		s := eps[tt.name]
		want := map[int]string{
			colState: "UP", colRequests: tt.requests, colReqRate: tt.rate,
			colIn: units.Bytes(s.Stats.BytesIn), colInRate: units.Bytes((s.Stats.BytesIn+1)/2) + "/s",
			colOut: units.Bytes(s.Stats.BytesOut), colOutRate: units.Bytes((s.Stats.BytesOut+1)/2) + "/s",
			col5xx: "0", colConnErr: "0", colErrRate: "0.0",
		}
		if len(got) <= colSince {
			t.Fatalf("row of %s = %q", tt.name, got)
		}
		for col, w := range want {
			if got[col] != w {
				t.Errorf("row of %s, column %d = %q, want %q (row %q)", tt.name, col, got[col], w, got)
			}
		}
		if s.Stats.BytesIn == 0 || s.Stats.BytesOut == 0 {
			t.Errorf("endpoint %s counted no bytes: %+v", tt.name, s.Stats)
		}
	}

	// A reload within a second shows the same window, not a new one.
	now = now.Add(500 * time.Millisecond)
	sendRequests(t, listen, 4)
	_, page = fetch(t, base+"/?refresh=0", "", "")
	if a := row(page, "a"); len(a) <= colSince || a[colRequests] != "9" || a[colReqRate] != "3.0" {
		t.Errorf("reload after 500ms: row of a = %q, want 9 requests and the last window's 3.0 req/s", a)
	}
	if strings.Contains(page, `http-equiv="refresh"`) || !strings.Contains(page, "Not reloading") {
		t.Errorf("?refresh=0 still reloads\n%s", page)
	}
	if resp, body := fetch(t, base+"/?refresh=soon", "", ""); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "refresh must be a number of seconds") {
		t.Errorf("?refresh=soon: %d %q, want 400 saying why", resp.StatusCode, body)
	}
}

// TestFullListenerShows: a listener at its max_connections shows it on the
// page, beside its open connections, and in /metrics, with the times the
// accept loop found it full.
func TestFullListenerShows(t *testing.T) {
	listen := loopback.FreeAddr(t)
	n := runNode(t, "1", `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web, max_connections: 1 }
`, serveHTTP(t, "a"), listen)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	if got := row(fetchBody(t, base+"/"), "public"); len(got) != 4 || got[3] != "0 of 1" {
		t.Errorf("listener row before any connection = %q, want 0 of 1", got)
	}

	fillTheOnlySlot(t, listen, "the listener", func() uint64 { return n.Listeners()[0].Full })
	if got := row(fetchBody(t, base+"/"), "public"); len(got) != 4 || got[3] != "1 of 1 (full 1×)" {
		t.Errorf("listener row when full = %q, want 1 of 1 (full 1×)", got)
	}
	m := promtext.Scrape(t, base+"/metrics")
	if v := m.Value("sluice_listener_max_connections", "public"); v != 1 {
		t.Errorf("sluice_listener_max_connections = %v, want 1", v)
	}
	if v := m.Value("sluice_listener_full_total", "public"); v != 1 {
		t.Errorf("sluice_listener_full_total = %v, want 1", v)
	}
}

// fillTheOnlySlot takes the only connection slot of what (the listener or
// the node) with a keep-alive connection to listen, answered by endpoint
// a, and opens a second that waits, until full says the slot was found
// taken. Both stay open until the test ends.
func fillTheOnlySlot(t *testing.T, listen, what string, full func() uint64) {
	t.Helper()
	if got := sendRequests(t, listen, 1); got["a"] != 1 {
		t.Fatalf("answers %v, want one from a", got)
	}
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitUntil(t, what+" to find itself full", func() bool { return full() != 0 })
}

// listenersHead is the status page's Listeners heading, as read.
var listenersHead = regexp.MustCompile(`<h2>Listeners(.*?)</h2>`)

// TestFullNodeShows: the Listeners heading shows the node's connections
// against its --max-connections, and how often the node was full;
// /metrics has both.
func TestFullNodeShows(t *testing.T) {
	listen := loopback.FreeAddr(t)
	n := runNodeWith(t, node.Options{MaxConnections: 1}, "1", `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web }
`, serveHTTP(t, "a"), listen)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	head := func() string {
		m := listenersHead.FindStringSubmatch(fetchBody(t, base+"/"))
		if m == nil {
			t.Fatal("no Listeners heading on the page")
		}
		return text(m[1])
	}
	if got := head(); got != "0 of 1 connections" {
		t.Errorf("heading before any connection = %q, want 0 of 1 connections", got)
	}
	fillTheOnlySlot(t, listen, "the node", func() uint64 { return n.Connections().Full })
	if got := head(); got != "1 of 1 connections (node full 1×)" {
		t.Errorf("heading when full = %q, want 1 of 1 connections (node full 1×)", got)
	}
	if got := row(fetchBody(t, base+"/"), "public"); len(got) != 4 || got[3] != "1" {
		t.Errorf("listener row = %q, want 1 connection and no cap of its own", got)
	}
	m := promtext.Scrape(t, base+"/metrics")
	if v := m.Value("sluice_node_max_connections"); v != 1 {
		t.Errorf("sluice_node_max_connections = %v, want 1", v)
	}
	if v := m.Value("sluice_node_full_total"); v != 1 {
		t.Errorf("sluice_node_full_total = %v, want 1", v)
	}
}

func fetchBody(t *testing.T, url string) string {
	t.Helper()
	_, body := fetch(t, url, "", "")
	return body
}

// TestClusterTakingWork: the page's count of a cluster's endpoints taking
// work leaves out one of weight 0, which is up but given nothing new.
func TestClusterTakingWork(t *testing.T) {
	n := runNode(t, "1", `
clusters:
  - name: web
    endpoints:
      - { name: a, address: "%s" }
      - { name: spare, address: "%s", weight: 0 }
`, serveHTTP(t, "a"), serveHTTP(t, "spare"))
	base := "http://" + serve(t, statusPage("node-1", n, func() uint64 { return 0 }, nil, newRates()))
	if _, page := fetch(t, base+"/", "", ""); !strings.Contains(page, "1 of 2 taking work") {
		t.Errorf("the page does not say 1 of 2 endpoints of web take work\n%s", page)
	}
}
