package discovery

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// connectLabelled opens a stream for node id with labels, running nothing.
func connectLabelled(t *testing.T, ts *testServer, id string, labels map[string]string) *testNode {
	t.Helper()
	n := openStream(testContext(t), t, ts.conn, id)
	n.send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id, Labels: labels}})
	return n
}

// publishTwoGroups publishes, as version 2, a fleet of two groups: default
// (version 1, for nodes whose role is neither edge nor lab) and edge
// (version 2), and returns it with their snapshots.
func publishTwoGroups(t *testing.T, ts *testServer) (cfg *sluicev1.FleetConfig, defSnap, edgeSnap *sluicev1.Snapshot) {
	t.Helper()
	defSnap, edgeSnap = testSnapshot(2, 1, 1), testSnapshot(3, 1, 2)
	cfg = &sluicev1.FleetConfig{Groups: []*sluicev1.Group{
		{Name: "default", Selector: "role notin (edge,lab)", Snapshot: defSnap, Version: 1},
		{Name: "edge", Selector: "role=edge", Snapshot: edgeSnap, Version: 2},
	}}
	if err := ts.disc.PublishConfig(2, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, defSnap, edgeSnap
}

// Each node is sent its group's snapshot under the group's version; a
// change to one group reaches only that group's nodes, and a node that no
// group takes is sent nothing and listed with why.
func TestNodesGetTheirGroupsSnapshot(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	cfg, defSnap, edgeSnap := publishTwoGroups(t, ts)
	core := connectLabelled(t, ts, "core-1", map[string]string{"role": "core"})
	edge := connectLabelled(t, ts, "edge-1", map[string]string{"role": "edge"})
	lab := connectLabelled(t, ts, "lab-1", map[string]string{"role": "lab"})

	r := core.next(ctx)
	if r.GetVersionInfo() != "1" || !proto.Equal(r.GetSnapshot(), defSnap) {
		t.Errorf("core-1 got version %s; want the default group's version 1", r.GetVersionInfo())
	}
	core.ack(r)
	r = edge.next(ctx)
	if r.GetVersionInfo() != "2" || !proto.Equal(r.GetSnapshot(), edgeSnap) {
		t.Errorf("edge-1 got version %s; want the edge group's version 2", r.GetVersionInfo())
	}
	edge.ack(r)
	waitNode(ctx, t, ts.fleet, "lab-1", "placed nowhere", func(n *sluicev1.NodeStatus) bool {
		return n.GetGroup() == "" && n.GetGroupProblem() == "no group's selector matches its labels"
	})
	waitNode(ctx, t, ts.fleet, "edge-1", "in edge, applied 2", func(n *sluicev1.NodeStatus) bool {
		return n.GetGroup() == "edge" && n.GetAckedVersion() == 2
	})
	lab.expectNothing()

	// Version 3 changes the edge group only.
	edgeSnap3 := testSnapshot(4, 1, 3)
	cfg3 := proto.Clone(cfg).(*sluicev1.FleetConfig)
	cfg3.Groups[1].Snapshot, cfg3.Groups[1].Version = edgeSnap3, 3
	if err := ts.disc.PublishConfig(3, cfg3); err != nil {
		t.Fatal(err)
	}
	if r := edge.next(ctx); r.GetVersionInfo() != "3" || !proto.Equal(r.GetSnapshot(), edgeSnap3) {
		t.Errorf("edge-1 got version %s after the edge change; want 3", r.GetVersionInfo())
	}
	core.expectNothing()

	// Version 4 moves lab nodes into the default group: lab-1 gets its
	// snapshot, core-1 (already running it) nothing.
	cfg4 := proto.Clone(cfg3).(*sluicev1.FleetConfig)
	cfg4.Groups[0].Selector = "role!=edge"
	if err := ts.disc.PublishConfig(4, cfg4); err != nil {
		t.Fatal(err)
	}
	if r := lab.next(ctx); r.GetVersionInfo() != "1" || !proto.Equal(r.GetSnapshot(), defSnap) {
		t.Errorf("lab-1 got version %s after joining default; want 1", r.GetVersionInfo())
	}
	core.expectNothing()
	waitNode(ctx, t, ts.fleet, "lab-1", "placed in default", func(n *sluicev1.NodeStatus) bool {
		return n.GetGroup() == "default" && n.GetGroupProblem() == ""
	})
}

// A node that accepts placements is told its group when its stream starts
// and whenever it changes, and, in no group, why and which groups there
// are, in responses it does not answer; a node that does not accept them
// is told nothing.
func TestPlacementIsToldToNodesThatAsk(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	cfg, defSnap, edgeSnap := publishTwoGroups(t, ts)
	connectAsking := func(id, role string) *testNode {
		n := openStream(ctx, t, ts.conn, id)
		n.send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id, Labels: map[string]string{"role": role}}, AcceptPlacement: true})
		return n
	}
	placement := func(n *testNode, want *sluicev1.Placement) {
		t.Helper()
		r := n.next(ctx)
		if !proto.Equal(r, &sluicev1.DiscoveryResponse{Placement: want}) {
			t.Fatalf("got %v; want a response of placement %v alone", r, want)
		}
	}
	lab := connectAsking("lab-1", "lab")
	placement(lab, &sluicev1.Placement{Problem: "no group's selector matches its labels; the groups are default (role notin (edge,lab)) and edge (role=edge)"})
	edge := connectAsking("edge-1", "edge")
	placement(edge, &sluicev1.Placement{Group: "edge"})
	if r := edge.next(ctx); r.GetVersionInfo() != "2" || !proto.Equal(r.GetSnapshot(), edgeSnap) {
		t.Errorf("edge-1 got version %s after its placement; want the edge group's version 2", r.GetVersionInfo())
	} else {
		edge.ack(r)
	}
	old := connectLabelled(t, ts, "lab-2", map[string]string{"role": "lab"})
	lab.expectNothing()
	old.expectNothing()

	// A new group that takes neither: lab-1 hears of it, though its
	// problem is the same; edge-1, whose group is the same, hears nothing.
	cfg3 := proto.Clone(cfg).(*sluicev1.FleetConfig)
	cfg3.Groups = append(cfg3.Groups, &sluicev1.Group{Name: "gpu", Selector: "gpu", Snapshot: defSnap, Version: 3})
	if err := ts.disc.PublishConfig(3, cfg3); err != nil {
		t.Fatal(err)
	}
	placement(lab, &sluicev1.Placement{Problem: "no group's selector matches its labels; the groups are default (role notin (edge,lab)), edge (role=edge) and gpu (gpu)"})
	edge.expectNothing()

	// Version 4 puts lab nodes in default: lab-1 is told, then sent its
	// snapshot; lab-2 is sent the snapshot alone.
	cfg4 := proto.Clone(cfg3).(*sluicev1.FleetConfig)
	cfg4.Groups[0].Selector = "role!=edge"
	if err := ts.disc.PublishConfig(4, cfg4); err != nil {
		t.Fatal(err)
	}
	placement(lab, &sluicev1.Placement{Group: "default"})
	if r := lab.next(ctx); r.GetVersionInfo() != "1" || !proto.Equal(r.GetSnapshot(), defSnap) {
		t.Errorf("lab-1 got version %s after joining default; want 1", r.GetVersionInfo())
	}
	if r := old.next(ctx); r.GetVersionInfo() != "1" || r.GetPlacement() != nil {
		t.Errorf("lab-2, which does not accept placements, got %v; want version 1 alone", r)
	}
	edge.expectNothing()
}

// TestGroupVersionsNameCanaryVersions: the versions nodes are sent, which
// sluice_cp_nodes_out_of_date counts nodes against, include a rollout's
// while its canaries run it, and no longer once it is halted.
func TestGroupVersionsNameCanaryVersions(t *testing.T) {
	ts := startServer(t)
	cfg := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{
		{Name: "default", Snapshot: testSnapshot(2, 1, 1), Version: 1, Rollout: &sluicev1.Rollout{
			Version: 2, Snapshot: testSnapshot(2, 1, 2), Canaries: []string{"n1"}, State: sluicev1.RolloutState_ROLLOUT_STATE_CANARY,
		}},
	}}
	if err := ts.disc.PublishConfig(2, cfg); err != nil {
		t.Fatal(err)
	}
	got := ts.disc.GroupVersions()
	slices.Sort(got)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("GroupVersions with a canary rollout = %v, want [1 2]", got)
	}
	cfg.Groups[0].Rollout.State = sluicev1.RolloutState_ROLLOUT_STATE_HALTED
	if err := ts.disc.PublishConfig(3, cfg); err != nil {
		t.Fatal(err)
	}
	if got := ts.disc.GroupVersions(); !slices.Equal(got, []uint64{1}) {
		t.Errorf("GroupVersions with the rollout halted = %v, want [1]", got)
	}
}
