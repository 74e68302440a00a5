package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeClock sets the clock of every rate table of s to the returned one's,
// which starts at the tables' epoch and moves only when told.
func fakeClock(s *Set) *time.Time {
	now := time.Unix(1_000_000, 0)
	for i := range s.rules {
		if l := s.rules[i].limit; l != nil {
			l.table.now = func() time.Time { return now }
			l.table.epoch = now
		}
	}
	return &now
}

// TestRateLimit: a rule with a rate_limit holds for a client once it sent
// more than requests in the period that the rest of the rule held for; not
// for other clients, not for work the match does not take, and again not
// once the client slowed down.
func TestRateLimit(t *testing.T) {
	s := compile(t, "HTTP",
		`{name: api-limit, match: {path: {prefix: /api/}}, rate_limit: {requests: 3, period: 10s}, deny: {status: 429}}`)
	now := fakeClock(s)
	eval := func(source, path string) string {
		in := Input{Source: netip.MustParseAddrPort(source), Request: request(t, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")}
		return outcome(s, s.Eval(&in))
	}
	const a, b = "192.0.2.1:40000", "192.0.2.2:40000"
	steps := []struct {
		after        time.Duration
		source, path string
		want         string
	}{
		{0, a, "/api/x", "continue"},
		{0, a, "/api/x", "continue"},
		{0, a, "/static/x", "continue"}, // not counted: the match does not hold
		{time.Second, a, "/api/x", "continue"},
		{0, a, "/api/x", "deny by api-limit"},                          // the fourth within 10s
		{0, "[::ffff:192.0.2.1]:40001", "/api/x", "deny by api-limit"}, // the same client, IPv4-mapped
		{0, b, "/api/x", "continue"},
		{0, a, "/static/x", "continue"},
		// 5 in period 0; 3s into period 1 the window still covers 7/10
		// of it: 3 of them, and this one makes 4.
		{12 * time.Second, a, "/api/x", "deny by api-limit"},
		{0, a, "/api/x", "deny by api-limit"}, // denied ones count, as with HAProxy's track-sc
		// 2 in period 1; 3s into period 2, 7/10 of them: 1, and this one.
		{10 * time.Second, a, "/api/x", "continue"},
		{20 * time.Second, a, "/api/x", "continue"},
	}
	for i, st := range steps {
		*now = now.Add(st.after)
		if got := eval(st.source, st.path); got != st.want {
			t.Errorf("step %d, %s %s: %s, want %s", i, st.source, st.path, got, st.want)
		}
	}
}

// TestRateLimitOnTCP counts connections.
func TestRateLimitOnTCP(t *testing.T) {
	s := compile(t, "TCP", `{name: conn-rate, rate_limit: {requests: 2, period: 1m}, deny: {}}`)
	fakeClock(s)
	var got []string
	for range 3 {
		in := Input{Source: netip.MustParseAddrPort("10.0.0.1:5000")}
		got = append(got, outcome(s, s.Eval(&in)))
	}
	if want := "[continue continue deny by conn-rate]"; fmt.Sprint(got) != want {
		t.Errorf("three connections: %v, want %s", got, want)
	}
}

// TestRateLimitCarriesAcrossSnapshots: a new snapshot's rules go on with
// the counts of the rule of the same name (or, unnamed, the same place)
// when it counts over the same period; a changed period starts again.
func TestRateLimitCarriesAcrossSnapshots(t *testing.T) {
	const limited = `rate_limit: {requests: 1, period: 1m}, deny: {}`
	old := compile(t, "HTTP", `{name: other, match: {method: POST}, deny: {}}`, `{name: one, `+limited+`}`, `{`+limited+`}`)
	fakeClock(old)
	in := func() *Input {
		return &Input{Source: netip.MustParseAddrPort("10.0.0.1:5000"), Request: request(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")}
	}
	old.Eval(in()) // counted by "one", which does not hold yet
	for _, tc := range []struct {
		rules []string
		want  string
	}{
		// "one" moved up; the unnamed rule stayed third, behind it.
		{[]string{`{name: one, ` + limited + `}`, `{name: two, match: {method: POST}, deny: {}}`, `{` + limited + `}`}, "deny by one"},
		{[]string{`{name: one, rate_limit: {requests: 1, period: 2m}, deny: {}}`}, "continue"},
		{[]string{`{name: one, rate_limit: {requests: 1, period: 1m, max_clients: 10}, deny: {}}`}, "continue"},
		{[]string{`{name: renamed, ` + limited + `}`}, "continue"},
		{[]string{`{name: one, rate_limit: {requests: 1, period: 1m, ipv4_prefix: 24}, deny: {}}`}, "continue"},
	} {
		s := compile(t, "HTTP", tc.rules...)
		s.Carry(old)
		if got := outcome(s, s.Eval(in())); got != tc.want {
			t.Errorf("%v after the old rules counted one request: %s, want %s", tc.rules, got, tc.want)
		}
	}
	// The unnamed rule at the same place carries its count too.
	s := compile(t, "HTTP", `{name: x, match: {method: POST}, deny: {}}`, `{name: y, match: {method: PUT}, deny: {}}`, `{`+limited+`}`)
	s.Carry(old)
	if got := outcome(s, s.Eval(in())); got != "deny by rules[2]" {
		t.Errorf("the unnamed third rule after the old one counted one request: %s, want a deny by it", got)
	}
}

// TestRateTableStaysBounded: a table full of clients makes room, first by
// forgetting those quiet for two periods, else one at random, and never
// holds more than its share of max_clients per shard.
func TestRateTableStaysBounded(t *testing.T) {
	tb := newRateTable(time.Second, 64)
	now := time.Unix(1_000_000, 0)
	tb.now = func() time.Time { return now }
	tb.epoch = now
	client := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range 1000 {
		tb.count(client(i), nil, false)
	}
	if n := tb.tracked(); n > 64+rateShards || n < 32 {
		t.Fatalf("after 1000 clients with max_clients 64: %d tracked, want about 64", n)
	}
	// A busy client stays counted while quiet ones come and go.
	busy := netip.MustParseAddr("192.0.2.1")
	now = now.Add(3 * time.Second)
	for i := range 3000 {
		if i%10 == 0 {
			tb.count(busy, nil, false)
		}
		tb.count(client(1000+i), nil, false)
		if i%1000 == 999 {
			now = now.Add(3 * time.Second)
		}
	}
	if n := tb.tracked(); n > 64+rateShards {
		t.Errorf("%d tracked, want about 64 at most", n)
	}
}

func TestRateLimitEvalAllocatesLittle(t *testing.T) {
	s := compile(t, "HTTP", `{name: r, rate_limit: {requests: 1000000, period: 1m}, deny: {}}`)
	req := request(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	src := netip.MustParseAddrPort("10.0.0.1:5000")
	s.Eval(&Input{Source: src, Request: req}) // the client's first request puts it in the table
	if n := testing.AllocsPerRun(1000, func() {
		in := Input{Source: src, Request: req}
		s.Eval(&in)
	}); n != 0 {
		t.Errorf("Eval of a known client allocates %v times, want 0", n)
	}
}

// TestRateLimitCountsAPickAgainOnce: a request picked again after a failed
// connect was counted when first looked at; the pick again judges it by
// the count as it stands, and does not count it twice.
func TestRateLimitCountsAPickAgainOnce(t *testing.T) {
	s := compile(t, "HTTP", `{name: limit, rate_limit: {requests: 2, period: 10s}, route: static}`)
	now := fakeClock(s)
	eval := func(again bool) string {
		in := Input{Source: netip.MustParseAddrPort("10.0.0.1:5000"), Request: request(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Again: again}
		return outcome(s, s.Eval(&in))
	}
	var got []string
	for _, again := range []bool{false, false, true, true, false, true, false, false} {
		got = append(got, eval(again))
	}
	if want := "[continue continue continue continue route static by limit route static by limit route static by limit route static by limit]"; fmt.Sprint(got) != want {
		t.Errorf("two requests, the second picked again twice, a third picked again, two more: %v, want %s", got, want)
	}
	// A pick again in the next period sees the last one's count, weighted.
	*now = now.Add(11 * time.Second) // 1s into period 1: 9/10 of 5
	if got := eval(true); got != "route static by limit" {
		t.Errorf("a pick again 1s into the next period: %s, want route static by limit (4.5 of 2)", got)
	}
	*now = now.Add(20 * time.Second)
	if got := eval(true); got != "continue" {
		t.Errorf("a pick again two periods on: %s, want continue", got)
	}
}

// TestRateLimitByPrefix: with ipv4_prefix and ipv6_prefix, the addresses
// of one prefix are one client.
func TestRateLimitByPrefix(t *testing.T) {
	s := compile(t, "TCP", `{name: net, rate_limit: {requests: 2, period: 1m, ipv4_prefix: 24, ipv6_prefix: 64}, deny: {}}`)
	fakeClock(s)
	eval := func(source string) string {
		in := Input{Source: netip.MustParseAddrPort(source)}
		return outcome(s, s.Eval(&in))
	}
	var got []string
	for _, src := range []string{
		"192.0.2.1:1", "192.0.2.200:1", "192.0.2.7:1", // one /24: the third is over
		"192.0.3.1:1",                                                            // another /24
		"[2001:db8:0:1::1]:1", "[2001:db8:0:1:ffff::2]:1", "[2001:db8:0:1::3]:1", // one /64
		"[2001:db8:0:2::1]:1",
		"[::ffff:192.0.2.9]:1", // IPv4-mapped: the first /24
	} {
		got = append(got, eval(src))
	}
	want := "[continue continue deny by net continue continue continue deny by net continue deny by net]"
	if fmt.Sprint(got) != want {
		t.Errorf("by /24 and /64: %v, want %s", got, want)
	}
}

// TestRateLimitByHeaderCarries: the counts by a header carry to a rule
// that counts by the same field, named in any case, and not to one that
// counts by another field or by address.
func TestRateLimitByHeaderCarries(t *testing.T) {
	old := compile(t, "HTTP", `{name: key, rate_limit: {requests: 1, period: 1m, header: X-Key}, deny: {}}`)
	fakeClock(old)
	in := func() *Input {
		return &Input{Source: netip.MustParseAddrPort("10.0.0.1:5000"), Request: request(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Key: k\r\nX-Other: k\r\n\r\n")}
	}
	old.Eval(in())
	for header, want := range map[string]string{"x-key": "deny by key", "X-Other": "continue", "": "continue"} {
		rl := `{requests: 1, period: 1m}`
		if header != "" {
			rl = `{requests: 1, period: 1m, header: ` + header + `}`
		}
		s := compile(t, "HTTP", `{name: key, rate_limit: `+rl+`, deny: {}}`)
		s.Carry(old)
		if got := outcome(s, s.Eval(in())); got != want {
			t.Errorf("rate_limit %s after the old rule counted one request with X-Key: %s, want %s", rl, got, want)
		}
	}
}

// TestRateLimitByHeader: with header, a client is the value of the
// request's first such field, from whatever address; the field's name in
// any case; a request without it is neither counted nor over. The table
// names each client by its value, the first 64 bytes of a long one.
func TestRateLimitByHeader(t *testing.T) {
	s := compile(t, "HTTP", `{name: per-key, match: {path: {prefix: /api/}}, rate_limit: {requests: 2, period: 1m, header: X-API-Key}, deny: {status: 429}}`)
	fakeClock(s)
	long := strings.Repeat("k", 100)
	eval := func(source, fields string) string {
		in := Input{Source: netip.MustParseAddrPort(source), Request: request(t, "GET /api/x HTTP/1.1\r\nHost: a\r\n"+fields+"\r\n")}
		return outcome(s, s.Eval(&in))
	}
	var got []string
	for _, st := range []struct{ source, fields string }{
		{"192.0.2.1:1", "X-API-Key: A\r\n"},
		{"192.0.2.2:1", "x-api-key: A\r\n"},
		{"198.51.100.3:1", "X-Api-Key: A\r\n"}, // the third from a third address: over
		{"192.0.2.1:1", "X-API-Key: B\r\n"},
		{"192.0.2.1:1", "X-API-Key: B\r\nX-API-Key: A\r\n"}, // B's second
		{"192.0.2.1:1", ""},
		{"192.0.2.1:1", ""},
		{"192.0.2.1:1", ""}, // no key: never over
		{"192.0.2.1:1", "X-API-Key: " + long + "\r\n"},
	} {
		got = append(got, eval(st.source, st.fields))
	}
	want := "[continue continue deny by per-key continue continue continue continue continue continue]"
	if fmt.Sprint(got) != want {
		t.Errorf("by X-API-Key: %v, want %s", got, want)
	}
	rl := s.RateLimits(5)[0]
	if tops := fmt.Sprint(rl.Top); rl.Clients != 3 || tops != "[{A 3} {B 2} {"+long[:64]+"… 1}]" {
		t.Errorf("RateLimits: %d clients, top %s; want 3: A 3, B 2 and the long one cut", rl.Clients, tops)
	}
}

// TestRateOfALongPeriod: a day's period and a client that sent a million
// requests in it, weighted without overflow.
func TestRateOfALongPeriod(t *testing.T) {
	tb := newRateTable(24*time.Hour, 0)
	now := time.Unix(1_000_000, 0)
	tb.now = func() time.Time { return now }
	tb.epoch = now
	a := netip.MustParseAddr("192.0.2.1")
	tb.count(a, nil, false)
	sh := &tb.shards[shardOf(a)]
	sh.clients[a] = rateCount{idx: 0, cur: 1_000_000}
	now = now.Add(36 * time.Hour) // half into the next period
	if c, into := tb.count(a, nil, true); c.rate(tb.period, into) != 500_000 {
		t.Errorf("a million requests in the last period, half of it still in the window: rate %d, want 500000", c.rate(tb.period, into))
	}
}

// TestRateLimitsTop: RateLimits lists a rule's clients by their rate now,
// highest first, as many as asked, however many the table holds; a rate
// fades as the window slides past it, and a client quiet for two periods
// is left out; a prefix counted as one client is listed as the prefix.
func TestRateLimitsTop(t *testing.T) {
	s := compile(t, "HTTP",
		`{name: each, rate_limit: {requests: 5, period: 10s}, request_headers: {set: {X-Over: "1"}}}`,
		`{name: per-64, rate_limit: {requests: 5, period: 10s, ipv6_prefix: 64}, request_headers: {set: {X-Over: "64"}}}`)
	now := fakeClock(s)
	send := func(source string, times int) {
		for range times {
			s.Eval(&Input{Source: netip.MustParseAddrPort(source)})
		}
	}
	// 300 clients sending 1 each, then a few busier ones among them.
	for i := range 300 {
		send(fmt.Sprintf("10.0.%d.%d:1", i/250, i%250+1), 1)
	}
	send("10.0.0.7:1", 9)
	send("10.0.1.9:1", 4)
	send("[2001:db8:1:2::1]:1", 3)
	send("[2001:db8:1:2::2]:1", 3)
	top := func() map[string][]string {
		out := map[string][]string{}
		for _, rl := range s.RateLimits(3) {
			for _, c := range rl.Top {
				out[rl.Rule] = append(out[rl.Rule], fmt.Sprintf("%s=%d", c.Client, c.Rate))
			}
		}
		return out
	}
	check := func(when string, want map[string][]string) {
		t.Helper()
		if got := top(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: top 3 %v, want %v", when, got, want)
		}
	}
	check("at once", map[string][]string{
		"each":   {"10.0.0.7=10", "10.0.1.9=5", "2001:db8:1:2::1=3"}, // ::2 ties, and is after
		"per-64": {"10.0.0.7=10", "2001:db8:1:2::/64=6", "10.0.1.9=5"},
	})
	// 5s into the next period half of the last one still counts (rounded
	// down): the 300 who sent 1 are at 0 and left out.
	*now = now.Add(15 * time.Second)
	send("10.0.1.9:1", 1)
	check("15s on", map[string][]string{
		"each":   {"10.0.0.7=5", "10.0.1.9=3", "2001:db8:1:2::1=1"},
		"per-64": {"10.0.0.7=5", "10.0.1.9=3", "2001:db8:1:2::/64=3"}, // IPv4 first
	})
	*now = now.Add(20 * time.Second)
	check("35s on", map[string][]string{})
	if got := s.RateLimits(0); got[0].Top != nil || got[0].Clients != 302 {
		t.Errorf("RateLimits(0): %+v, want no clients listed and 302 tracked", got[0])
	}
}

// TestRateLimitRetryAfter: a rule whose rate_limit holds and whose answer
// is a 429 or 503 tells the client how long until a request of its gets
// through, were it to send none before: not a nanosecond earlier. Other
// answers, and one with a Retry-After of its own, tell nothing.
func TestRateLimitRetryAfter(t *testing.T) {
	s := compile(t, "HTTP",
		`{name: per-path, match: {path: {exact: /a}}, rate_limit: {requests: 3, period: 10s}, deny: {status: 429}}`,
		`{name: forbidden, match: {path: {exact: /b}}, rate_limit: {requests: 3, period: 10s}, deny: {}}`,
		`{name: busy, match: {path: {exact: /c}}, rate_limit: {requests: 3, period: 10s}, respond: {status: 503}}`,
		`{name: own, match: {path: {exact: /d}}, rate_limit: {requests: 3, period: 10s}, respond: {status: 429, headers: {retry-after: "60"}}}`)
	now := fakeClock(s)
	start := *now
	eval := func(path string) Verdict {
		in := Input{Source: netip.MustParseAddrPort("192.0.2.1:40000"), Request: request(t, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")}
		return s.Eval(&in)
	}
	for _, tc := range []struct {
		path string
		want time.Duration
	}{
		// Four at once, then none: the fourth, counted in period 0, weighs
		// 4 × left/10s in period 1, and a request gets through once that is
		// under 3: 7.5s before period 1 ends, so 12.5s from now, and 1ns.
		{"/a", 12500*time.Millisecond + 1},
		{"/b", 0},
		{"/c", 12500*time.Millisecond + 1},
		{"/d", 0},
	} {
		*now = start
		var v Verdict
		for range 4 {
			v = eval(tc.path)
		}
		if v.Action == Continue || v.RetryAfter != tc.want {
			t.Errorf("%s, the fourth request: %s, retry after %v; want it held, retry after %v", tc.path, outcome(s, v), v.RetryAfter, tc.want)
		}
	}

	// Then, with the client waiting as told, and not a nanosecond less.
	*now = start
	for range 3 {
		eval("/a")
	}
	*now = now.Add(2 * time.Second)
	wait := eval("/a").RetryAfter // 4 in period 0, at 2s
	if wait <= 0 {
		t.Fatalf("the fourth request 2s in: retry after %v", wait)
	}
	*now = now.Add(wait - 1)
	if v := eval("/a"); v.Action == Continue {
		t.Errorf("a nanosecond before the %v it was told: let through", wait)
	}
	// That request counted too: wait again as told.
	wait = eval("/a").RetryAfter
	*now = now.Add(wait)
	if v := eval("/a"); v.Action != Continue {
		t.Errorf("%v later, as told: %s", wait, outcome(s, v))
	}
}

// FuzzRetryIn: for any counts, period, moment and limit, a request that
// comes retryIn later gets through, and one that comes a nanosecond
// earlier does not.
func FuzzRetryIn(f *testing.F) {
	f.Add(uint32(4), uint32(0), uint64(10e9), uint64(0), uint64(3))
	f.Add(uint32(1), uint32(9), uint64(10e9), uint64(3e9), uint64(3))
	f.Add(uint32(5), uint32(1000), uint64(24*3600e9), uint64(1), uint64(10))
	f.Fuzz(func(t *testing.T, cur, prev uint32, period, into, n uint64) {
		p := time.Duration(period%uint64(24*time.Hour-time.Second)) + time.Second
		at := time.Duration(into % uint64(p))
		n = n%1_000_000 + 1
		c := rateCount{idx: 5, cur: cur, prev: prev}
		// passes is whether a request d after at gets through.
		passes := func(d time.Duration) bool {
			since := time.Duration(c.idx)*p + at + d
			idx := int64(since / p)
			return c.at(idx).rate(p, since-time.Duration(idx)*p)+1 <= n
		}
		wait := c.retryIn(p, at, n)
		if wait < 0 || !passes(wait) || wait > 0 && passes(wait-1) {
			t.Fatalf("counts %+v, period %v, %v in, limit %d: retry in %v (passes then %v, a nanosecond before %v)",
				c, p, at, n, wait, passes(wait), wait > 0 && passes(wait-1))
		}
	})
}
