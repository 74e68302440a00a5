package admin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestStatusJSON: /status names the node, its version and state, its
// connections against its cap, each listener and each endpoint with the
// requests it served, all in snake_case keys.
func TestStatusJSON(t *testing.T) {
	n, listen := testNode(t)
	got := sendRequests(t, listen, 8)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 3 }, nil))
	resp, body := fetch(t, base+"/status", "", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, body)
	}
	keys := func(what string, m any) []string {
		obj, ok := m.(map[string]any)
		if !ok {
			t.Fatalf("%s is %T, want an object\n%s", what, m, body)
		}
		var out []string
		for k := range obj {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	want := map[string]string{
		"":            "connections endpoints listeners node state stats_dropped version",
		"connections": "full max open",
		"listener":    "address connections draining draining_connections full max_connections name protocol",
		"endpoint":    "active address backup cluster connect_errors connections detail ejections health health_transitions name received_bytes requests responses_5xx sent_bytes since weight",
	}
	check := func(what string, m any) map[string]any {
		t.Helper()
		if k := strings.Join(keys(what, m), " "); k != want[what] {
			t.Errorf("keys of %q: %s\nwant %s", what, k, want[what])
		}
		return m.(map[string]any)
	}
	check("", st)
	if st["node"] != "node-1" || st["version"] != "7" || st["state"] != "READY" || st["stats_dropped"] != 3.0 {
		t.Errorf("node-1, 7, READY, 3 records dropped wanted:\n%s", body)
	}
	check("connections", st["connections"])
	ls := st["listeners"].([]any)
	if len(ls) != 1 {
		t.Fatalf("listeners %v, want public", ls)
	}
	if l := check("listener", ls[0]); l["name"] != "public" || l["address"] != listen || l["protocol"] != "HTTP" || l["max_connections"] != 0.0 {
		t.Errorf("listener %v, want public on %s, HTTP, no cap", l, listen)
	}
	eps := st["endpoints"].([]any)
	if len(eps) != 2 {
		t.Fatalf("endpoints %v, want a and b", eps)
	}
	for _, e := range eps {
		ep := check("endpoint", e)
		name, _ := ep["name"].(string)
		if ep["cluster"] != "web" || ep["health"] != "UP" || ep["detail"] != "no health check" || ep["requests"] != float64(got[name]) {
			t.Errorf("endpoint %v, want web/%s UP (no health check) with the %d requests it answered", ep, name, got[name])
		}
		if since, _ := ep["since"].(string); !strings.HasSuffix(since, "Z") {
			t.Errorf("endpoint %s: since %q, want a UTC time", name, since)
		}
		if w := map[string]float64{"a": 3, "b": 1}[name]; ep["weight"] != w {
			t.Errorf("endpoint %s: weight %v, want %v", name, ep["weight"], w)
		}
	}
}

// publicOnly is a snapshot of cluster web, endpoint a at the first %s, and
// the HTTP listener public at the second; the removal tests add db to it.
const publicOnly = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - { name: public, address: "%s", protocol: HTTP, default_cluster: web }
`

// TestRemovedListenerShows: a listener the running snapshot removed whose
// session still drains shows as draining, with its connection and when
// the rest close, on /status, on the status page and in /metrics, where
// it keeps sluice_listener_connections but no max_connections. Added back
// meanwhile, it runs, and shows and counts that session as draining.
func TestRemovedListenerShows(t *testing.T) {
	web, db := loopback.FreeAddr(t), loopback.FreeAddr(t)
	be := serveHTTP(t, "a")
	const withDB = publicOnly + `  - { name: db, address: "%s", protocol: TCP, default_cluster: web }
`
	const grace = time.Minute
	n := runNodeWith(t, node.Options{ListenerGrace: grace}, "1", withDB, be, web, db)
	c, err := net.Dial("tcp", db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The session is in the listener's set once accepted, and in its
	// meter (sluice_listener_connections) once its goroutine runs.
	waitUntil(t, "the node to count the session on db", func() bool {
		if n.Connections().Open != 1 {
			return false
		}
		for _, m := range n.ListenerMeters() {
			if m.Name() == "db" {
				return m.Counts().Active == 1
			}
		}
		return false
	})
	removed := time.Now()
	apply(t, n, "2", publicOnly, be, web)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))

	_, body := fetch(t, base+"/status", "", "")
	var st statusJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, body)
	}
	if len(st.Listeners) != 2 {
		t.Fatalf("/status listeners: %+v, want db draining and public", st.Listeners)
	}
	d, p := st.Listeners[0], st.Listeners[1]
	if d.Name != "db" || d.Address != db || d.Protocol != "TCP" || d.Connections != 1 || d.DrainingConnections != 1 || !d.Draining || d.GraceEnds == nil {
		t.Errorf("/status: %s\nwant db on %s, TCP, 1 connection, draining, with grace_ends", body, db)
	} else if left := d.GraceEnds.Sub(removed); left < grace-time.Second || left > grace+time.Second || d.GraceEnds.Location() != time.UTC {
		t.Errorf("/status: db's grace_ends %v, want a UTC time %v after the apply (%v)", d.GraceEnds, grace, removed)
	}
	if p.Name != "public" || p.Draining || p.DrainingConnections != 0 || p.GraceEnds != nil {
		t.Errorf("/status: public %+v, want it running", p)
	}

	// db's connections cell: one connection, draining, about a minute left.
	oneDraining := regexp.MustCompile(`^1 \(1 draining, closed in (5[0-9]s|1m00s) at the latest\)$`)
	page := fetchBody(t, base+"/")
	if got := row(page, "db DRAINING"); len(got) != 4 || got[1] != db || got[2] != "TCP" || !oneDraining.MatchString(got[3]) {
		t.Errorf("db's row on the page: %q, want DRAINING, %s, TCP, 1 and the time left", got, db)
	}

	m := promtext.Scrape(t, base+"/metrics")
	for _, x := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sluice_node_listeners_draining", nil, 1},
		{"sluice_listener_connections", []string{"db"}, 1},
		{"sluice_listener_max_connections", []string{"db"}, -1}, // none: it accepts nothing
		{"sluice_listener_max_connections", []string{"public"}, 0},
	} {
		if v := m.Value(x.name, x.labels...); v != x.want {
			t.Errorf("%s%v = %v, want %v", x.name, x.labels, v, x.want)
		}
	}

	// Added back: db runs, and shows its session draining still.
	apply(t, n, "3", withDB, be, web, db)
	_, body = fetch(t, base+"/status", "", "")
	st = statusJSON{}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, body)
	}
	if len(st.Listeners) != 2 {
		t.Fatalf("/status once db is back lists %+v, want db and public", st.Listeners)
	}
	if d := st.Listeners[0]; d.Name != "db" || d.Draining || d.Connections != 1 || d.DrainingConnections != 1 || d.GraceEnds == nil {
		t.Errorf("/status once db is back: %s\nwant db running, with 1 connection, draining, and grace_ends", body)
	}
	if got := row(fetchBody(t, base+"/"), "db"); len(got) != 4 || !oneDraining.MatchString(got[3]) {
		t.Errorf("db's row once back: %q, want 1 connection, draining", got)
	}
	if v := promtext.Scrape(t, base+"/metrics").Value("sluice_listener_connections", "db"); v != 1 {
		t.Errorf("sluice_listener_connections{db} once back = %v, want 1: the draining session", v)
	}
}

// TestRemovedListenerKeepsFullCount: sluice_listener_full_total counts by
// listener name, as the listener's other counters do: a listener removed
// while it drains keeps it (but no max_connections), and one added back
// under its name at another address meanwhile counts on from it, in one
// series, not two.
func TestRemovedListenerKeepsFullCount(t *testing.T) {
	web, db, db2 := loopback.FreeAddr(t), loopback.FreeAddr(t), loopback.FreeAddr(t)
	be := serveHTTP(t, "a")
	const withDB = publicOnly + `  - { name: db, address: "%s", protocol: TCP, default_cluster: web, max_connections: 1 }
`
	n := runNodeWith(t, node.Options{ListenerGrace: time.Minute}, "1", withDB, be, web, db)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	// fill takes addr's only slot with one session and leaves a second
	// waiting, until db's full count reaches want.
	fill := func(addr string, want uint64) {
		t.Helper()
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
		waitUntil(t, fmt.Sprintf("db to be found full %d times", want), func() bool {
			for _, s := range n.Listeners() {
				if s.Name == "db" && !s.Draining && s.Full == want {
					return true
				}
			}
			return false
		})
	}
	check := func(when string, full, maxConns float64) {
		t.Helper()
		m := promtext.Scrape(t, base+"/metrics")
		if v := m.Value("sluice_listener_full_total", "db"); v != full {
			t.Errorf("%s: sluice_listener_full_total{db} = %v, want %v", when, v, full)
		}
		if v := m.Value("sluice_listener_max_connections", "db"); v != maxConns {
			t.Errorf("%s: sluice_listener_max_connections{db} = %v, want %v", when, v, maxConns)
		}
	}
	fill(db, 1)
	check("full once", 1, 1)

	apply(t, n, "2", publicOnly, be, web) // the served session drains
	check("removed", 1, -1)

	apply(t, n, "3", withDB, be, web, db2)
	check("added back at another address", 1, 1)
	fill(db2, 2)
	check("full again there", 2, 1)
}

// TestControlPlaneShows: the page's header and /status say whether the
// control plane holds the node's subscription, for how long, and why not,
// and which version the node refused, why and for how long; without a
// control plane to read (cp nil) /status leaves the key out.
func TestControlPlaneShows(t *testing.T) {
	n, _ := testNode(t)
	r := newRates()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	st := discovery.Status{
		Address: "127.0.0.1:7070", Since: now.Add(-40 * time.Second),
		Error:   "dial tcp 127.0.0.1:7070: connect: connection refused",
		Refused: "4", RefusedAt: now.Add(-2 * time.Minute), RefusedError: "listener extra: listen tcp 127.0.0.1:23090: bind: address already in use",
		Unplaced: "no group's selector matches its labels; the groups are edge (role=edge)",
	}
	cp := func() discovery.Status { return st }
	page := "http://" + serve(t, statusPage("node-1", n, func() uint64 { return 0 }, cp, r))
	status := "http://" + serve(t, statusHandler("node-1", n, func() uint64 { return 0 }, cp))
	header := func() string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<header>(.*?)</header>`).FindStringSubmatch(fetchBody(t, page+"/"))
		if m == nil {
			t.Fatal("no header on the page")
		}
		return text(m[1])
	}
	for _, want := range []string{
		"control plane 127.0.0.1:7070 not connected for 40s: dial tcp 127.0.0.1:7070: connect: connection refused",
		"refused version 4 2m00s ago: listener extra: listen tcp 127.0.0.1:23090: bind: address already in use",
		"in no group: no group's selector matches its labels; the groups are edge (role=edge)",
	} {
		if h := header(); !strings.Contains(h, want) {
			t.Errorf("page header %q\nwant it to say %q", h, want)
		}
	}
	var got statusJSON
	if err := json.Unmarshal([]byte(fetchBody(t, status+"/status")), &got); err != nil {
		t.Fatal(err)
	}
	want := controlPlaneJSON{Address: st.Address, Since: st.Since, Error: st.Error,
		Refused: &refusedJSON{Version: "4", Since: st.RefusedAt, Error: st.RefusedError}, Unplaced: st.Unplaced}
	if c := got.ControlPlane; c == nil || c.Address != want.Address || c.Connected || !c.Since.Equal(want.Since) || c.Error != want.Error ||
		c.Refused == nil || *c.Refused != *want.Refused || c.Unplaced != want.Unplaced || c.Group != "" {
		t.Errorf("/status control_plane = %+v, want %+v", c, want)
	}

	st = discovery.Status{Address: "127.0.0.1:7070", Connected: true, Since: now.Add(-65 * time.Second), Group: "edge"}
	if h := header(); !strings.Contains(h, "control plane 127.0.0.1:7070 connected for 1m05s group edge") || strings.Contains(h, "refused") || strings.Contains(h, "no group") {
		t.Errorf("page header %q\nwant it connected for 1m05s, in group edge, nothing refused", h)
	}
	got = statusJSON{}
	body := fetchBody(t, status+"/status")
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if c := got.ControlPlane; c == nil || !c.Connected || c.Error != "" || c.Refused != nil || strings.Contains(body, `"refused"`) ||
		c.Group != "edge" || strings.Contains(body, `"unplaced"`) {
		t.Errorf("/status control_plane = %+v, want connected, without error or refusal\n%s", c, body)
	}

	body = fetchBody(t, "http://"+serve(t, statusHandler("node-1", n, func() uint64 { return 0 }, nil))+"/status")
	if strings.Contains(body, "control_plane") {
		t.Errorf("/status without a control plane to read has control_plane:\n%s", body)
	}
}
