package admin

import (
	"net"
	"net/http"
	"slices"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestRateLimitMetrics: /metrics counts, per listener and rule, the work a
// rate_limit held for and the clients it tracks; an unnamed rule is named
// by its place, and a new snapshot's rule counts on.
func TestRateLimitMetrics(t *testing.T) {
	web := loopback.FreeAddr(t)
	be := serveHTTP(t, "a")
	const limited = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - name: public
    address: "%s"
    protocol: HTTP
    default_cluster: web
    rules:
      - { name: api, rate_limit: { requests: 2, period: 1m }, deny: { status: 429 } }
      - { rate_limit: { requests: 1, period: 1m }, request_headers: { set: { X-Over: "1" } } }
`
	n := runNodeWith(t, node.Options{}, "1", limited, be, web)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	get := func(from string) int {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://" + web + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var statuses []int
	for range 5 {
		statuses = append(statuses, get("127.0.0.1"))
	}
	if want := []int{200, 200, 429, 429, 429}; !slices.Equal(statuses, want) {
		t.Fatalf("5 requests, 2 a minute: %v, want %v", statuses, want)
	}
	get("127.0.0.2")
	check := func(when string, api, second, clients float64) {
		t.Helper()
		m := promtext.Scrape(t, base+"/metrics")
		for _, c := range []struct {
			name, rule string
			want       float64
		}{
			{"sluice_rule_rate_limited_total", "api", api},
			{"sluice_rule_rate_limited_total", "rules[1]", second},
			{"sluice_rule_rate_clients", "api", clients},
		} {
			if v := m.Value(c.name, "public", c.rule); v != c.want {
				t.Errorf("%s: %s{public,%s} = %v, want %v", when, c.name, c.rule, v, c.want)
			}
		}
	}
	// api held for 3 of 127.0.0.1's; the second rule saw its first two
	// (over from the second) and 127.0.0.2's one.
	check("after 5 requests and 1", 3, 1, 2)
	apply(t, n, "2", limited, be, web)
	get("127.0.0.1")
	check("after an apply and one more", 4, 1, 2)
}
