package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// benchHead is a typical browser request head, as in httpproxy's
// benchmarks.
const benchHead = "GET /static/app.js?v=42 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"\r\n"

// benchRules is n rules of the kinds people write (host and path routing,
// header and query conditions, source blacklists, regexes, combinators),
// none of which holds for benchHead from 203.0.113.9: every one is looked
// at, the worst case.
func benchRules(n int) []string {
	templates := []string{
		`{name: host-{i}, match: {host: {exact: [tenant{i}.example.com, tenant{i}.example.net]}}, route: com}`,
		`{name: path-{i}, match: {path: {prefix: /svc{i}/}}, route: static}`,
		`{name: agent-{i}, match: {header: {name: User-Agent, contains: [bot{i}, crawler{i}], ignore_case: true}}, deny: {}}`,
		`{name: block-{i}, match: {source: [192.0.{i}.0/24, 198.51.100.{i}]}, deny: {}}`,
		`{name: api-{i}, match: {method: [POST, PUT], path: {regex: "^/api/v[0-9]+/item{i}$"}}, route: static}`,
		`{name: debug-{i}, match: {query: {name: debug{i}}, not: {source: 10.{i}.0.0/16}}, deny: {status: 404}}`,
		`{name: domain-{i}, match: {host: {domain: shop{i}.example.org}, path: {suffix: [.php{i}, .asp]}}, deny: {}}`,
		`{name: any-{i}, match: {any: [{header: {name: X-Tenant, exact: t{i}}}, {query: {name: tenant, exact: t{i}}}]}, route: com}`,
		`{name: legacy-{i}, match: {host: {suffix: .legacy{i}.com}}, redirect: {host: new{i}.example.com, code: 301}}`,
		`{name: cookie-{i}, match: {header: {name: Cookie, contains: beta{i}=on{i}}}, route: static}`,
	}
	out := make([]string, n)
	for i := range out {
		out[i] = strings.ReplaceAll(templates[i%len(templates)], "{i}", strconv.Itoa(i))
	}
	return out
}

// BenchmarkEval is one evaluation of 1, 20 and 200 rules of which none
// holds, the most work a request can take.
func BenchmarkEval(b *testing.B) {
	req := request(b, benchHead)
	src := netip.MustParseAddrPort("203.0.113.9:40000")
	for _, n := range []int{1, 20, 200} {
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			s := compile(b, "HTTP", benchRules(n)...)
			b.ReportAllocs()
			for b.Loop() {
				in := Input{Source: src, Request: req}
				if v := s.Eval(&in); v.Action != Continue {
					b.Fatalf("decided: %s", outcome(s, v))
				}
			}
		})
	}
}

// BenchmarkEvalSeed is the seed examples (examples/acl.yaml) for a request
// that the last one routes.
func BenchmarkEvalSeed(b *testing.B) {
	s := compile(b, "HTTP", seedRules...)
	req := request(b, benchHead)
	src := netip.MustParseAddrPort("203.0.113.9:40000")
	b.ReportAllocs()
	for b.Loop() {
		in := Input{Source: src, Request: req}
		if v := s.Eval(&in); v.Action != Route {
			b.Fatalf("decided: %s", outcome(s, v))
		}
	}
}

// BenchmarkSourceBlacklist is one lookup in a list of 100,000 prefixes.
func BenchmarkSourceBlacklist(b *testing.B) {
	var sources []string
	for i := range 100000 {
		sources = append(sources, fmt.Sprintf("%d.%d.%d.0/24", 1+i>>16, i>>8&0xff, i&0xff))
	}
	set, err := newIPSet(sources)
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		if set.contains(a) {
			b.Fatal("listed")
		}
	}
}

// BenchmarkRateLimit is one rule with a rate_limit, looked at for a client
// it tracks already, and for 100,000 clients in turn.
func BenchmarkRateLimit(b *testing.B) {
	req := request(b, benchHead)
	s := compile(b, "HTTP", `{rate_limit: {requests: 1000000000, period: 1m}, deny: {}}`)
	b.Run("one client", func(b *testing.B) {
		src := netip.MustParseAddrPort("203.0.113.9:40000")
		b.ReportAllocs()
		for b.Loop() {
			in := Input{Source: src, Request: req}
			s.Eval(&in)
		}
	})
	b.Run("many clients", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i = (i + 1) % 100000
			in := Input{Source: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000), Request: req}
			s.Eval(&in)
		}
	})
	b.Run("one API key", func(b *testing.B) {
		s := compile(b, "HTTP", `{rate_limit: {requests: 1000000000, period: 1m, header: X-API-Key}, deny: {}}`)
		req := request(b, strings.Replace(benchHead, "\r\n\r\n", "\r\nX-API-Key: 5f2b8c1e9a7d4e3f8b6c0a1d2e3f4a5b\r\n\r\n", 1))
		src := netip.MustParseAddrPort("203.0.113.9:40000")
		b.ReportAllocs()
		for b.Loop() {
			in := Input{Source: src, Request: req}
			s.Eval(&in)
		}
	})
}
