package snapshot

import (
	"slices"
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestFingerprint: snapshots that tell nodes the same, as Diff sees it,
// share a fingerprint in the usual cases; any change Diff names gives
// another one.
func TestFingerprint(t *testing.T) {
	const base = `
clusters:
  - name: web
    endpoints: [{name: web1, address: "127.0.0.1:9001"}, {name: web2, address: "127.0.0.1:9002", weight: 3}]
    health_check: {interval: 2s}
  - name: api
    endpoints: [{name: api1, address: "127.0.0.1:9101"}]
listeners:
  - {name: public, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web}
  - {name: db, address: "127.0.0.1:6663", protocol: TCP, default_cluster: api}
`
	for _, tc := range []struct {
		name string
		y    string
		same bool
	}{
		{"the same", base, true},
		{"resources in another order", `
listeners:
  - {name: db, address: "127.0.0.1:6663", protocol: TCP, default_cluster: api}
  - {name: public, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web}
clusters:
  - name: api
    endpoints: [{name: api1, address: "127.0.0.1:9101"}]
  - name: web
    endpoints: [{name: web1, address: "127.0.0.1:9001"}, {name: web2, address: "127.0.0.1:9002", weight: 3}]
    health_check: {interval: 2s}
`, true},
		{"defaults written out", `
clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    connect_timeout: 5s
    retries: 3
    endpoints: [{name: web1, address: "127.0.0.1:9001", weight: 1, state: ACTIVE}, {name: web2, address: "127.0.0.1:9002", weight: 3}]
    health_check: {interval: 2s, fall: 3, rise: 2}
  - name: api
    endpoints: [{name: api1, address: "127.0.0.1:9101", max_conn: 0}]
listeners:
  - {name: public, address: "127.0.0.1:8080", protocol: HTTP, default_cluster: web, http: {}}
  - {name: db, address: "127.0.0.1:6663", protocol: TCP, default_cluster: api, tcp: {}}
`, true},
		{"a weight changed", strings.Replace(base, "weight: 3", "weight: 1", 1), false},
		{"endpoints reordered", strings.Replace(base,
			`[{name: web1, address: "127.0.0.1:9001"}, {name: web2, address: "127.0.0.1:9002", weight: 3}]`,
			`[{name: web2, address: "127.0.0.1:9002", weight: 3}, {name: web1, address: "127.0.0.1:9001"}]`, 1), false},
		{"a health check added", strings.Replace(base, `address: "127.0.0.1:9101"}]`, `address: "127.0.0.1:9101"}]`+"\n    health_check: {}", 1), false},
		{"a listener removed", strings.Replace(base, `  - {name: db, address: "127.0.0.1:6663", protocol: TCP, default_cluster: api}`+"\n", "", 1), false},
	} {
		a, b := mustParse(t, base), mustParse(t, tc.y)
		if same := len(Diff(a, b)) == 0; same != tc.same {
			t.Fatalf("%s: Diff %q; the case is wrong", tc.name, Diff(a, b))
		}
		if same := Fingerprint(a) == Fingerprint(b); same != tc.same {
			t.Errorf("%s: the same fingerprint %v, want %v (Diff: %q)", tc.name, same, tc.same, Diff(a, b))
		}
	}
}

// TestFingerprintLeavesSnapshot: the snapshot fingerprinted is not
// changed.
func TestFingerprintLeavesSnapshot(t *testing.T) {
	const y = `{clusters: [{name: b, lb_policy: ROUND_ROBIN, endpoints: [{name: e, weight: 1}]}, {name: a}]}`
	s := mustParse(t, y)
	Fingerprint(s)
	if want := mustParse(t, y); !slices.EqualFunc(s.GetClusters(), want.GetClusters(), func(a, b *sluicev1.Cluster) bool {
		return a.String() == b.String()
	}) {
		t.Errorf("after Fingerprint: %v, want %v", s, want)
	}
}

// FuzzFingerprint: two snapshots with one fingerprint are the same as far
// as Diff can tell, and a snapshot's resources in reverse order keep it.
func FuzzFingerprint(f *testing.F) {
	f.Add(minimalYAML, minimalYAML)
	f.Add("clusters: [{name: web, connect_timeout: 5s, endpoints: [{name: a, weight: 1}]}]", "clusters: [{name: web, endpoints: [{name: a}]}]")
	f.Add("listeners: [{name: l, http: {}}, {name: m}]", "listeners: [{name: m}, {name: l}]")
	f.Add("clusters: [{name: web, lb_policy: ROUND_ROBIN, health_check: {fall: 3}}]", "clusters: [{name: web, health_check: {}}]")
	f.Fuzz(func(t *testing.T, x, y string) {
		a, errA := Parse([]byte(x), "a.yaml")
		b, errB := Parse([]byte(y), "b.yaml")
		if errA != nil || errB != nil {
			return
		}
		if Fingerprint(a) == Fingerprint(b) {
			if d := Diff(a, b); len(d) != 0 {
				t.Errorf("one fingerprint, yet Diff finds %q", d)
			}
		}
		r := mustParse(t, x)
		slices.Reverse(r.Clusters)
		slices.Reverse(r.Listeners)
		if Fingerprint(r) != Fingerprint(a) && hasUniqueNames(a) {
			t.Errorf("resources reversed, another fingerprint")
		}
	})
}

// hasUniqueNames reports whether no two clusters and no two listeners of
// s share a name: Diff matches a name on its first definition, so the
// order of twins matters to it.
func hasUniqueNames(s *sluicev1.Snapshot) bool {
	seen := map[string]bool{}
	for _, c := range s.GetClusters() {
		if seen["c"+c.GetName()] {
			return false
		}
		seen["c"+c.GetName()] = true
	}
	for _, l := range s.GetListeners() {
		if seen["l"+l.GetName()] {
			return false
		}
		seen["l"+l.GetName()] = true
	}
	return true
}
