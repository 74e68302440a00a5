package snapshot

import (
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func TestDiff(t *testing.T) {
	base := minimalYAML
	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{
			name: "from nothing",
			new:  base,
			want: []string{"+ cluster web", "+ listener public", "+ listener db"},
		},
		{
			name: "unchanged",
			old:  base,
			new:  base,
		},
		{
			name: "weight changed and endpoint added",
			old:  "clusters: [{name: web, endpoints: [{name: web1, weight: 2}, {name: web2, weight: 1}]}]",
			new:  "clusters: [{name: web, endpoints: [{name: web1, weight: 2}, {name: web2, weight: 3}, {name: web3}]}]",
			want: []string{"~ cluster web: endpoint web2 weight 1 -> 3; +endpoint web3"},
		},
		{
			name: "endpoint removed, weight unset and set, backup flipped",
			old:  "clusters: [{name: web, endpoints: [{name: a}, {name: b, weight: 0}, {name: c}]}]",
			new:  "clusters: [{name: web, endpoints: [{name: a, weight: 0, backup: true}, {name: b}]}]",
			want: []string{"~ cluster web: endpoint a weight 1 (default) -> 0; endpoint a backup false -> true; endpoint b weight 0 -> 1 (default); -endpoint c"},
		},
		{
			name: "named rules are diffed by name",
			old:  "listeners: [{name: l, rules: [{name: bots, match: {header: {name: User-Agent, contains: curl}}, deny: {}}, {name: static, route: a}]}]",
			new:  "listeners: [{name: l, rules: [{name: static, route: b}, {name: bots, match: {header: {name: User-Agent, contains: [curl, wget]}}, deny: {}}, {name: all, allow: {}}]}]",
			want: []string{"~ listener l: rule static route a -> b; rule bots match.header.contains; +rule all; rules reordered"},
		},
		{
			name: "unnamed rules are diffed as a whole",
			old:  "listeners: [{name: l, rules: [{deny: {}}]}]",
			new:  "listeners: [{name: l, rules: [{allow: {}}, {deny: {}}]}]",
			want: []string{"~ listener l: rules"},
		},
		{
			name: "endpoints reordered",
			old:  "clusters: [{name: web, endpoints: [{name: a}, {name: b}]}]",
			new:  "clusters: [{name: web, endpoints: [{name: b}, {name: a}]}]",
			want: []string{"~ cluster web: endpoints reordered"},
		},
		{
			name: "policy, health check and timeouts",
			old:  "clusters: [{name: web, health_check: {interval: 2s}, connect_timeout: 4s}]",
			new:  "clusters: [{name: web, lb_policy: LEAST_CONN, health_check: {interval: 5s, fall: 2}, drain_timeout: 1m30s}]",
			want: []string{"~ cluster web: lb_policy ROUND_ROBIN (default) -> LEAST_CONN; health_check.interval 2s -> 5s; health_check.fall 3 (default) -> 2; connect_timeout 4s -> 5s (default); drain_timeout 0s (default) -> 1m30s"},
		},
		{
			name: "optional fields without a default, and a message added inside one",
			old:  "clusters: [{name: web, health_check: {}, queue_timeout: 3s}]",
			new:  "clusters: [{name: web, health_check: {timeout: 1s, http: {path: /healthz}}}]",
			want: []string{"~ cluster web: health_check.timeout unset -> 1s; +health_check.http; queue_timeout 3s -> unset"},
		},
		{
			name: "limits set and unset say what their 0 and their absence mean",
			old:  "listeners: [{name: l, max_connections: 500, http: {max_header_bytes: 16384, idle_timeout: 5m}}]",
			new:  "listeners: [{name: l, http: {max_header_bytes: 0, max_request_body_bytes: 1024}}]",
			want: []string{"~ listener l: http.idle_timeout 5m -> 60s (default); http.max_header_bytes 16384 -> 65535 (default); http.max_request_body_bytes 0 (no limit) -> 1024; max_connections 500 -> 0 (no cap)"},
		},
		{
			name: "defaults written out or left out are no change",
			old:  "clusters: [{name: web, connect_timeout: 5s, health_check: {fall: 3}, endpoints: [{name: a}, {name: b, weight: 1, state: ACTIVE}]}]\nlisteners: [{name: l, http: {max_header_bytes: 0}}]",
			new:  "clusters: [{name: web, lb_policy: ROUND_ROBIN, health_check: {interval: 2s}, endpoints: [{name: a, weight: 1}, {name: b}]}]\nlisteners: [{name: l, http: {max_header_bytes: 65535, idle_timeout: 60s}}]",
		},
		{
			name: "an options block added and removed is its options",
			old:  "listeners: [{name: l, http: {idle_timeout: 60s}}, {name: t, protocol: TCP}, {name: u, http: {idle_timeout: 5m}}]",
			new:  "listeners: [{name: l}, {name: t, protocol: TCP, tcp: {idle_timeout: 1h, inspect_timeout: 2s}}, {name: u}]",
			want: []string{"~ listener t: tcp.inspect_timeout 5s (default) -> 2s", "~ listener u: http.idle_timeout 5m -> 60s (default)"},
		},
		{
			name: "a default written out beside a change",
			old:  "clusters: [{name: web, endpoints: [{name: a}, {name: b}]}]",
			new:  "clusters: [{name: web, endpoints: [{name: a, weight: 1}, {name: b, weight: 2}]}]",
			want: []string{"~ cluster web: endpoint b weight 1 (default) -> 2"},
		},
		{
			name: "health check added and removed",
			old:  "clusters: [{name: a, health_check: {}}, {name: b}]",
			new:  "clusters: [{name: a}, {name: b, health_check: {fall: 3}}]",
			want: []string{"~ cluster a: -health_check", "~ cluster b: +health_check"},
		},
		{
			name: "clusters before listeners, removals after additions",
			old: `clusters: [{name: old}, {name: web}]
listeners: [{name: gone, address: ":81"}, {name: public, address: ":80", protocol: TCP, default_cluster: web}]`,
			new: `listeners: [{name: public, address: ":8080", protocol: HTTP, default_cluster: api}, {name: db}]
clusters: [{name: api}, {name: web}]`,
			want: []string{
				"+ cluster api",
				"- cluster old",
				"~ listener public: address :80 -> :8080; protocol TCP -> HTTP; default_cluster web -> api",
				"+ listener db",
				"- listener gone",
			},
		},
		{
			// An unset cap is 300s, or the base time when that is longer.
			name: "max_ejection_time's default follows a longer base",
			old: `clusters:
  - {name: a, outlier_detection: {base_ejection_time: 10m, max_ejection_time: 20m}}
  - {name: b, outlier_detection: {max_ejection_time: 20m}}
  - {name: c, outlier_detection: {base_ejection_time: 10m}}`,
			new: `clusters:
  - {name: a, outlier_detection: {base_ejection_time: 10m}}
  - {name: b, outlier_detection: {}}
  - {name: c, outlier_detection: {base_ejection_time: 10m, max_ejection_time: 600s}}`,
			want: []string{
				"~ cluster a: outlier_detection.max_ejection_time 20m -> 10m (default)",
				"~ cluster b: outlier_detection.max_ejection_time 20m -> 300s (default)",
			},
		},
		{
			name: "to nothing",
			old:  "clusters: [{name: web}]\nlisteners: [{name: l}]",
			new:  "",
			want: []string{"- cluster web", "- listener l"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *sluicev1.Snapshot
			if tt.old != "" {
				old = mustParse(t, tt.old)
			}
			var got []string
			for _, c := range Diff(old, mustParse(t, tt.new)) {
				got = append(got, c.String())
			}
			if !equalLines(got, tt.want) {
				t.Errorf("Diff:\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

func TestDiffChangeFields(t *testing.T) {
	old := mustParse(t, minimalYAML)
	new := proto.Clone(old).(*sluicev1.Snapshot)
	new.Clusters[0].Endpoints[1].Weight = proto.Uint32(3)
	got := Diff(old, new)
	if len(got) != 1 {
		t.Fatalf("Diff = %v, want one change", got)
	}
	c := got[0]
	if c.Op != '~' || c.Kind != "cluster" || c.Name != "web" || len(c.Fields) != 1 || c.Fields[0] != "endpoint web2 weight 1 -> 3" {
		t.Errorf("Diff = %#v, want ~ cluster web [endpoint web2 weight 1 -> 3]", c)
	}
	if got := Diff(nil, nil); len(got) != 0 {
		t.Errorf("Diff(nil, nil) = %v, want none", got)
	}
}

// Every default the diff names belongs to an optional field of the
// snapshot, and every meaning of 0 to a number without presence, so a
// renamed field cannot leave its default unsaid.
func TestPresenceDefaultsNameFields(t *testing.T) {
	names := slices.Collect(maps.Keys(presenceDefaults))
	for name := range derivedDefaults {
		names = append(names, name)
	}
	for _, name := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		fd, ok := d.(protoreflect.FieldDescriptor)
		if err != nil || !ok || !fd.HasPresence() {
			t.Errorf("%s: %v; want an optional field", name, err)
		}
	}
	for name := range zeroMeans {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		fd, ok := d.(protoreflect.FieldDescriptor)
		if err != nil || !ok || fd.HasPresence() || fd.Message() != nil {
			t.Errorf("%s: %v; want a number without presence", name, err)
		}
	}
}
