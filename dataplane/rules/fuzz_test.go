package rules

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// rulesSnapshot parses a snapshot whose one listener has the rules written
// in YAML flow style as a list.
func rulesSnapshot(rules []byte, tcp bool) (*sluicev1.Snapshot, error) {
	protocol := "HTTP"
	if tcp {
		protocol = "TCP"
	}
	doc := "clusters: [{name: web}, {name: static}, {name: com}]\nlisteners:\n  - {name: l, address: \"127.0.0.1:80\", protocol: " +
		protocol + ", default_cluster: web, rules: " + string(rules) + "}\n"
	return snapshot.Parse([]byte(doc), "")
}

var fuzzRuleSeeds = []string{
	"[" + strings.Join(seedRules, ", ") + "]",
	`[{match: {source: [10.0.0.0/8, "::1"]}, allow: {}}, {deny: {}}]`,
	`[{match: {any: [{host: {domain: example.com}}, {not: {path: {regex: "^/a+$", ignore_case: true}}}]}, route: static}]`,
	`[{match: {query: {name: q, exact: [a, b, c, d, e, f, g, h, i]}, header: {name: X, present: false}}, respond: {status: 204}}]`,
	`[{request_headers: {set: {X-A: b}, remove: [X-B]}}, {match: {source_port: {from: 1, to: 1023}, tls: false}, redirect: {scheme: https}}]`,
	`[{match: {host: {exact: [A, B, C, D, E, F, G, H, I], ignore_case: true}, path: {contains: [/X/, /y/], ignore_case: true}}, deny: {status: 429}}]`,
	`[{match: {all: [{method: GET}, {header: {name: Cookie, contains: beta=on}}]}, route: com}]`,
	`[{match: {host: {domain: example.com}}, route: com}, {match: {source_port: {from: 1000, to: 2000}}, deny: {}}]`,
	`[{name: api, match: {path: {prefix: /api/}}, rate_limit: {requests: 2, period: 1s, max_clients: 3}, deny: {status: 429}}, {rate_limit: {requests: 1, period: 1m, ipv4_prefix: 24, ipv6_prefix: 64}, request_headers: {set: {X-Over: "1"}}}]`,
	`[{name: key, rate_limit: {requests: 1, period: 1m, header: X, max_clients: 2}, deny: {status: 429}}, {match: {header: {name: x}}, route: com}]`,
	`[{match: {path: {suffix: .css, prefix: /x}, query: {name: q}}, route: static}, {match: {header: {name: user-agent, contains: wget, ignore_case: true}}, deny: {}}]`,
}

// FuzzCompile: any rules, valid or not, compile or are refused without a
// panic; rules that snapshot.Validate accepts always compile. The bytes
// are tried as YAML and as a protobuf Listener.
func FuzzCompile(f *testing.F) {
	for _, s := range fuzzRuleSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		if s, err := rulesSnapshot(data, tcp); err == nil {
			ls := s.GetListeners()[0]
			set, err := Compile(ls.GetRules(), !tcp, ls.GetHttp().GetErrorPages())
			if verr := snapshot.Validate(s); verr == nil && err != nil {
				t.Fatalf("validated rules do not compile: %v\nrules: %s", err, data)
			}
			if err == nil && set.Len() != len(ls.GetRules()) {
				t.Fatalf("%d rules compiled of %d", set.Len(), len(ls.GetRules()))
			}
		}
		var ls sluicev1.Listener
		if proto.Unmarshal(data, &ls) == nil {
			Compile(ls.GetRules(), !tcp, ls.GetHttp().GetErrorPages())
		}
	})
}

var fuzzHeads = []string{
	benchHead,
	"GET / HTTP/1.1\r\nHost: shop.Example.COM:8080\r\nUser-Agent: curl/8\r\n\r\n",
	"POST /api/a?q=b&x HTTP/1.1\r\nHost: [::1]:80\r\nX: 1\r\nCookie: beta=on\r\nContent-Length: 0\r\n\r\n",
	"get http://u@h.example.com./AAA?q=i HTTP/1.0\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\nx: \r\n\r\n",
	"PUT /x.CSS HTTP/1.1\r\nHost: badexample.com\r\nuser-agent: xWGETx\r\nContent-Length: 0\r\n\r\n",
}

// FuzzEval: for rules that validate and any request the proxy accepts, the
// compiled rules decide as a plain interpretation of the snapshot does
// (refDecide), from any source address.
func FuzzEval(f *testing.F) {
	for i, s := range fuzzRuleSeeds {
		for j, h := range fuzzHeads {
			f.Add([]byte(s), []byte(h), []byte{192, 0, 2, byte(i)}, uint16(1000*j), i%2 == 0)
		}
	}
	f.Fuzz(func(t *testing.T, rules, head, addr []byte, port uint16, tls bool) {
		s, err := rulesSnapshot(rules, false)
		if err != nil || snapshot.Validate(s) != nil {
			return
		}
		specs := s.GetListeners()[0].GetRules()
		set, err := Compile(specs, true, nil)
		if err != nil {
			t.Fatalf("validated rules do not compile: %v", err)
		}
		req, err := httpproxy.ParseRequest(head)
		if err != nil {
			return
		}
		var ip netip.Addr
		switch len(addr) {
		case 4:
			ip = netip.AddrFrom4([4]byte(addr))
		case 16:
			ip = netip.AddrFrom16([16]byte(addr))
		default:
			return
		}
		src := netip.AddrPortFrom(ip, port)
		in := Input{Source: src, TLS: tls, SNI: req.Host(), Request: req}
		v := set.Eval(&in)
		wantRule, wantAction := refDecide(t, specs, req, src, tls)
		if v.Rule != wantRule || v.Action != wantAction {
			t.Fatalf("Eval decided %s by rule %d, the reference %s by rule %d\nrules: %s\nrequest: %q from %s",
				v.Action, v.Rule, wantAction, wantRule, rules, head, src)
		}
		if (v.Answer != nil) != (v.Action == Deny || v.Action == Redirect || v.Action == Respond) {
			t.Fatalf("%s with answer %v", v.Action, v.Answer)
		}
	})
}

// refDecide interprets rules for a request the slow, obvious way: the
// index and action of the first rule whose match holds and that has an
// action.
func refDecide(t *testing.T, specs []*sluicev1.Rule, req *httpproxy.Request, src netip.AddrPort, tls bool) (int, Action) {
	for i, r := range specs {
		if r.Match != nil && !refMatch(t, r.Match, req, src, tls) {
			continue
		}
		if rl := r.GetRateLimit(); rl != nil && rl.GetRequests() >= 1 {
			continue // one request, the first: never over a rate
		}
		switch r.GetAction().(type) {
		case *sluicev1.Rule_Route:
			return i, Route
		case *sluicev1.Rule_Allow:
			return i, Allow
		case *sluicev1.Rule_Deny:
			return i, Deny
		case *sluicev1.Rule_Redirect:
			return i, Redirect
		case *sluicev1.Rule_Respond:
			return i, Respond
		}
	}
	return -1, Continue
}

func refMatch(t *testing.T, m *sluicev1.Match, req *httpproxy.Request, src netip.AddrPort, tls bool) bool {
	if m.Host != nil && !refStrings(t, m.Host, m.Host.GetDomain(), true, refHost(req.Host())) {
		return false
	}
	if m.Path != nil && !refStrings(t, m.Path, nil, false, string(req.URLPath())) {
		return false
	}
	if len(m.Method) > 0 && !contains(m.Method, string(req.Method())) {
		return false
	}
	if h := m.Header; h != nil {
		var values []string
		for v, i := req.NextHeader(h.GetName(), 0); i >= 0; v, i = req.NextHeader(h.GetName(), i) {
			values = append(values, string(v))
		}
		switch {
		case h.Present != nil && !h.GetPresent():
			if len(values) > 0 {
				return false
			}
		case !hasPatterns(h):
			if len(values) == 0 {
				return false
			}
		default:
			ok := false
			for _, v := range values {
				ok = ok || refStrings(t, h, nil, false, v)
			}
			if !ok {
				return false
			}
		}
	}
	if q := m.Query; q != nil {
		v := req.Query(q.GetName())
		switch {
		case q.Present != nil && !q.GetPresent():
			if v != nil {
				return false
			}
		case !hasPatterns(q):
			if v == nil {
				return false
			}
		default:
			if v == nil || !refStrings(t, q, nil, false, string(v)) {
				return false
			}
		}
	}
	if len(m.Source) > 0 {
		ok := false
		for _, s := range m.Source {
			p, err := snapshot.ParseSource(s)
			if err != nil {
				t.Fatal(err)
			}
			ok = ok || p.Contains(src.Addr().Unmap())
		}
		if !ok {
			return false
		}
	}
	if pr := m.SourcePort; pr != nil {
		to := pr.GetTo()
		if to == 0 {
			to = pr.GetFrom()
		}
		if p := uint32(src.Port()); p < pr.GetFrom() || p > to {
			return false
		}
	}
	if m.Tls != nil && m.GetTls() != tls {
		return false
	}
	if m.Sni != nil && !refStrings(t, m.Sni, m.Sni.GetDomain(), true, string(req.Host())) {
		return false
	}
	for _, sub := range m.All {
		if !refMatch(t, sub, req, src, tls) {
			return false
		}
	}
	if len(m.Any) > 0 {
		ok := false
		for _, sub := range m.Any {
			ok = ok || refMatch(t, sub, req, src, tls)
		}
		if !ok {
			return false
		}
	}
	if m.Not != nil && refMatch(t, m.Not, req, src, tls) {
		return false
	}
	return true
}

type refPatterns interface {
	GetExact() []string
	GetPrefix() []string
	GetSuffix() []string
	GetContains() []string
	GetRegex() []string
	GetIgnoreCase() bool
}

func hasPatterns(p refPatterns) bool {
	return len(p.GetExact())+len(p.GetPrefix())+len(p.GetSuffix())+len(p.GetContains())+len(p.GetRegex()) > 0
}

func refStrings(t *testing.T, p refPatterns, domains []string, names bool, v string) bool {
	fold := p.GetIgnoreCase() || names
	low := func(s string) string {
		if fold {
			return asciiLower(s)
		}
		return s
	}
	lv := low(v)
	for _, s := range p.GetExact() {
		if lv == low(s) {
			return true
		}
	}
	for _, s := range p.GetPrefix() {
		if strings.HasPrefix(lv, low(s)) {
			return true
		}
	}
	for _, s := range p.GetSuffix() {
		if strings.HasSuffix(lv, low(s)) {
			return true
		}
	}
	for _, s := range p.GetContains() {
		if strings.Contains(lv, low(s)) {
			return true
		}
	}
	for _, d := range domains {
		d = low(strings.Trim(d, "."))
		if lv == d || strings.HasSuffix(lv, "."+d) {
			return true
		}
	}
	for _, expr := range p.GetRegex() {
		re, err := snapshot.CompileRegex(expr, fold)
		if err != nil {
			t.Fatal(err)
		}
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

// refHost is the host of a Host value as rules compare it.
func refHost(h []byte) string {
	s := string(h)
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		s = s[1:]
		if i := strings.IndexByte(s, ']'); i >= 0 {
			s = s[:i]
		}
		return s
	}
	if strings.Count(s, ":") == 1 {
		s = s[:strings.IndexByte(s, ':')]
	}
	if len(s) > 1 {
		s = strings.TrimSuffix(s, ".")
	}
	return s
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
