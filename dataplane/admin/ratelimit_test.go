package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/promtext"
)

// publicWithRules is a snapshot of cluster web, endpoint a at the first
// %s, and the HTTP listener public at the second, whose rules follow.
const publicWithRules = `
clusters:
  - name: web
    endpoints: [{ name: a, address: "%s" }]
listeners:
  - name: public
    address: "%s"
    protocol: HTTP
    default_cluster: web
    rules:`

// TestRateLimitMetrics: /metrics counts, per listener and rule, the work a
// rate_limit held for and the clients it tracks; an unnamed rule is named
// by its place, and a new snapshot's rule counts on.
func TestRateLimitMetrics(t *testing.T) {
	web := loopback.FreeAddr(t)
	be := serveHTTP(t, "a")
	const limited = publicWithRules + `
      - { name: api, rate_limit: { requests: 2, period: 1m }, deny: { status: 429 } }
      - { rate_limit: { requests: 1, period: 1m }, request_headers: { set: { X-Over: "1" } } }
`
	n := runNodeWith(t, node.Options{}, "1", limited, be, web)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	get := func(from string) int { return getFrom(t, from, web) }
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

// TestRateLimitsListsClients: /rate-limits lists each rule with a
// rate_limit, its rate, and its clients by rate, highest first, saying
// which are over it; a prefix counted as one client shows as the prefix.
// ?top= bounds the list, ?listener= and ?rule= pick, and a name that
// picks nothing, or a bad top, is refused with what was wrong.
func TestRateLimitsListsClients(t *testing.T) {
	web := loopback.FreeAddr(t)
	be := serveHTTP(t, "a")
	n := runNodeWith(t, node.Options{}, "1", publicWithRules+`
      - { name: per-net, rate_limit: { requests: 100, period: 1m, ipv4_prefix: 24 }, request_headers: { set: { X-Net: "1" } } }
      - { name: api, rate_limit: { requests: 2, period: 1m }, deny: { status: 429 } }
`, be, web)
	base := "http://" + serve(t, Handler("node-1", n, func() uint64 { return 0 }, nil))
	for from, times := range map[string]int{"127.0.0.1": 5, "127.0.0.2": 1, "127.0.0.3": 2} {
		for range times {
			getFrom(t, from, web)
		}
	}
	read := func(query string) rateLimitsJSON {
		t.Helper()
		resp, body := fetch(t, base+"/rate-limits"+query, "", "")
		var out rateLimitsJSON
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("GET /rate-limits%s: %d %q", query, resp.StatusCode, body)
		}
		return out
	}
	got := read("")
	want := []rateLimitJSON{
		{Listener: "public", Rule: "per-net", Requests: 100, Period: "1m", Clients: 1,
			Top: []clientRateJSON{{Client: "127.0.0.0/24", Rate: 8}}},
		{Listener: "public", Rule: "api", Requests: 2, Period: "1m", Clients: 3, Limited: 3,
			Top: []clientRateJSON{{"127.0.0.1", 5, true}, {"127.0.0.3", 2, true}, {"127.0.0.2", 1, false}}},
	}
	if !reflect.DeepEqual(got.RateLimits, want) {
		t.Errorf("GET /rate-limits:\n got %+v\nwant %+v", got.RateLimits, want)
	}
	got = read("?rule=api&listener=public&top=1")
	if len(got.RateLimits) != 1 || !reflect.DeepEqual(got.RateLimits[0].Top, want[1].Top[:1]) {
		t.Errorf("GET /rate-limits?rule=api&listener=public&top=1: %+v, want api with 127.0.0.1 only", got.RateLimits)
	}
	for query, want := range map[string]string{
		"?rule=apii":             `no rule with a rate_limit named "apii"`,
		"?listener=pub&rule=api": `no rule with a rate_limit named "api" on listener "pub"`,
		"?top=all":               `top must be a number from 0 to 1000, not "all"`,
		"?top=1001":              `top must be a number from 0 to 1000, not "1001"`,
	} {
		resp, body := fetch(t, base+"/rate-limits"+query, "", "")
		if resp.StatusCode < 400 || strings.TrimSpace(body) != want {
			t.Errorf("GET /rate-limits%s: %d %q, want an error %q", query, resp.StatusCode, body, want)
		}
	}
}

// getFrom sends GET / to the listener at addr from the address from, and
// returns the status.
func getFrom(t *testing.T, from, addr string) int {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
