package rules

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// specs parses the rules of one listener written in YAML, one rule per
// line of flow style, and checks them as the control plane would.
func specs(t testing.TB, protocol string, rules ...string) []*sluicev1.Rule {
	t.Helper()
	doc := "clusters: [{name: web}, {name: static}, {name: com}]\nlisteners:\n  - name: l\n    address: 127.0.0.1:80\n    protocol: " +
		protocol + "\n    default_cluster: web\n    rules:\n"
	for _, r := range rules {
		doc += "      - " + r + "\n"
	}
	s, err := snapshot.Parse([]byte(doc), "")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := snapshot.Validate(s); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return s.GetListeners()[0].GetRules()
}

func compile(t testing.TB, protocol string, rules ...string) *Set {
	t.Helper()
	s, err := Compile(specs(t, protocol, rules...), protocol == "HTTP", nil)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func request(t testing.TB, head string) *httpproxy.Request {
	t.Helper()
	r, err := httpproxy.ParseRequest([]byte(head))
	if err != nil {
		t.Fatalf("parse %q: %v", head, err)
	}
	return r
}

// outcome names a verdict for comparing: "deny by bots", "route static by
// static-files", "continue".
func outcome(s *Set, v Verdict) string {
	switch v.Action {
	case Continue:
		return "continue"
	case Route:
		return "route " + s.Routes()[v.Route] + " by " + s.Name(v.Rule)
	}
	return v.Action.String() + " by " + s.Name(v.Rule)
}

// seedRules are DESIGN seed problem 5's examples as examples/acl.yaml
// writes them.
var seedRules = []string{
	`{name: blacklist, match: {source: [192.0.2.0/24, 198.51.100.7, "2001:db8:bad::/48"]}, deny: {}}`,
	`{name: bots, match: {header: {name: User-Agent, contains: [curl, wget], ignore_case: true}}, deny: {}}`,
	`{name: read-only, match: {not: {method: [GET, HEAD]}}, deny: {status: 405}}`,
	`{name: static-files, match: {path: {suffix: [.css, .js, .png]}}, route: static}`,
	`{name: dot-com, match: {host: {suffix: .com}}, route: com}`,
}

func TestSeedExamples(t *testing.T) {
	s := compile(t, "HTTP", seedRules...)
	const client = "203.0.113.9:40000"
	for _, tc := range []struct {
		name, head, source, want string
	}{
		{"a .com host", "GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n", client, "route com by dot-com"},
		{".com ignores case and port", "GET / HTTP/1.1\r\nHost: SHOP.EXAMPLE.COM:8080\r\n\r\n", client, "route com by dot-com"},
		{"a fully qualified .com host", "GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", client, "route com by dot-com"},
		{"not .com", "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", client, "continue"},
		{"com without the dot", "GET / HTTP/1.1\r\nHost: examplecom\r\n\r\n", client, "continue"},
		{"static before .com", "GET /app.js?v=3 HTTP/1.1\r\nHost: example.com\r\n\r\n", client, "route static by static-files"},
		{"static suffix is on the path, not the query", "GET /app?file=x.css HTTP/1.1\r\nHost: example.org\r\n\r\n", client, "continue"},
		{"blacklisted prefix", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "192.0.2.77:1234", "deny by blacklist"},
		{"blacklisted address", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "198.51.100.7:1234", "deny by blacklist"},
		{"next to a blacklisted address", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "198.51.100.8:1234", "route com by dot-com"},
		{"blacklisted IPv6", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "[2001:db8:bad:1::5]:1234", "deny by blacklist"},
		{"IPv4-mapped client", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "[::ffff:192.0.2.1]:1234", "deny by blacklist"},
		{"curl", "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\n\r\n", client, "deny by bots"},
		{"Wget in any case", "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Wget/1.21\r\n\r\n", client, "deny by bots"},
		{"a browser", "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\n\r\n", client, "route com by dot-com"},
		{"a second User-Agent field", "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\nUser-Agent: curl/8\r\n\r\n", client, "deny by bots"},
		{"POST", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n", client, "deny by read-only"},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n", client, "route com by dot-com"},
		{"methods are case-sensitive", "get / HTTP/1.1\r\nHost: example.com\r\n\r\n", client, "deny by read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Source: netip.MustParseAddrPort(tc.source), Request: request(t, tc.head)}
			if got := outcome(s, s.Eval(&in)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestWhitelistWithDenyAll(t *testing.T) {
	s := compile(t, "HTTP",
		`{name: office, match: {source: [10.0.0.0/8, 127.0.0.1]}, allow: {}}`,
		`{name: deny-all, deny: {}}`,
		`{name: never-reached, route: static}`,
	)
	req := request(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for src, want := range map[string]string{
		"10.1.2.3:5000":  "allow by office",
		"127.0.0.1:5000": "allow by office",
		"127.0.0.2:5000": "deny by deny-all",
		"11.0.0.1:5000":  "deny by deny-all",
	} {
		in := Input{Source: netip.MustParseAddrPort(src), Request: req}
		if got := outcome(s, s.Eval(&in)); got != want {
			t.Errorf("%s: got %s, want %s", src, got, want)
		}
	}
}

func TestMatches(t *testing.T) {
	const src = "10.0.0.1:5000"
	for _, tc := range []struct {
		name  string
		match string // the match of a rule that routes to static
		head  string
		src   string
		want  bool
	}{
		{"host exact", `{host: {exact: [a.example, b.example]}}`, "GET / HTTP/1.1\r\nHost: B.Example:80\r\n\r\n", src, true},
		{"host exact, another", `{host: {exact: a.example}}`, "GET / HTTP/1.1\r\nHost: aa.example\r\n\r\n", src, false},
		{"host prefix", `{host: {prefix: api.}}`, "GET / HTTP/1.1\r\nHost: api.example\r\n\r\n", src, true},
		{"host domain itself", `{host: {domain: example.com}}`, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", src, true},
		{"host domain subdomain", `{host: {domain: example.com}}`, "GET / HTTP/1.1\r\nHost: a.b.Example.com\r\n\r\n", src, true},
		{"host domain lookalike", `{host: {domain: example.com}}`, "GET / HTTP/1.1\r\nHost: badexample.com\r\n\r\n", src, false},
		{"host regex", `{host: {regex: "^api[0-9]+\\."}}`, "GET / HTTP/1.1\r\nHost: API12.example\r\n\r\n", src, true},
		{"host of an absolute-form target", `{host: {exact: t.example}}`, "GET http://t.example:81/x HTTP/1.1\r\nHost: t.example:81\r\n\r\n", src, true},
		{"IPv6 host", `{host: {exact: "::1"}}`, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", src, true},
		{"many exact hosts", `{host: {exact: [a, b, c, d, e, f, g, h, i, j, Target.Example]}}`, "GET / HTTP/1.1\r\nHost: TARGET.example\r\n\r\n", src, true},
		{"many exact hosts, none", `{host: {exact: [a, b, c, d, e, f, g, h, i, j]}}`, "GET / HTTP/1.1\r\nHost: k\r\n\r\n", src, false},
		{"path exact", `{path: {exact: /}}`, "GET /?x HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"path prefix is case-sensitive", `{path: {prefix: /API/}}`, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", src, false},
		{"path prefix ignoring case", `{path: {prefix: /API/, ignore_case: true}}`, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"path contains", `{path: {contains: /v2/}}`, "GET /api/v2/users HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"path contains ignoring case", `{path: {contains: /V2/, ignore_case: true}}`, "GET /api/v2/users HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"path regex anywhere", `{path: {regex: "[0-9]{3}"}}`, "GET /orders/123/items HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"path regex anchored", `{path: {regex: "^/[0-9]+$"}}`, "GET /orders/123 HTTP/1.1\r\nHost: a\r\n\r\n", src, false},
		{"path is not percent-decoded", `{path: {prefix: /admin}}`, "GET /%61dmin HTTP/1.1\r\nHost: a\r\n\r\n", src, false},
		{"path many exact", `{path: {exact: [/a, /b, /c, /d, /e, /f, /g, /h, /login]}}`, "GET /login?next=/ HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"method list", `{method: [PUT, DELETE]}`, "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"header present", `{header: {name: x-debug}}`, "GET / HTTP/1.1\r\nHost: a\r\nX-Debug: \r\n\r\n", src, true},
		{"header absent", `{header: {name: Authorization, present: false}}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"header absent, but present", `{header: {name: Authorization, present: false}}`, "GET / HTTP/1.1\r\nHost: a\r\nauthorization: x\r\n\r\n", src, false},
		{"header exact is case-sensitive", `{header: {name: X-Env, exact: prod}}`, "GET / HTTP/1.1\r\nHost: a\r\nX-Env: PROD\r\n\r\n", src, false},
		{"header exact, present true", `{header: {name: X-Env, present: true, exact: prod}}`, "GET / HTTP/1.1\r\nHost: a\r\nX-Env: prod\r\n\r\n", src, true},
		{"header value is whole, not split at commas", `{header: {name: Accept, exact: text/html}}`, "GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html, */*\r\n\r\n", src, false},
		{"header prefix on a hop-by-hop field", `{header: {name: Connection, prefix: keep}}`, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", src, true},
		{"query present", `{query: {name: debug}}`, "GET /?a=1&debug HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"query absent", `{query: {name: debug, present: false}}`, "GET /?debugger=1 HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"query value", `{query: {name: lang, exact: [fr, de]}}`, "GET /?lang=de HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"query first value only", `{query: {name: lang, exact: de}}`, "GET /?lang=en&lang=de HTTP/1.1\r\nHost: a\r\n\r\n", src, false},
		{"query without a query", `{query: {name: lang, exact: ""}}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", src, false},
		{"query empty value", `{query: {name: lang, exact: ""}}`, "GET /?lang= HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"source port in range", `{source_port: {from: 1024, to: 65535}}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.1:1024", true},
		{"source port below", `{source_port: {from: 1024, to: 65535}}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.1:1023", false},
		{"source port one", `{source_port: {from: 5000}}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"source all of IPv4", `{source: 0.0.0.0/0}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "255.255.255.255:1", true},
		{"source IPv4 does not hold IPv6", `{source: 0.0.0.0/0}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "[2001:db8::1]:1", false},
		{"source all of IPv6", `{source: "::/0"}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "[2001:db8::1]:1", true},
		{"tls false holds on plain", `{tls: false}`, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", src, true},
		{"every field must hold", `{method: GET, path: {prefix: /api}, host: {exact: a}}`, "GET /api HTTP/1.1\r\nHost: b\r\n\r\n", src, false},
		{"any", `{any: [{method: POST}, {path: {prefix: /api}}]}`, "GET /api HTTP/1.1\r\nHost: b\r\n\r\n", src, true},
		{"any, none", `{any: [{method: POST}, {path: {prefix: /api}}]}`, "GET /web HTTP/1.1\r\nHost: b\r\n\r\n", src, false},
		{"all", `{all: [{method: GET}, {header: {name: X-A}}, {header: {name: X-B}}]}`, "GET / HTTP/1.1\r\nHost: b\r\nX-A: 1\r\nX-B: 2\r\n\r\n", src, true},
		{"all, one missing", `{all: [{method: GET}, {header: {name: X-A}}, {header: {name: X-B}}]}`, "GET / HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n\r\n", src, false},
		{"not of an any", `{not: {any: [{method: GET}, {method: HEAD}]}}`, "PUT / HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n", src, true},
		{"nested", `{any: [{all: [{source: 10.0.0.0/8}, {not: {path: {prefix: /admin}}}]}, {header: {name: X-Admin-Token}}]}`, "GET /admin HTTP/1.1\r\nHost: b\r\n\r\n", src, false},
		{"empty any member holds", `{any: [{}, {method: POST}]}`, "GET / HTTP/1.1\r\nHost: b\r\n\r\n", src, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compile(t, "HTTP", `{name: r, match: `+tc.match+`, route: static}`)
			in := Input{Source: netip.MustParseAddrPort(tc.src), Request: request(t, tc.head)}
			v := s.Eval(&in)
			if got := v.Action == Route; got != tc.want {
				t.Errorf("holds = %v, want %v (%s)", got, tc.want, outcome(s, v))
			}
		})
	}
}

// TLS and SNI are refused by validation until listeners terminate TLS, but
// the matcher is ready for them.
func TestTLSAndSNI(t *testing.T) {
	spec := &sluicev1.Rule{
		Match:  &sluicev1.Match{Tls: new(true), Sni: &sluicev1.StringMatch{Domain: []string{"example.com"}}},
		Action: &sluicev1.Rule_Deny{Deny: &sluicev1.Deny{}},
	}
	s, err := Compile([]*sluicev1.Rule{spec}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, tc := range []struct {
		tls  bool
		sni  string
		want Action
	}{
		{true, "api.Example.com", Deny},
		{true, "example.org", Continue},
		{false, "api.example.com", Continue},
	} {
		in := Input{TLS: tc.tls, SNI: []byte(tc.sni), Request: req}
		if got := s.Eval(&in).Action; got != tc.want {
			t.Errorf("tls %v sni %q: %s, want %s", tc.tls, tc.sni, got, tc.want)
		}
	}
}

func TestTCPRules(t *testing.T) {
	s := compile(t, "TCP",
		`{name: bad, match: {source: [192.0.2.0/24]}, deny: {}}`,
		`{name: low-ports, match: {source_port: {from: 1, to: 1023}}, route: static}`,
		`{name: office, match: {source: 10.0.0.0/8}, allow: {}}`,
		`{name: deny-all, deny: {}}`,
	)
	for src, want := range map[string]string{
		"192.0.2.1:5000": "deny by bad",
		"10.0.0.1:80":    "route static by low-ports",
		"10.0.0.1:5000":  "allow by office",
		"11.0.0.1:5000":  "deny by deny-all",
	} {
		in := Input{Source: netip.MustParseAddrPort(src)}
		v := s.Eval(&in)
		if got := outcome(s, v); got != want {
			t.Errorf("%s: got %s, want %s", src, got, want)
		}
		if v.Answer != nil {
			t.Errorf("%s: a TCP verdict with an HTTP answer", src)
		}
	}
}

func TestRulesWithoutActionEditAndGoOn(t *testing.T) {
	s := compile(t, "HTTP",
		`{name: tag, request_headers: {set: {X-Env: prod}}}`,
		`{name: api, match: {path: {prefix: /api/}}, route: static, response_headers: {remove: Server}}`,
	)
	in := Input{Request: request(t, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n")}
	if got := outcome(s, s.Eval(&in)); got != "route static by api" {
		t.Errorf("got %s", got)
	}
	in = Input{Request: request(t, "GET /web HTTP/1.1\r\nHost: a\r\n\r\n")}
	if got := outcome(s, s.Eval(&in)); got != "continue" {
		t.Errorf("got %s", got)
	}
}

func TestRoutesAreIndexedOnce(t *testing.T) {
	s := compile(t, "HTTP", `{route: static}`, `{route: com}`, `{route: static}`)
	if got := strings.Join(s.Routes(), ","); got != "static,com" {
		t.Errorf("Routes() = %s", got)
	}
	if s.rules[2].route != 0 {
		t.Errorf("the second route to static has index %d", s.rules[2].route)
	}
	var none *Set
	in := Input{}
	if v := none.Eval(&in); v.Action != Continue || v.Rule != -1 || none.Len() != 0 {
		t.Errorf("a nil Set decided %+v", v)
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule *sluicev1.Rule
		http bool
		want string
	}{
		{"nothing", &sluicev1.Rule{}, true, "rules[0]: has no action"},
		{"bad regex", &sluicev1.Rule{Match: &sluicev1.Match{Path: &sluicev1.StringMatch{Regex: []string{"(?=x)"}}}, Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, true, "rules[0].match.path"},
		{"bad source", &sluicev1.Rule{Match: &sluicev1.Match{Source: []string{"10.0.0.1/8"}}, Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, true, "rules[0].match.source"},
		{"HTTP match on TCP", &sluicev1.Rule{Match: &sluicev1.Match{Method: []string{"GET"}}, Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, false, "rules[0].match.method: only on HTTP listeners"},
		{"redirect on TCP", &sluicev1.Rule{Action: &sluicev1.Rule_Redirect{Redirect: &sluicev1.Redirect{Scheme: "https"}}}, false, "rules[0].redirect"},
		{"edits with deny", &sluicev1.Rule{Action: &sluicev1.Rule_Deny{Deny: &sluicev1.Deny{}}, RequestHeaders: &sluicev1.HeaderEdits{Remove: []string{"X"}}}, true, "header edits with deny"},
		{"proxy field", &sluicev1.Rule{RequestHeaders: &sluicev1.HeaderEdits{Remove: []string{"Transfer-Encoding"}}}, true, "rules[0].request_headers"},
		{"deny status", &sluicev1.Rule{Action: &sluicev1.Rule_Deny{Deny: &sluicev1.Deny{Status: 302}}}, true, "rules[0].deny.status"},
		{"redirect nowhere", &sluicev1.Rule{Action: &sluicev1.Rule_Redirect{Redirect: &sluicev1.Redirect{Code: 301}}}, true, "rules[0].redirect"},
		{"port range", &sluicev1.Rule{Match: &sluicev1.Match{SourcePort: &sluicev1.PortRange{From: 9, To: 8}}, Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, true, "rules[0].match.source_port"},
		{"present false with patterns", &sluicev1.Rule{Match: &sluicev1.Match{Header: &sluicev1.HeaderMatch{Name: "A", Present: new(false), Exact: []string{"x"}}}, Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, true, "rules[0].match.header.present"},
		{"too deep", &sluicev1.Rule{Match: nest(snapshot.MaxMatchDepth + 1), Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}}, true, "nest more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compile([]*sluicev1.Rule{tc.rule}, tc.http, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile = %v, %v; want an error with %q", s, err, tc.want)
			}
		})
	}
}

// nest is a match depth levels deep.
func nest(depth int) *sluicev1.Match {
	m := &sluicev1.Match{Method: []string{"GET"}}
	for range depth - 1 {
		m = &sluicev1.Match{Not: m}
	}
	return m
}

// The proxy and the snapshot agree on which fields rules may not touch.
func TestProxyFieldsAgree(t *testing.T) {
	for _, name := range []string{"Host", "content-length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
		"TE", "Trailer", "Upgrade", "Expect", "Cookie", "Set-Cookie", "X-Forwarded-For", "Via", "Server", "Content-Type"} {
		_, err := httpproxy.NewHeaderEdits([]string{name}, nil, nil)
		if refused := err != nil; refused != snapshot.ProxyField(name) {
			t.Errorf("%s: the proxy refuses it: %v, the snapshot: %v", name, refused, snapshot.ProxyField(name))
		}
	}
}

func TestEvalDoesNotAllocate(t *testing.T) {
	s := compile(t, "HTTP", benchRules(20)...)
	req := request(t, benchHead)
	src := netip.MustParseAddrPort("203.0.113.9:40000")
	n := testing.AllocsPerRun(1000, func() {
		in := Input{Source: src, Request: req}
		if v := s.Eval(&in); v.Action != Continue {
			t.Fatalf("bench request decided: %s", outcome(s, v))
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per evaluation", n)
	}
}
