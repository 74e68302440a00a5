package snapshot

import (
	"errors"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts is
// written by Marshal (and MarshalJSON) in a form Parse reads back unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalYAML))
	if b, err := os.ReadFile("../examples/quickstart.yaml"); err == nil {
		f.Add(b)
	}
	for _, seed := range []string{
		"",
		"{}",
		"clusters: [{name: web, endpoints: [{name: a, weight: 0}, {name: b, weight: 256, backup: true}]}]",
		"clusters:\n  - name: web\n    connect_timeout: 1m30s\n    health_check: {interval: 250ms, timeout: 1h}\n",
		"listeners: [{name: l, address: '[::1]:80', protocol: PROTOCOL_HTTP, http: {idle_timeout: 0s}}]",
		"clusters:\n  - &c {name: a}\n  - <<: *c\n    name: b\n",
		"clusters: [{name: \"multi\\nline\", endpoints: [{name: \"a: b\", address: \"#x\"}]}]",
		`{"clusters": [{"name": "web", "lb_policy": "ROUND_ROBIN"}]}`,
		"clusters:\n  - name: web\n    lb_polcy: X\n",
		"a: &a [1,2]\nb: [*a,*a]\n",
		"clusters: [{name: 'true'}, {name: '123'}, {name: '~'}, {name: ''}]",
		"listeners: [{name: l, rules: [{match: {method: GET, not: {source: 10.0.0.0/8}}, deny: {status: 403}}, {route: web, request_headers: {set: {X-A: b}}}]}]",
		"listeners: [{name: l, http: {max_request_body_bytes: -1, max_header_bytes: -2}}]",
		"clusters: [{name: db, lb_policy: HASH, hash: {key: URI}}]\nlisteners: [{name: t, protocol: TCP, default_cluster: db, tcp: {inspect_timeout: 1s}, rules: [{match: {any: [{sni: {exact: [a]}}]}, route: db}]}]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, root, err := parse(data, "")
		if err != nil {
			return
		}
		var es Errors
		errors.As(Validate(s), &es)
		for _, e := range append(es, Warnings(s)...) {
			_, _ = lineOf(root, splitPath(e.Path)) // as sluicectl places them
		}
		_ = Diff(nil, s)
		y, err := Marshal(s)
		if err != nil {
			t.Fatalf("Marshal of a parsed snapshot: %v\ninput: %q", err, data)
		}
		back, err := Parse(y, "")
		if err != nil {
			t.Fatalf("Parse(Marshal()): %v\ninput: %q\nyaml: %q", err, data, y)
		}
		if !proto.Equal(s, back) {
			t.Fatalf("YAML round trip differs\ninput: %q\nyaml: %q\n got: %v\nwant: %v", data, y, back, s)
		}
		j, err := MarshalJSON(s)
		if err != nil {
			t.Fatalf("MarshalJSON of a parsed snapshot: %v", err)
		}
		back, err = Parse(j, "x.json")
		if err != nil {
			t.Fatalf("Parse(MarshalJSON()): %v\njson: %q", err, j)
		}
		if !proto.Equal(s, back) {
			t.Fatalf("JSON round trip differs\njson: %q", j)
		}
	})
}
