package groups

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func TestParseAndMatch(t *testing.T) {
	edgeA := map[string]string{"role": "edge", "zone": "a"}
	edgeB := map[string]string{"role": "edge", "zone": "b"}
	core := map[string]string{"role": "core", "zone": "a", "canary": ""}
	none := map[string]string{}
	for _, tc := range []struct {
		sel       string
		canonical string
		match     []map[string]string
		miss      []map[string]string
	}{
		{"", "", []map[string]string{edgeA, core, none}, nil},
		{"role=edge", "role=edge", []map[string]string{edgeA, edgeB}, []map[string]string{core, none}},
		{" role == edge ", "role=edge", []map[string]string{edgeA}, []map[string]string{core}},
		{"role!=edge", "role!=edge", []map[string]string{core, none}, []map[string]string{edgeA}},
		{"zone in (b, a)", "zone in (a,b)", []map[string]string{edgeA, edgeB, core}, []map[string]string{none}},
		{"zone notin (a)", "zone notin (a)", []map[string]string{edgeB, none}, []map[string]string{edgeA, core}},
		{"canary", "canary", []map[string]string{core}, []map[string]string{edgeA, none}},
		{"!canary", "!canary", []map[string]string{edgeA, none}, []map[string]string{core}},
		{"zone=a,role=edge", "role=edge,zone=a", []map[string]string{edgeA}, []map[string]string{edgeB, core}},
		{"role=edge, zone in (a,b), !canary", "!canary,role=edge,zone in (a,b)", []map[string]string{edgeA, edgeB}, []map[string]string{core}},
	} {
		sel, err := Parse(tc.sel)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.sel, err)
			continue
		}
		if sel.String() != tc.canonical {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.sel, sel.String(), tc.canonical)
		}
		again, err := Parse(sel.String())
		if err != nil || again.String() != sel.String() {
			t.Errorf("the canonical form %q does not parse to itself: %q, %v", sel.String(), again.String(), err)
		}
		for _, l := range tc.match {
			if !sel.Matches(l) {
				t.Errorf("%q does not match %v", tc.sel, l)
			}
		}
		for _, l := range tc.miss {
			if sel.Matches(l) {
				t.Errorf("%q matches %v", tc.sel, l)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ sel, want string }{
		{"role=edge,", "a requirement must follow ','"},
		{",role=edge", "expected a label key, found \",\""},
		{"role edge", "expected =, !=, in or notin after \"role\""},
		{"zone in a,b", "expected '(' and a list of values"},
		{"zone in (a,b", "not closed with ')'"},
		{"zone in ()", "expected a value in the list"},
		{"zone=a zone=b", "expected ',' between requirements"},
		{"zone=a,zone=b", `label "zone" is named twice`},
		{"-x=1", `"-x" is not a label key`},
		{"role=(edge)", `expected a label value, found "("`},
		{strings.Repeat("a", 1025), "longer than 1024 bytes"},
	} {
		_, err := Parse(tc.sel)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want a SyntaxError containing %q", tc.sel, err, tc.want)
		}
	}
}

func fleet(groups ...[2]string) *sluicev1.FleetConfig {
	cfg := &sluicev1.FleetConfig{}
	for _, g := range groups {
		cfg.Groups = append(cfg.Groups, &sluicev1.Group{Name: g[0], Selector: g[1]})
	}
	return cfg
}

func TestOf(t *testing.T) {
	set, err := Compile(fleet([2]string{"default", ""}, [2]string{"edge", "role=edge"}, [2]string{"zone-b", "zone=b"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		labels         map[string]string
		group, problem string
	}{
		{map[string]string{"role": "edge", "zone": "a"}, "edge", ""},
		{map[string]string{"role": "core", "zone": "b"}, "zone-b", ""},
		{map[string]string{"role": "core"}, "default", ""},
		{nil, "default", ""},
		{map[string]string{"role": "edge", "zone": "b"}, "", "its labels match groups edge and zone-b"},
	} {
		g, p := set.Of(tc.labels)
		if g != tc.group || p != tc.problem {
			t.Errorf("Of(%v) = %q, %q; want %q, %q", tc.labels, g, p, tc.group, tc.problem)
		}
	}

	noCatchAll, err := Compile(fleet([2]string{"edge", "role=edge"}))
	if err != nil {
		t.Fatal(err)
	}
	if g, p := noCatchAll.Of(map[string]string{"role": "core"}); g != "" || p != "no group's selector matches its labels" {
		t.Errorf("without a catch-all, Of(role=core) = %q, %q", g, p)
	}
}

func TestListed(t *testing.T) {
	set, err := Compile(fleet([2]string{"default", ""}, [2]string{"edge", "role = edge"}, [2]string{"zone-b", "zone in (c,b)"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		max  int
		want string
	}{
		{10, "the groups are default (the nodes no other group's selector matches), edge (role=edge) and zone-b (zone in (b,c))"},
		{3, "the groups are default (the nodes no other group's selector matches), edge (role=edge) and zone-b (zone in (b,c))"},
		{1, "the groups are default (the nodes no other group's selector matches) and 2 more"},
	} {
		if got := set.Listed(tc.max); got != tc.want {
			t.Errorf("Listed(%d) = %q; want %q", tc.max, got, tc.want)
		}
	}
	none, err := Compile(fleet())
	if err != nil {
		t.Fatal(err)
	}
	if got := none.Listed(10); got != "there are no groups" {
		t.Errorf("Listed of no groups = %q", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  *sluicev1.FleetConfig
		want string
	}{
		{fleet([2]string{"a", ""}, [2]string{"b", ""}), `groups "a" and "b" both have an empty selector`},
		{fleet([2]string{"a", "x=1"}, [2]string{"a", "x=2"}), `group "a" is defined twice`},
		{fleet([2]string{"Edge", "x=1"}), `"Edge" is not a valid group name: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`},
		{fleet([2]string{"a", "x in"}), `group "a": selector "x in"`},
	} {
		if _, err := Compile(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile = %v; want an error containing %q", err, tc.want)
		}
	}
}

// TestCheckName: the rule it states is the API's pattern, at its edges.
func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "0", "edge-1", "a--b", strings.Repeat("a", 63)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "Edge", "a.b", "a_b", "Bad Name!", strings.Repeat("a", 64)} {
		want := fmt.Sprintf("%q is not a valid group name: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", bad)
		if err := CheckName(bad); err == nil || err.Error() != want {
			t.Errorf("CheckName(%q) = %v; want %s", bad, err, want)
		}
	}
}

// FuzzParse: any input either fails with a SyntaxError or parses to a
// selector whose canonical form parses to itself and matches the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "role=edge", "a!=b,c in (d,e),!f,g", "zone notin (a)", "x==y", "k in (a,,b)", "!", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		sel, err := Parse(text)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %v is not a SyntaxError", text, err)
			}
			return
		}
		again, err := Parse(sel.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", sel.String(), text, err)
		}
		if again.String() != sel.String() {
			t.Fatalf("canonical form of %q is unstable: %q then %q", text, sel.String(), again.String())
		}
		labels := map[string]string{}
		for _, r := range sel.reqs {
			if len(r.values) > 0 {
				labels[r.key] = r.values[0]
			}
		}
		if sel.Matches(labels) != again.Matches(labels) {
			t.Fatalf("%q and its canonical form %q match %v differently", text, sel.String(), labels)
		}
	})
}

// TestClusterNames: the clusters of every group's snapshot and of a
// rollout's, sorted, each once.
func TestClusterNames(t *testing.T) {
	cl := func(names ...string) *sluicev1.Snapshot {
		s := &sluicev1.Snapshot{}
		for _, n := range names {
			s.Clusters = append(s.Clusters, &sluicev1.Cluster{Name: n})
		}
		return s
	}
	cfg := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{
		{Name: "default", Snapshot: cl("web", "api")},
		{Name: "edge", Snapshot: cl("web"), Rollout: &sluicev1.Rollout{Snapshot: cl("web", "canary-only")}},
		{Name: "empty"},
	}}
	if got, want := ClusterNames(cfg), []string{"api", "canary-only", "web"}; !slices.Equal(got, want) {
		t.Errorf("ClusterNames = %q, want %q", got, want)
	}
	if got := ClusterNames(Initial()); len(got) != 0 {
		t.Errorf("ClusterNames(Initial()) = %q, want none", got)
	}
}

// TestEndpointNames: a cluster's endpoints in every group's snapshot and
// in a rollout's, sorted, each once; none for a cluster there is not.
func TestEndpointNames(t *testing.T) {
	cl := func(name string, eps ...string) *sluicev1.Cluster {
		c := &sluicev1.Cluster{Name: name}
		for _, e := range eps {
			c.Endpoints = append(c.Endpoints, &sluicev1.Endpoint{Name: e})
		}
		return c
	}
	cfg := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{
		{Name: "default", Snapshot: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{cl("web", "b", "a"), cl("api", "x")}}},
		{Name: "edge", Snapshot: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{cl("web", "a")}},
			Rollout: &sluicev1.Rollout{Snapshot: &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{cl("web", "a", "c")}}}},
		{Name: "empty"},
	}}
	for _, tt := range []struct {
		cluster string
		want    []string
	}{{"web", []string{"a", "b", "c"}}, {"api", []string{"x"}}, {"nope", nil}, {"", []string{"a", "b", "c", "x"}}} {
		if got := EndpointNames(cfg, tt.cluster); !slices.Equal(got, tt.want) {
			t.Errorf("EndpointNames(%q) = %q, want %q", tt.cluster, got, tt.want)
		}
	}
}
