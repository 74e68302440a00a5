package node

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/dataplane/lb"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestApplyKeepsUnchangedClusters: an apply keeps the running cluster
// whose spec it does not change, picker, endpoints and checks untouched,
// whether the snapshot shares the spec (a delta's) or only equals it (a
// whole snapshot); a changed cluster is compiled anew, its surviving
// endpoints kept and its removed ones retired; a removed cluster's checks
// stop.
func TestApplyKeepsUnchangedClusters(t *testing.T) {
	n := newNode(t)
	be := backend(t, "be")
	s1 := parse(t, `
clusters:
  - { name: same, endpoints: [{ name: a, address: "%[1]s" }, { name: b, address: "%[1]s" }] }
  - name: checked
    health_check: { interval: 1h }
    endpoints: [{ name: a, address: "%[1]s" }, { name: b, address: "%[1]s" }]
  - name: gone
    health_check: { interval: 1h }
    endpoints: [{ name: a, address: "%[1]s" }]
`, be)
	if err := n.Apply("1", s1); err != nil {
		t.Fatal(err)
	}
	same, checked := n.clusters["same"], n.clusters["checked"]
	box := same.picker.Load()
	checking := func(key string) bool { _, ok := n.checker.Status(key); return ok }
	checkedA, gone := checked.checks[0].Key, n.clusters["gone"].checks[0].Key
	if !checking(checkedA) || !checking(gone) {
		t.Fatal("checks not running after the first apply")
	}

	// As a delta brings it: "same" shared, "checked" loses b, "gone" gone.
	changed := proto.CloneOf(s1.Clusters[1])
	changed.Endpoints = changed.Endpoints[:1]
	s2 := &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{s1.Clusters[0], changed}}
	if err := n.Apply("2", s2); err != nil {
		t.Fatal(err)
	}
	if n.clusters["same"] != same || same.picker.Load() != box {
		t.Error("an unchanged cluster was compiled again")
	}
	c := n.clusters["checked"]
	if c == checked {
		t.Fatal("a changed cluster was kept")
	}
	if c.members[0].Endpoint != checked.members[0].Endpoint || c.members[0].Endpoint.Draining() {
		t.Error("the surviving endpoint of a changed cluster is not the running one, or was retired")
	}
	if !checked.members[1].Endpoint.Draining() {
		t.Error("the endpoint removed from a changed cluster was not retired")
	}
	if !checking(checkedA) {
		t.Error("the check of a surviving endpoint stopped")
	}
	if checking(checked.checks[1].Key) || checking(gone) {
		t.Error("the checks of a removed endpoint and of a removed cluster still run")
	}
	if n.endpointByKey(checkedA) != c.members[0].Endpoint || n.endpointByKey(checked.checks[1].Key) != nil {
		t.Error("endpointByKey does not follow the running configuration")
	}

	// As a reconnecting node gets it: the same content, all new messages.
	s3 := proto.CloneOf(s2)
	if err := n.Apply("3", s3); err != nil {
		t.Fatal(err)
	}
	if n.clusters["same"] != same || n.clusters["checked"] != c {
		t.Error("a whole snapshot equal to the running one compiled clusters again")
	}
	if same.equal != s3.Clusters[0] {
		t.Error("the equal spec was not remembered for the deltas that share it")
	}
	// ...and a change within it is seen, and validated.
	s4 := proto.CloneOf(s3)
	s4.Clusters[0].Endpoints[0].Weight = proto.Uint32(300)
	err := n.Apply("4", s4)
	if err == nil || !strings.Contains(err.Error(), "clusters[0].endpoints[0].weight") {
		t.Errorf("an invalid change to a kept cluster: %v, want refused naming its path", err)
	}
	s4.Clusters[0].Endpoints[0].Weight = proto.Uint32(3)
	if err := n.Apply("4", s4); err != nil {
		t.Fatal(err)
	}
	if n.clusters["same"] == same || n.clusters["same"].members[0].Weight != 3 {
		t.Error("a changed weight in a whole snapshot was not applied")
	}
}

// TestApplyDefersExpensivePickers: a Maglev picker is built after Apply
// returns, or by the first pick that needs it; either way picks work at
// once.
func TestApplyDefersExpensivePickers(t *testing.T) {
	n := newNode(t)
	be := backend(t, "be")
	s := parse(t, `
clusters:
  - name: h
    lb_policy: HASH
    hash: { key: SOURCE_IP, method: MAGLEV }
    endpoints: [{ name: a, address: "%[1]s" }, { name: b, address: "%[1]s" }]
`, be)
	if err := n.Apply("1", s); err != nil {
		t.Fatal(err)
	}
	box := n.clusters["h"].picker.Load()
	d, ok := box.Picker.(*deferredPicker)
	if !ok {
		t.Fatalf("picker %T, want deferred", box.Picker)
	}
	for i := range 100 {
		ep, err := box.Pick(lb.Request{Hash: uint64(i) * 0x9e3779b97f4a7c15, HasHash: true})
		if err != nil || ep == nil {
			t.Fatalf("pick %d: %v, %v", i, ep, err)
		}
	}
	d.once.Do(d.do) // built by now
	if _, ok := d.p.(*lb.Hash); !ok {
		t.Errorf("built picker %T, want *lb.Hash", d.p)
	}
}

// TestApplyKeepsStickTableUnderItsDefaults: a client keeps its endpoint
// through an apply that changes the cluster and writes out the stick
// table's defaults (size 100000, expire 30m); a table of another size
// starts empty.
func TestApplyKeepsStickTableUnderItsDefaults(t *testing.T) {
	n := newNode(t)
	be := backend(t, "be")
	snap := func(stick, weight string) *sluicev1.Snapshot {
		return parse(t, `
clusters:
  - name: web
    stick: { on: SOURCE_IP%[2]s }
    endpoints: [{ name: a, address: "%[1]s" }, { name: b, address: "%[1]s", weight: %[3]s }]
`, be, stick, weight)
	}
	if err := n.Apply("1", snap("", "1")); err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("192.0.2.7")
	b := n.clusters["web"].members[1].Endpoint
	n.clusters["web"].stick.Put(client, b)

	if err := n.Apply("2", snap(", size: 100000, expire: 30m", "2")); err != nil {
		t.Fatal(err)
	}
	c := n.clusters["web"]
	if c.members[1].Weight != 2 {
		t.Fatal("the weight change was not applied")
	}
	if got := c.stick.Get(client); got != b {
		t.Errorf("after writing out the defaults the client is stuck to %v; want b, as before", got)
	}
	if err := n.Apply("3", snap(", size: 5000", "2")); err != nil {
		t.Fatal(err)
	}
	if got := n.clusters["web"].stick.Get(client); got != nil {
		t.Errorf("a table of another size still holds the client, stuck to %v", got)
	}
}
