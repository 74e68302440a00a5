package snapshot

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// rulesDoc is a snapshot with clusters web, static and shop (cookie
// persistence) and one listener of protocol with the rules given in YAML
// flow style.
func rulesDoc(protocol string, rules ...string) string {
	return doc(
		[]string{okCluster, `{name: static}`, `{name: shop, cookie: {name: SERVERID}}`},
		[]string{`{name: l, address: ":80", protocol: ` + protocol + `, default_cluster: web, rules: [` + strings.Join(rules, ", ") + `]}`},
	)
}

func TestValidateRules(t *testing.T) {
	tests := []struct {
		name     string
		protocol string // HTTP unless set
		rules    []string
		want     []string
	}{
		{
			name: "the seed examples",
			rules: []string{
				`{name: blacklist, match: {source: [192.0.2.0/24, 198.51.100.7, "2001:db8::/32"]}, deny: {}}`,
				`{name: bots, match: {header: {name: User-Agent, contains: [curl, wget], ignore_case: true}}, deny: {}}`,
				`{name: read-only, match: {not: {method: [GET, HEAD]}}, deny: {status: 405, body: "GET and HEAD only\n"}}`,
				`{name: static, match: {path: {suffix: [.css, .js, .png]}}, route: static}`,
				`{name: com, match: {host: {suffix: .com}}, route: web}`,
				`{name: office, match: {source: 10.0.0.0/8}, allow: {}}`,
				`{name: to-https, redirect: {scheme: https}}`,
				`{deny: {}}`,
			},
		},
		{
			name: "every match and action",
			rules: []string{
				`{match: {host: {exact: [a.example, b.example], domain: example.org, regex: "^api[0-9]+\\.", ignore_case: true}}, route: web}`,
				`{match: {path: {prefix: /api/, contains: /v2/, exact: ""}}, respond: {status: 204, headers: {Cache-Control: no-store}}}`,
				`{match: {query: {name: debug}}, respond: {body: "hi\n", content_type: text/plain}}`,
				`{match: {query: {name: lang, exact: [en, fr]}}, redirect: {host: en.example.com, port: 8443, path: /en, strip_query: true, code: 308}}`,
				`{match: {header: {name: X-Debug, present: false}, source_port: {from: 1024, to: 65535}, tls: false}, redirect: {prefix: /v2}}`,
				`{match: {any: [{method: POST}, {all: [{method: PUT}, {header: {name: X-Token}}]}]}, deny: {status: 429, body: slow down, content_type: text/plain}}`,
				`{request_headers: {set: {X-Env: prod}, add: {Via: sluice}, remove: [X-Debug]}, response_headers: {remove: Server}}`,
				`{match: {path: {prefix: /api}}, route: static, request_headers: {remove: Cookie}}`,
			},
		},
		{
			name:  "unknown cluster with a suggestion",
			rules: []string{`{route: statc}`, `{route: billing}`},
			want: []string{
				`listeners[0].rules[0].route: unknown cluster "statc", did you mean "static"?`,
				`listeners[0].rules[1].route: unknown cluster "billing"`,
			},
		},
		{
			name:  "a rule that does nothing, duplicate names",
			rules: []string{`{name: a}`, `{name: a, allow: {}}`, `{name: "-x", allow: {}}`},
			want: []string{
				"listeners[0].rules[0]: does nothing: give it an action (route, deny, allow, redirect or respond) or header edits",
				`listeners[0].rules[1].name: duplicate rule name "a", first used at listeners[0].rules[0]`,
				"listeners[0].rules[2].name: must be empty or 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
			},
		},
		{
			name: "regular expressions in RE2 syntax",
			rules: []string{
				`{match: {path: {regex: "(a"}}, deny: {}}`,
				`{match: {header: {name: Referer, regex: ["ok", "(?=x)"]}}, deny: {}}`,
				`{match: {query: {name: q, regex: "\\1"}}, deny: {}}`,
			},
			want: []string{
				"listeners[0].rules[0].match.path.regex[0]: \"(a\" is not a valid regular expression (Go RE2 syntax): missing closing ): `(a`",
				"listeners[0].rules[1].match.header.regex[1]: \"(?=x)\" is not a valid regular expression (Go RE2 syntax): invalid or unsupported Perl syntax: `(?=`; RE2 has no lookaround or backreferences",
				"listeners[0].rules[2].match.query.regex[0]: \"\\\\1\" is not a valid regular expression (Go RE2 syntax): invalid escape sequence: `\\1`; RE2 has no lookaround or backreferences",
			},
		},
		{
			name: "sources and ports",
			rules: []string{
				`{match: {source: [10.0.0.0/33, 10.0.0.1/8, bad, "", "::ffff:10.0.0.0/104"], source_port: {from: 2000, to: 1000}}, deny: {}}`,
				`{match: {source_port: {from: 0}}, deny: {}}`,
			},
			want: []string{
				`listeners[0].rules[0].match.source[0]: "10.0.0.0/33" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
				`listeners[0].rules[0].match.source[1]: "10.0.0.1/8" has bits set past its length: write 10.0.0.0/8, or 10.0.0.1/32 for the one address`,
				`listeners[0].rules[0].match.source[2]: "bad" is not an IP address or a CIDR prefix like 10.0.0.0/8`,
				"listeners[0].rules[0].match.source[3]: must be 1 to 64 characters long",
				"listeners[0].rules[0].match.source_port: range 2000-1000 is reversed: from is the lower port",
				"listeners[0].rules[1].match.source_port.from: must be between 1 and 65535",
			},
		},
		{
			name: "statuses and codes",
			rules: []string{
				`{deny: {status: 200}}`,
				`{respond: {status: 600}}`,
				`{respond: {status: 304, body: x}}`,
				`{redirect: {scheme: ftp, code: 300}}`,
				`{redirect: {}}`,
				`{redirect: {path: /a, prefix: /b}}`,
				`{redirect: {path: "a?b", host: "example.com:80", port: 70000}}`,
				`{redirect: {host: "fe80::1%eth0"}}`,
			},
			want: []string{
				"listeners[0].rules[0].deny.status: must be between 400 and 599",
				"listeners[0].rules[1].respond.status: must be between 200 and 599",
				"listeners[0].rules[2].respond.body: a 304 response has no body",
				"listeners[0].rules[3].redirect.scheme: must be one of http https",
				"listeners[0].rules[3].redirect.code: must be one of 301 302 303 307 308, or left out",
				"listeners[0].rules[4].redirect: redirects to the very URL asked for: set scheme, host, port, path or prefix",
				"listeners[0].rules[5].redirect.prefix: a redirect replaces the path or puts a prefix before it, not both",
				`listeners[0].rules[6].redirect.host: "example.com:80" must be a DNS name or an IP address, without port (use port)`,
				"listeners[0].rules[6].redirect.port: must be <= 65535",
				`listeners[0].rules[6].redirect.path: "a?b" must start with / and hold no spaces, control characters, '?' or '#'`,
				`listeners[0].rules[7].redirect.host: "fe80::1%eth0" must be a DNS name or an IP address, without port (use port)`,
			},
		},
		{
			name: "header names and edits",
			rules: []string{
				`{match: {header: {name: "User Agent"}, method: ["GE T", get, PURGE]}, deny: {}}`,
				`{request_headers: {set: {Host: x, X-A: "1", x-a: "2"}, remove: [Content-Length, X-B, x-b]}, allow: {}}`,
				`{respond: {headers: {Content-Type: text/html, Connection: close, X-Ok: " padded"}}}`,
				`{deny: {}, response_headers: {add: {X-Denied: "1"}}}`,
				`{match: {header: {name: X-A, present: false, prefix: a}, query: {name: "a&b"}}, deny: {}}`,
			},
			want: []string{
				`listeners[0].rules[0].match.method[0]: "GE T" is not an HTTP method`,
				`listeners[0].rules[0].match.method[1]: "get": methods are case-sensitive, did you mean "GET"?`,
				"listeners[0].rules[0].match.header.name: \"User Agent\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)",
				"listeners[0].rules[1].request_headers.set[Host]: Host is the proxy's to write (framing and connection handling) and cannot be set by a rule",
				`listeners[0].rules[1].request_headers.set[x-a]: "X-A" and "x-a" are the same field (names ignore case)`,
				"listeners[0].rules[1].request_headers.remove[0]: Content-Length is the proxy's to write (framing and connection handling) and cannot be set by a rule",
				`listeners[0].rules[1].request_headers.remove[2]: "x-b" is already removed by listeners[0].rules[1].request_headers.remove[1]`,
				"listeners[0].rules[2].respond.headers[Connection]: Connection is the proxy's to write (framing and connection handling) and cannot be set by a rule",
				"listeners[0].rules[2].respond.headers[Content-Type]: use content_type",
				`listeners[0].rules[2].respond.headers[X-Ok]: value " padded" may not contain control characters or start or end with a space`,
				"listeners[0].rules[3].response_headers: only with route, allow or no action: with deny, redirect or respond the proxy answers itself and nothing is forwarded",
				"listeners[0].rules[4].match.header.present: present: false holds only without the field, whose value then matches nothing: drop the patterns or present",
				`listeners[0].rules[4].match.query.name: "a&b" is not a query parameter name (no '&', '=', '#', spaces or control characters)`,
			},
		},
		{
			name: "string matches",
			rules: []string{
				`{match: {path: {domain: example.com}}, deny: {}}`,
				`{match: {host: {domain: "exa mple.com"}}, deny: {}}`,
				`{match: {host: {ignore_case: true}}, deny: {}}`,
				`{match: {path: {prefix: ""}}, deny: {}}`,
			},
			want: []string{
				"listeners[0].rules[0].match.path.domain: only for host and sni",
				`listeners[0].rules[1].match.host.domain[0]: "exa mple.com" is not a DNS name`,
				"listeners[0].rules[2].match.host: has no pattern: give it exact, prefix, suffix, contains, regex or domain",
				"listeners[0].rules[3].match.path.prefix[0]: must be 1 to 4096 characters long",
			},
		},
		{
			name: "TLS and SNI never hold yet; an empty not never holds",
			rules: []string{
				`{match: {tls: true, sni: {exact: a.example}}, deny: {}}`,
				`{match: {not: {}}, deny: {}}`,
			},
			want: []string{
				"listeners[0].rules[0].match.tls: never holds: the listener has no tls block, every connection is plain",
				"listeners[0].rules[0].match.sni: never holds: the listener has no tls block, so no client sends a server name",
				"listeners[0].rules[1].match.not: an empty match always holds, so not: {} never does",
			},
		},
		{
			name:  "nesting too deep",
			rules: []string{`{match: {not: {not: {not: {not: {not: {not: {not: {not: {method: GET}}}}}}}}}, deny: {}}`},
			want:  []string{"listeners[0].rules[0].match.not.not.not.not.not.not.not.not: matches nest more than 8 deep: the rule's own and 7 levels of all, any and not at most"},
		},
		{
			name:     "TCP listeners: source, port, route, allow and a plain deny",
			protocol: "TCP",
			rules: []string{
				`{match: {source: [192.0.2.0/24]}, deny: {}}`,
				`{match: {any: [{source: 10.0.0.0/8}, {source_port: {from: 1, to: 1023}}]}, route: static}`,
				`{allow: {}}`,
			},
		},
		{
			name:     "TCP listeners: TLS passthrough routes on tls and sni",
			protocol: "TCP",
			rules: []string{
				`{match: {sni: {exact: a.example}}, route: static}`,
				`{match: {sni: {domain: [b.example]}, tls: true}, route: web}`,
				`{match: {not: {tls: true}}, deny: {}}`,
			},
		},
		{
			name:     "TCP listeners: sni patterns are checked as host's",
			protocol: "TCP",
			rules: []string{
				`{match: {sni: {regex: "("}}, route: static}`,
				`{match: {sni: {domain: ["*.example.com", "a b"]}}, route: static}`,
				`{match: {sni: {}}, route: static}`,
			},
			want: []string{
				"listeners[0].rules[0].match.sni.regex[0]: \"(\" is not a valid regular expression (Go RE2 syntax): missing closing ): `(`",
				`listeners[0].rules[1].match.sni.domain[0]: "*.example.com" is not a DNS name ("example.com" holds for every subdomain, and for example.com itself)`,
				`listeners[0].rules[1].match.sni.domain[1]: "a b" is not a DNS name`,
				"listeners[0].rules[2].match.sni: has no pattern: give it exact, prefix, suffix, contains, regex or domain",
			},
		},
		{
			name:     "TCP listeners: what needs a request",
			protocol: "TCP",
			rules: []string{
				`{match: {host: {exact: a}, path: {prefix: /}, method: GET, header: {name: A}, query: {name: b}}, deny: {}}`,
				`{match: {all: [{method: GET}]}, deny: {status: 403}}`,
				`{redirect: {scheme: https}}`,
				`{respond: {}}`,
				`{route: shop, request_headers: {remove: X}}`,
			},
			want: []string{
				"listeners[0].rules[0].match.host: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[0].match.path: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[0].match.method: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[0].match.header: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[0].match.query: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[1].match.all[0].method: only on HTTP listeners: a TCP listener sees no request, only the client's address",
				"listeners[0].rules[1].deny: a TCP listener closes a denied connection: status, body and content_type are for HTTP listeners; write deny: {}",
				"listeners[0].rules[2].redirect: only on HTTP listeners: a TCP listener can route, allow or deny (close)",
				"listeners[0].rules[3].respond: only on HTTP listeners: a TCP listener can route, allow or deny (close)",
				`listeners[0].rules[4].route: cluster "shop" has cookie persistence, which needs an HTTP listener (use stick: { on: SOURCE_IP } for TCP)`,
				"listeners[0].rules[4].request_headers: only on HTTP listeners",
			},
		},
		{
			name: "rate_limit by header",
			rules: []string{
				`{rate_limit: {requests: 1, period: 1m, header: "X API"}, deny: {}}`,
				`{rate_limit: {requests: 1, period: 1m, header: X-API-Key, ipv4_prefix: 24, ipv6_prefix: 64}, deny: {}}`,
				`{rate_limit: {requests: 1, period: 1m, header: X-API-Key}, deny: {}}`,
			},
			want: []string{
				`listeners[0].rules[0].rate_limit.header: "X API" is not a valid header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~ only)`,
				"listeners[0].rules[1].rate_limit.ipv4_prefix: counts addresses, and this rate_limit counts the values of header X-API-Key: drop one of them",
				"listeners[0].rules[1].rate_limit.ipv6_prefix: counts addresses, and this rate_limit counts the values of header X-API-Key: drop one of them",
			},
		},
		{
			name:     "TCP listeners: rate_limit by header",
			protocol: "TCP",
			rules:    []string{`{rate_limit: {requests: 1, period: 1m, header: X-API-Key}, deny: {}}`},
			want: []string{
				"listeners[0].rules[0].rate_limit.header: only on HTTP listeners: a TCP listener sees no request, and counts clients by address",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			protocol := tt.protocol
			if protocol == "" {
				protocol = "HTTP"
			}
			s := mustParse(t, rulesDoc(protocol, tt.rules...))
			if got := errorLines(Validate(s)); !equalLines(got, tt.want) {
				t.Errorf("Validate() faults:\n got: %q\nwant: %q", got, tt.want)
			}
			// Whatever validates survives the YAML round trip.
			back, err := Parse(mustMarshal(t, s), "")
			if err != nil || !proto.Equal(back, s) {
				t.Errorf("round trip: %v\n got: %v\nwant: %v", err, back, s)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"::1", "::1/128"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
	} {
		p, err := ParseSource(tt.in)
		if err != nil || p != netip.MustParsePrefix(tt.want) {
			t.Errorf("ParseSource(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0.1/8", "fe80::1%eth0", "::ffff:0:0/90", "example.com"} {
		if p, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) = %v, want an error", bad, p)
		}
	}
}
