package snapshot

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "unknown key with a suggestion",
			in: `clusters:
  - name: web
    endpoints: []
    lb_polcy: ROUND_ROBIN
`,
			want: []string{`clusters[0].lb_polcy: unknown field, did you mean "lb_policy"? (line 4)`},
		},
		{
			name: "unknown key without a suggestion",
			in:   "clusters:\n  - name: web\n    colour: blue\n",
			want: []string{"clusters[0].colour: unknown field (line 3)"},
		},
		{
			name: "unknown top-level key",
			in:   "cluster:\n  - name: web\n",
			want: []string{`cluster: unknown field, did you mean "clusters"? (line 1)`},
		},
		{
			name: "string where a number goes",
			in:   "clusters:\n  - name: web\n    endpoints:\n      - { name: a, address: 10.0.0.1:80, weight: \"2\" }\n",
			want: []string{`clusters[0].endpoints[0].weight: expected an integer, got the string "2" (line 4)`},
		},
		{
			name: "float where an integer goes",
			in:   "clusters:\n  - name: web\n    health_check: { fall: 2.5 }\n",
			want: []string{"clusters[0].health_check.fall: expected an integer, got the number 2.5 (line 3)"},
		},
		{
			name: "YAML 1.1 boolean",
			in:   "clusters:\n  - name: web\n    endpoints:\n      - { name: a, address: 10.0.0.1:80, backup: yes }\n",
			want: []string{`clusters[0].endpoints[0].backup: expected true or false, got the string "yes" (line 4)`},
		},
		{
			name: "quoted boolean",
			in:   "clusters:\n  - name: web\n    endpoints:\n      - { name: a, address: 10.0.0.1:80, backup: \"true\" }\n",
			want: []string{`clusters[0].endpoints[0].backup: expected true or false, got the string "true" (line 4)`},
		},
		{
			name: "number where a string goes",
			in:   "clusters:\n  - name: 42\n",
			want: []string{"clusters[0].name: expected a string, got the integer 42; quote it to make it a string (line 2)"},
		},
		{
			// Quoted, a port alone would be refused for its missing host.
			name: "a port alone where a listener's address goes",
			in:   "listeners:\n  - { name: db, address: 6663 }\n",
			want: []string{`listeners[0].address: expected a string, got the integer 6663; write host:port, "127.0.0.1:6663", or ":6663" for every address (line 2)`},
		},
		{
			name: "a port alone where an endpoint's address goes",
			in:   "clusters:\n  - name: web\n    endpoints: [{ name: a, address: 9001 }]\n",
			want: []string{`clusters[0].endpoints[0].address: expected a string, got the integer 9001; write host:port, as "127.0.0.1:9001" (line 3)`},
		},
		{
			name: "list where a mapping goes",
			in:   "clusters:\n  - name: web\n    health_check: [2s, 3, 2]\n",
			want: []string{"clusters[0].health_check: expected a mapping, got a list (line 3)"},
		},
		{
			name: "mapping where a list goes",
			in:   "clusters:\n  web:\n    lb_policy: ROUND_ROBIN\n",
			want: []string{"clusters: expected a list, got a mapping (line 2)"},
		},
		{
			name: "mapping where a list of mappings goes is not a list of one",
			in:   "listeners:\n  - name: l\n    rules: { deny: {} }\n",
			want: []string{"listeners[0].rules: expected a list, got a mapping (line 3)"},
		},
		{
			name: "a scalar list of one keeps the element's type check",
			in:   "listeners:\n  - name: l\n    rules: [{ match: { method: 42 } }]\n",
			want: []string{"listeners[0].rules[0].match.method: expected a string, got the integer 42; quote it to make it a string (line 3)"},
		},
		{
			name: "two actions in one rule",
			in:   "listeners:\n  - name: l\n    rules:\n      - { route: web, deny: {} }\n",
			want: []string{"listeners[0].rules[0].deny: cannot be set together with route (one of route, deny, allow, redirect, respond) (line 4)"},
		},
		{
			name: "scalar where a resource goes",
			in:   "listeners:\n  - public\n",
			want: []string{`listeners[0]: expected a mapping, got the string "public" (line 2)`},
		},
		{
			name: "list where a scalar goes",
			in:   "listeners:\n  - name: [a, b]\n",
			want: []string{"listeners[0].name: expected a string, got a list (line 2)"},
		},
		{
			name: "null list element",
			in:   "clusters:\n  -\n  - name: web\n",
			want: []string{"clusters[0]: must not be null (line 2)"},
		},
		{
			name: "top level is not a mapping",
			in:   "- name: web\n",
			want: []string{"expected a mapping, got a list (line 1)"},
		},
		{
			name: "uint32 overflow",
			in:   "clusters:\n  - name: web\n    endpoints:\n      - { name: a, address: 10.0.0.1:80, weight: 4294967296 }\n",
			want: []string{"clusters[0].endpoints[0].weight: 4294967296 is out of range: must be 0 to 256 (line 4)"},
		},
		{
			name: "huge integer",
			in:   "clusters:\n  - name: web\n    health_check: { rise: 99999999999999999999999 }\n",
			want: []string{"clusters[0].health_check.rise: 99999999999999999999999 is out of range: must be 1 to 100 (line 3)"},
		},
		{
			// 010 is 8 to YAML 1.1, 10 to YAML 1.2; 08 is a float to 1.1.
			name: "leading zeros",
			in:   "clusters:\n  - name: web\n    health_check: { fall: 010, rise: 08, jitter_percent: 00 }\n    retries: -0_1\n",
			want: []string{
				"clusters[0].health_check.fall: 010 has a leading zero, which some YAML readers take as octal: write 10 (line 3)",
				"clusters[0].health_check.rise: 08 has a leading zero, which some YAML readers take as octal: write 8 (line 3)",
				"clusters[0].health_check.jitter_percent: 00 has a leading zero, which some YAML readers take as octal: write 0 (line 3)",
				"clusters[0].retries: -0_1 has a leading zero, which some YAML readers take as octal: write -1 (line 4)",
			},
		},
		{
			name: "negative unsigned",
			in:   "clusters:\n  - name: web\n    health_check: { fall: -1 }\n",
			want: []string{"clusters[0].health_check.fall: -1 is out of range: must be 1 to 100 (line 3)"},
		},
		{
			name: "negative unsigned, no rule on the field",
			in:   "listeners:\n  - { name: l, http: { max_request_body_bytes: -1 } }\n",
			want: []string{"listeners[0].http.max_request_body_bytes: -1 is out of range for uint64 (0 to 18446744073709551615) (line 2)"},
		},
		{
			name: "unknown enum value",
			in:   "listeners:\n  - name: l\n    protocol: UDP\n",
			want: []string{`listeners[0].protocol: unknown value "UDP"; valid: TCP, HTTP (line 3)`},
		},
		{
			name: "enum value in the wrong case",
			in:   "listeners:\n  - name: l\n    protocol: http\n",
			want: []string{`listeners[0].protocol: unknown value "http", did you mean "HTTP"? valid: TCP, HTTP (line 3)`},
		},
		{
			name: "enum as a number",
			in:   "listeners:\n  - name: l\n    protocol: 2\n",
			want: []string{"listeners[0].protocol: expected one of TCP, HTTP, got the integer 2 (line 3)"},
		},
		{
			name: "bad duration",
			in:   "clusters:\n  - name: web\n    connect_timeout: 5 seconds\n",
			want: []string{`clusters[0].connect_timeout: invalid duration "5 seconds": expected a duration like "3s", "1m30s" or "250ms" (line 3)`},
		},
		{
			name: "duration without a unit",
			in:   "clusters:\n  - name: web\n    connect_timeout: 5\n",
			want: []string{`clusters[0].connect_timeout: expected a duration like "3s", "1m30s" or "250ms", got the integer 5 (line 3)`},
		},
		{
			name: "duplicate key",
			in:   "clusters:\n  - name: web\n    lb_policy: ROUND_ROBIN\n    name: api\n",
			want: []string{"clusters[0].name: duplicate key, first set on line 2 (line 4)"},
		},
		{
			name: "duplicate top-level key",
			in:   "clusters: []\nlisteners: []\nclusters: []\n",
			want: []string{"clusters: duplicate key, first set on line 1 (line 3)"},
		},
		{
			name: "syntax error",
			in:   "clusters:\n  - name: web\n    lb_policy: ROUND_ROBIN\n   bad indent: 1\n",
			want: []string{"YAML syntax error: did not find expected '-' indicator (line 4)"},
		},
		{
			name: "syntax error in a nested mapping",
			in:   "a:\n  b: 1\n c: 2\n",
			want: []string{"YAML syntax error: did not find expected key (line 3)"},
		},
		{
			name: "mapping value in a plain scalar",
			in:   "clusters:\n  - name: web\n    lb_policy: a: b\n",
			want: []string{"YAML syntax error: mapping values are not allowed in this context (line 3)"},
		},
		{
			name: "tab indentation",
			in:   "clusters:\n  - name: web\n\tlb_policy: ROUND_ROBIN\n",
			want: []string{"YAML syntax error: found a tab character that violates indentation (line 3)"},
		},
		{
			name: "tab indentation where yaml.v3 does not name the tab",
			in:   "clusters:\n  - name: web\n    endpoints:\n\t  - {name: a}\n",
			want: []string{"YAML syntax error: found character that cannot start any token; the line is indented with a tab, and YAML indents with spaces only (line 4)"},
		},
		{
			name: "a tab after the indentation",
			in:   "clusters:\n  - name: web\n    lb_policy:\t@x\n",
			want: []string{"YAML syntax error: found character that cannot start any token (line 3)"},
		},
		{
			name: "unclosed list in a block document",
			in:   "clusters:\n  - name: web\n    endpoints: [\n      {name: a},\n      {name: b}\n      {name: c}\n    ]\n",
			want: []string{"YAML syntax error: did not find expected ',' or ']' (line 3)"},
		},
		{
			name: "JSON missing a comma",
			in:   "{\n  \"clusters\": [\n    {\"name\": \"a\"}\n    {\"name\": \"b\"}\n  ]\n}\n",
			want: []string{"YAML syntax error: did not find expected ',' or ']' (line 4)"},
		},
		{
			name: "unclosed flow mapping",
			in:   "clusters:\n  - { name: web\n",
			want: []string{"YAML syntax error: did not find expected ',' or '}' (line 2)"},
		},
		{
			name: "two documents",
			in:   "clusters: []\n---\nlisteners: []\n",
			want: []string{"only one YAML document is allowed; put each in its own file (line 2)"},
		},
		{
			name: "every fault at once",
			in: `clusters:
  - name: web
    lb_polcy: ROUND_ROBIN
    endpoints:
      - { name: a, address: 10.0.0.1:80, weight: "2" }
      - { name: b, address: 10.0.0.2:80, backup: on }
listeners:
  - { name: l, protocol: UDP, address: ":80" }
`,
			want: []string{
				`clusters[0].lb_polcy: unknown field, did you mean "lb_policy"? (line 3)`,
				`clusters[0].endpoints[0].weight: expected an integer, got the string "2" (line 5)`,
				`clusters[0].endpoints[1].backup: expected true or false, got the string "on" (line 6)`,
				`listeners[0].protocol: unknown value "UDP"; valid: TCP, HTTP (line 8)`,
			},
		},
		{
			name: "billion laughs",
			in: `a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
clusters: [*g]
`,
			want: []string{
				"a: unknown field (line 1)", "b: unknown field (line 2)", "c: unknown field (line 3)", "d: unknown field (line 4)",
				"e: unknown field (line 5)", "f: unknown field (line 6)", "g: unknown field (line 7)",
				`clusters[0]: expected a mapping, got a list (line 7)`,
			},
		},
		{
			name: "empty condition lists",
			in: `listeners:
  - name: web
    rules:
      - match: { source: [] }
        deny: {}
      - match: { any: [], not: { method: [] } }
        deny: {}
      - match: { host: { exact: [], prefix: [www.] }, header: { name: X-A, exact: [] } }
        deny: {}
`,
			want: []string{
				"listeners[0].rules[0].match.source: an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field (line 4)",
				"listeners[0].rules[1].match.any: an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field (line 6)",
				"listeners[0].rules[1].match.not.method: an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field (line 6)",
				"listeners[0].rules[2].match.host.exact: an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field (line 8)",
				"listeners[0].rules[2].match.header.exact: an empty list sets no condition, which widens the match (to all traffic, when it is the only one): give it values or drop the field (line 8)",
			},
		},
		{
			name: "empty list of trusted PROXY peers",
			in: `listeners:
  - name: web
    proxy_protocol: { required: true, trusted_sources: [] }
  - name: tcp
    proxy_protocol:
      trusted_sources: [10.0.0.0/8]
`,
			want: []string{
				"listeners[0].proxy_protocol.trusted_sources: an empty list trusts every peer's PROXY header, as leaving the field out does: give it addresses or drop the field (line 3)",
			},
		},
		{
			name: "alias cycle",
			in:   "clusters:\n  - &c\n    name: web\n    health_check: *c\n",
			want: []string{"clusters[0].health_check: alias refers to a mapping that contains it (line 4)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in), "")
			if got := errorLines(err); !equalLines(got, tt.want) {
				t.Errorf("Parse() faults:\n got: %q\nwant: %q", got, tt.want)
			}
			if s != nil {
				t.Errorf("Parse() returned a snapshot with faults: %v", s)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Errorf("Parse() error is %T, want Errors", err)
			}
		})
	}
}

func TestParseSourceInMessages(t *testing.T) {
	_, err := Parse([]byte("clusters:\n  - name: web\n    colour: blue\n"), "conf/web.yaml")
	want := []string{"clusters[0].colour: unknown field (conf/web.yaml:3)"}
	if got := errorLines(err); !equalLines(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *sluicev1.Snapshot
	}{
		{name: "empty document", in: "", want: &sluicev1.Snapshot{}},
		{name: "only comments", in: "# nothing yet\n", want: &sluicev1.Snapshot{}},
		{name: "empty mapping", in: "{}", want: &sluicev1.Snapshot{}},
		{name: "document markers", in: "---\nclusters: [{name: web}]\n---\n", want: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web"}}}},
		{name: "null document", in: "~\n", want: &sluicev1.Snapshot{}},
		{name: "null lists", in: "clusters:\nlisteners: ~\n", want: &sluicev1.Snapshot{}},
		{
			name: "full enum names and YAML 1.2 booleans",
			in:   "clusters:\n  - name: web\n    lb_policy: LB_POLICY_ROUND_ROBIN\n    endpoints: [{name: a, backup: True}, {name: b, backup: false}]\nlisteners: [{name: l, protocol: PROTOCOL_TCP}]\n",
			want: &sluicev1.Snapshot{
				Clusters: []*sluicev1.Cluster{{Name: "web", LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN,
					Endpoints: []*sluicev1.Endpoint{{Name: "a", Backup: true}, {Name: "b"}}}},
				Listeners: []*sluicev1.Listener{{Name: "l", Protocol: sluicev1.Protocol_PROTOCOL_TCP}},
			},
		},
		{
			name: "weight absent, zero, and set",
			in:   "clusters:\n  - name: web\n    endpoints: [{name: a}, {name: b, weight: 0}, {name: c, weight: 0x10}, {name: d, weight: 0o10}, {name: e, weight: 1_0}]\n",
			want: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web", Endpoints: []*sluicev1.Endpoint{
				{Name: "a"}, {Name: "b", Weight: proto.Uint32(0)}, {Name: "c", Weight: proto.Uint32(16)},
				{Name: "d", Weight: proto.Uint32(8)}, {Name: "e", Weight: proto.Uint32(10)}}}}},
		},
		{
			name: "durations",
			in:   "clusters:\n  - name: web\n    connect_timeout: 1m30s\n    drain_timeout: 250ms\n    health_check: {}\n",
			want: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web",
				ConnectTimeout: durationpb.New(90e9), DrainTimeout: durationpb.New(250e6), HealthCheck: &sluicev1.HealthCheck{}}}},
		},
		{
			name: "anchors and merge keys",
			in: `clusters:
  - name: web
    health_check: &hc { interval: 2s, fall: 3 }
  - name: api
    health_check:
      <<: *hc
      fall: 5
`,
			want: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{
				{Name: "web", HealthCheck: &sluicev1.HealthCheck{Interval: durationpb.New(2e9), Fall: proto.Uint32(3)}},
				{Name: "api", HealthCheck: &sluicev1.HealthCheck{Interval: durationpb.New(2e9), Fall: proto.Uint32(5)}},
			}},
		},
		{
			name: "a scalar where a list of scalars goes is a list of one",
			in: `listeners:
  - name: l
    rules:
      - match: { method: GET, host: { suffix: .com }, source: [10.0.0.0/8] }
        request_headers: { remove: X-Debug }
`,
			want: &sluicev1.Snapshot{Listeners: []*sluicev1.Listener{{Name: "l", Rules: []*sluicev1.Rule{{
				Match: &sluicev1.Match{
					Method: []string{"GET"},
					Host:   &sluicev1.StringMatch{Suffix: []string{".com"}},
					Source: []string{"10.0.0.0/8"},
				},
				RequestHeaders: &sluicev1.HeaderEdits{Remove: []string{"X-Debug"}},
			}}}}},
		},
		{
			name: "rule actions and header edit maps",
			in: `listeners:
  - name: l
    rules:
      - { name: api, match: { path: { prefix: /api/ } }, route: api, response_headers: { set: { Cache-Control: no-store } } }
      - { deny: { status: 429 } }
      - { allow: {} }
      - { redirect: { scheme: https } }
`,
			want: &sluicev1.Snapshot{Listeners: []*sluicev1.Listener{{Name: "l", Rules: []*sluicev1.Rule{
				{Name: "api", Match: &sluicev1.Match{Path: &sluicev1.StringMatch{Prefix: []string{"/api/"}}},
					Action:          &sluicev1.Rule_Route{Route: "api"},
					ResponseHeaders: &sluicev1.HeaderEdits{Set: map[string]string{"Cache-Control": "no-store"}}},
				{Action: &sluicev1.Rule_Deny{Deny: &sluicev1.Deny{Status: 429}}},
				{Action: &sluicev1.Rule_Allow{Allow: &sluicev1.Allow{}}},
				{Action: &sluicev1.Rule_Redirect{Redirect: &sluicev1.Redirect{Scheme: "https"}}},
			}}}},
		},
		{
			name: "JSON",
			in:   `{"clusters": [{"name": "web", "endpoints": [{"name": "a", "address": "10.0.0.1:80", "weight": 3, "backup": false}]}]}`,
			want: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web", Endpoints: []*sluicev1.Endpoint{
				{Name: "a", Address: "10.0.0.1:80", Weight: proto.Uint32(3)}}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), "")
			if err != nil {
				t.Fatalf("Parse() error: %v", err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("Parse():\n got: %v\nwant: %v", got, tt.want)
			}
		})
	}
}

func TestParseJSONWithTabs(t *testing.T) {
	in := "{\n\t\"clusters\": [\n\t\t{\"name\": \"web\"}\n\t]\n}\n"
	got, err := Parse([]byte(in), "web.json")
	if err != nil {
		t.Fatalf("Parse(web.json): %v", err)
	}
	if want := (&sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{Name: "web"}}}); !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseWeightPresence(t *testing.T) {
	// A weight written as 0 takes the endpoint out of rotation; an absent
	// one means 1. The difference must survive parsing.
	s := mustParse(t, "clusters: [{name: web, endpoints: [{name: a}, {name: b, weight: 0}]}]")
	eps := s.GetClusters()[0].GetEndpoints()
	if eps[0].Weight != nil {
		t.Errorf("a.weight = %d, want absent", eps[0].GetWeight())
	}
	if eps[1].Weight == nil {
		t.Errorf("b.weight absent, want 0")
	}
	if !strings.Contains(string(mustMarshal(t, s)), "weight: 0") {
		t.Errorf("Marshal dropped weight: 0")
	}
}

func TestParseFaultsInLineOrder(t *testing.T) {
	// A merged mapping's fault is reported at the anchor's line, before the
	// faults of the mapping that merges it.
	in := `clusters:
  - name: web
    health_check: &hc { interval: 2s, fal: 3 }
  - name: api
    health_check:
      <<: *hc
      rise: "2"
`
	want := []string{
		`clusters[0].health_check.fal: unknown field, did you mean "fall"? (line 3)`,
		`clusters[1].health_check.fal: unknown field, did you mean "fall"? (line 3)`,
		`clusters[1].health_check.rise: expected an integer, got the string "2" (line 7)`,
	}
	_, err := Parse([]byte(in), "")
	if got := errorLines(err); !equalLines(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
