package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestStatusJSON: /status names the node, its version and state, its
// connections against its cap, each listener and each endpoint with the
// requests it served, all in snake_case keys.
func TestStatusJSON(t *testing.T) {
	n, listen := testNode(t)
	got := sendRequests(t, listen, 8)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 3 }))
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
		"listener":    "address connections full max_connections name protocol",
		"endpoint":    "active address backup cluster connect_errors connections ejections health health_transitions name received_bytes requests responses_5xx sent_bytes since weight",
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
		if ep["cluster"] != "web" || ep["health"] != "UP" || ep["requests"] != float64(got[name]) {
			t.Errorf("endpoint %v, want web/%s UP with the %d requests it answered", ep, name, got[name])
		}
		if since, _ := ep["since"].(string); !strings.HasSuffix(since, "Z") {
			t.Errorf("endpoint %s: since %q, want a UTC time", name, since)
		}
		if w := map[string]float64{"a": 3, "b": 1}[name]; ep["weight"] != w {
			t.Errorf("endpoint %s: weight %v, want %v", name, ep["weight"], w)
		}
	}
}
