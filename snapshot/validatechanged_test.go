package snapshot

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestValidateChanged: the clusters said known are not checked on their
// own, the others are, with the paths Validate gives; what spans
// resources is checked whatever is known.
func TestValidateChanged(t *testing.T) {
	ep := func(name, addr string, weight uint32) *sluicev1.Endpoint {
		return &sluicev1.Endpoint{Name: name, Address: addr, Weight: proto.Uint32(weight)}
	}
	// Faulty on their own: a weight over 256, an address without port.
	bad0 := &sluicev1.Cluster{Name: "a", Endpoints: []*sluicev1.Endpoint{ep("e", "10.0.0.1:80", 257)}}
	bad1 := &sluicev1.Cluster{Name: "b", Endpoints: []*sluicev1.Endpoint{ep("e", "10.0.0.1", 1)}}
	dup := &sluicev1.Cluster{Name: "a", Endpoints: []*sluicev1.Endpoint{ep("e", "10.0.0.1:80", 1)}}
	s := &sluicev1.Snapshot{
		Clusters: []*sluicev1.Cluster{bad0, bad1, dup},
		Listeners: []*sluicev1.Listener{{Name: "l", Address: "127.0.0.1:8080", Protocol: sluicev1.Protocol_PROTOCOL_HTTP,
			DefaultCluster: "nope"}},
	}
	all := errorLines(Validate(s))
	if got := errorLines(ValidateChanged(s, nil)); !slices.Equal(got, all) {
		t.Errorf("ValidateChanged(nil known) = %q, want Validate's %q", got, all)
	}
	got := errorLines(ValidateChanged(s, func(c *sluicev1.Cluster) bool { return c == bad0 || c == dup }))
	want := []string{
		`clusters[1].endpoints[0].address: must be host:port (missing port in address)`,
		`clusters[2].name: duplicate cluster name "a", first defined at clusters[0]`,
		`listeners[0].default_cluster: unknown cluster "nope"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("with clusters[0] and [2] known:\n got %q\nwant %q\n(Validate: %q)", got, want, all)
	}
	for _, w := range want {
		if !slices.Contains(all, w) {
			t.Errorf("Validate does not say %q: the paths differ", w)
		}
	}
}

// BenchmarkValidateChangedBig is BenchmarkValidateBig for a node's
// re-apply: ten clusters changed, the rest known.
func BenchmarkValidateChangedBig(b *testing.B) {
	s := bigSnapshot()
	known := map[*sluicev1.Cluster]bool{}
	for i, c := range s.GetClusters() {
		if i%1000 != 0 {
			known[c] = true
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateChanged(s, func(c *sluicev1.Cluster) bool { return known[c] }); err != nil {
			b.Fatal(err)
		}
	}
}
