package configapi

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), text) {
		t.Errorf("%s: %v; want %v containing %q", what, err, code, text)
	}
}

func groupList(t *testing.T, s *Server) map[string]*sluicev1.GroupStatus {
	t.Helper()
	resp, err := s.ListGroups(testContext(t), &sluicev1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*sluicev1.GroupStatus{}
	for _, g := range resp.GetGroups() {
		out[g.GetName()] = g
	}
	return out
}

// Each group has its own snapshot and version; writes to one leave the
// others as they are, and every read names the group it means.
func TestGroupsKeepTheirOwnSnapshots(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)

	_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Group: "edge"})
	wantCode(t, "apply to a group that does not exist", err, codes.NotFound, `group "edge" does not exist (the groups are: default); give a selector to create it`)

	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 5), Group: "edge", Selector: proto.String("zone=a, role=edge")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() != 2 || resp.GetGroup() != "edge" || resp.GetGroupVersion() != 2 {
		t.Errorf("apply to new group: %v", resp)
	}
	if len(resp.GetChanges()) == 0 || resp.GetChanges()[0] != `+ group edge: selector "role=edge,zone=a"` {
		t.Errorf("changes = %q; want the new group first", resp.GetChanges())
	}

	gl := groupList(t, s)
	if d, e := gl["default"], gl["edge"]; d.GetVersion() != 1 || d.GetSelector() != "" || e.GetVersion() != 2 || e.GetSelector() != "role=edge,zone=a" || e.GetClusters() != 1 {
		t.Errorf("ListGroups = %v", gl)
	}

	// --if-version speaks of the group's version.
	_, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6), Group: "edge", IfVersion: proto.Uint64(1)})
	wantCode(t, "if_version of another group's version", err, codes.FailedPrecondition, "the current version of group edge is 2, not 1")
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6), IfVersion: proto.Uint64(1)}); err != nil {
		t.Errorf("default group at version 1 while edge is at 2: %v", err)
	}

	_, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6), Group: "edge", IfVersion: proto.Uint64(3)})
	wantCode(t, "if_version newer than the group's", err, codes.FailedPrecondition, "the current version of group edge is 2, not 3, which is newer: versions of other groups count too (history --group edge lists this one's); nothing stored")
	// One newer than any stored is not another group's.
	_, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6), Group: "edge", IfVersion: proto.Uint64(9)})
	wantCode(t, "if_version newer than any", err, codes.FailedPrecondition, "the current version of group edge is 2, not 9: no version 9 was stored yet (the newest is 3); nothing stored")

	// A misspelt group is named; only an apply, which can create it, says how.
	for _, tt := range []struct {
		what string
		err  func() error
		want string
	}{
		{"apply to egde", func() error {
			_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6), Group: "egde"})
			return err
		}, `group "egde" does not exist, did you mean "edge"?`},
		{"edit in egde", func() error {
			_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Group: "egde", Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9)})
			return err
		}, `group "egde" does not exist, did you mean "edge"?`},
		{"edit in core", func() error {
			_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Group: "core", Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9)})
			return err
		}, `group "core" does not exist (the groups are: default, edge)`},
		{"get of egde", func() error {
			_, err := s.Get(ctx, &sluicev1.GetRequest{Group: "egde"})
			return err
		}, `group "egde" does not exist in version 3, did you mean "edge"?`},
	} {
		err := tt.err()
		wantCode(t, tt.what, err, codes.NotFound, tt.want)
		if strings.Contains(status.Convert(err).Message(), "selector") {
			t.Errorf("%s: %v; want no word of a selector", tt.what, err)
		}
	}

	// Endpoint edits name the group.
	up, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Group: "edge", Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9)})
	if err != nil || up.GetVersion() != 4 || up.GetGroupVersion() != 4 {
		t.Fatalf("UpdateEndpoint edge: %v, %v", up, err)
	}
	def, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if def.GetInfo().GetVersion() != 3 || def.GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight() != 6 {
		t.Errorf("Get default = version %d, %v", def.GetInfo().GetVersion(), def.GetSnapshot())
	}
	edge, err := s.Get(ctx, &sluicev1.GetRequest{Group: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	if edge.GetInfo().GetVersion() != 4 || edge.GetInfo().GetGroup() != "edge" || edge.GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight() != 9 {
		t.Errorf("Get edge = %v", edge)
	}
	_, err = s.Get(ctx, &sluicev1.GetRequest{Group: "core"})
	wantCode(t, "get of a missing group", err, codes.NotFound, `group "core" does not exist in version 4`)

	// History filters by group.
	h, err := s.History(ctx, &sluicev1.HistoryRequest{Group: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.GetVersions()) != 2 || h.GetVersions()[0].GetVersion() != 4 || h.GetVersions()[1].GetVersion() != 2 || h.GetCurrent() != 4 {
		t.Errorf("History edge = %v", h)
	}

	// Rollback goes to the group the version changed.
	rb, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 2})
	if err != nil || rb.GetGroup() != "edge" || rb.GetVersion() != 5 {
		t.Fatalf("Rollback 2: %v, %v", rb, err)
	}
	edge, _ = s.Get(ctx, &sluicev1.GetRequest{Group: "edge"})
	if w := edge.GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight(); w != 5 || edge.GetInfo().GetComment() != "rollback to version 2 of group edge" {
		t.Errorf("after rollback edge weight = %d, info %v", w, edge.GetInfo())
	}
	if def, _ := s.Get(ctx, &sluicev1.GetRequest{}); def.GetInfo().GetVersion() != 3 {
		t.Errorf("rollback of edge moved default to %d", def.GetInfo().GetVersion())
	}

	// Deleting a group stores a version without it.
	del, err := s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "edge"})
	if err != nil || del.GetChanges()[0] != "- group edge" {
		t.Fatalf("DeleteGroup: %v, %v", del, err)
	}
	if _, ok := groupList(t, s)["edge"]; ok {
		t.Error("edge still listed after DeleteGroup")
	}
	if h, err := s.History(ctx, &sluicev1.HistoryRequest{Limit: 1}); err != nil || len(h.GetVersions()[0].GetFingerprint()) != 0 {
		t.Errorf("the deletion's version keeps a fingerprint (%v): it sent edge's nodes no snapshot", err)
	}
	_, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "edge"})
	// Nothing to create here: no advice to give a selector.
	if want := `group "edge" does not exist (the groups are: default)`; status.Code(err) != codes.NotFound || status.Convert(err).Message() != want {
		t.Errorf("delete of a missing group: %v; want NOT_FOUND %q", err, want)
	}

	// The history of a deleted group is still there; a name that no
	// version ever changed is a typo.
	if h, err := s.History(ctx, &sluicev1.HistoryRequest{Group: "edge"}); err != nil || len(h.GetVersions()) != 4 || h.GetCurrent() != 0 {
		t.Errorf("History of deleted edge: %v, %v; want its 4 versions, none current", h, err)
	}
	_, err = s.History(ctx, &sluicev1.HistoryRequest{Group: "egde"})
	wantCode(t, "history of a group that never was", err, codes.NotFound,
		`group "egde" does not exist, and no kept version changed it (the groups are: default)`)
}

// A version that changed another group before the default group had a
// snapshot does not show the default group as applied and empty; asked
// for without a group, a version is of the group it changed, as a
// rollback's is.
func TestGetVersionBeforeGroupHadSnapshot(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 5), Group: "edge", Selector: proto.String("role=edge")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, &sluicev1.GetRequest{Version: 1, Group: "default"})
	wantCode(t, "get of version 1, which changed edge", err, codes.NotFound,
		`group "default" had no snapshot yet in version 1, which changed group "edge" (get --group edge --version 1 shows it)`)
	for _, group := range []string{"edge", ""} {
		edge, err := s.Get(ctx, &sluicev1.GetRequest{Version: 1, Group: group})
		if err != nil || edge.GetInfo().GetVersion() != 1 || edge.GetInfo().GetGroup() != "edge" || len(edge.GetSnapshot().GetClusters()) != 1 {
			t.Errorf("get --group %q --version 1: %v, %v; want edge's version 1 with cluster web", group, edge, err)
		}
	}

	// A group created empty in a version has that empty snapshot in it.
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: &sluicev1.Snapshot{}, Group: "core", Selector: proto.String("role=core")}); err != nil {
		t.Fatal(err)
	}
	if core, err := s.Get(ctx, &sluicev1.GetRequest{Version: 2, Group: "core"}); err != nil || len(core.GetSnapshot().GetClusters()) != 0 {
		t.Errorf("get --group core --version 2, the version that created it empty: %v, %v", core, err)
	}
	// The current snapshot of a group that has none is empty, as ever:
	// that is what its nodes run.
	def, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil || def.GetInfo().GetVersion() != 0 || len(def.GetSnapshot().GetClusters()) != 0 {
		t.Errorf("get of the default group's current snapshot: %v, %v; want version 0, empty", def, err)
	}
	// Version 3 changes default: without a group, it is default's, not
	// edge's as of version 3.
	applyWeights(t, s, 3)
	if def, err := s.Get(ctx, &sluicev1.GetRequest{Version: 3}); err != nil || groupOrDefault(def.GetInfo().GetGroup()) != "default" || def.GetInfo().GetVersion() != 3 {
		t.Errorf("get --version 3: %v, %v; want default's version 3", def, err)
	}
}

// Selectors are checked before anything is stored: their syntax, one
// catch-all only, and no connected node in two groups.
func TestGroupSelectorsAreChecked(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	reg.Connect(&sluicev1.Node{Id: "node-b", Labels: map[string]string{"role": "edge", "zone": "b"}}, "127.0.0.1:1", 0)
	s := New(st, reg, stats.NewRing(10), nil)

	if _, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "role=edge"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "zone-b", Selector: "zone=b"})
	wantCode(t, "a selector overlapping for a connected node", err, codes.FailedPrecondition,
		"node node-b would be in two groups: its labels match groups edge and zone-b")
	_, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "other", Selector: ""})
	wantCode(t, "a second catch-all", err, codes.InvalidArgument, `groups "default" and "other" both have an empty selector`)
	_, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "zone-b", Selector: "zone in b"})
	wantCode(t, "a malformed selector", err, codes.InvalidArgument, `selector: selector "zone in b": at offset 8: expected '(' and a list of values`)
	_, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "Zone_B", Selector: "zone=b"})
	wantCode(t, "a bad group name", err, codes.InvalidArgument, "name")

	h, err := s.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil || len(h.GetVersions()) != 1 {
		t.Errorf("refused writes stored versions: %v, %v", h, err)
	}
	// Changing a selector is a change of its own.
	resp, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "role=edge,zone=a"})
	if err != nil || resp.GetChanges()[0] != `~ group edge: selector "role=edge" -> "role=edge,zone=a"; gives connected node node-b to default` || resp.GetGroupVersion() != 0 {
		t.Errorf("SetGroup change: %v, %v", resp, err)
	}
	again, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "zone=a ,role=edge"})
	if err != nil || again.GetChanged() {
		t.Errorf("the same selector spelt otherwise stored a version: %v, %v", again, err)
	}
}

// Deleting a group says what its connected nodes run next: the snapshot
// of the group that takes them, as changes from theirs.
func TestDeleteGroupSaysWhatItsNodesRunNext(t *testing.T) {
	ctx := testContext(t)
	reg := fleet.NewRegistry()
	reg.Connect(&sluicev1.Node{Id: "edge-1", Labels: map[string]string{"role": "edge"}}, "127.0.0.1:1", 0).Placed("edge", "")
	s := New(openStore(t, store.BoltOptions{}), reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Group: "edge", Selector: proto.String("role=edge"), Snapshot: web(t, 3)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "edge", DryRun: true})
	want := "- group edge: gives connected node edge-1 to default; the nodes default takes run its version 1 instead (~ cluster web: endpoint web2 weight 3 -> 1)"
	if err != nil || len(resp.GetChanges()) != 1 || resp.GetChanges()[0] != want {
		t.Errorf("DeleteGroup edge, dry run: %v, %v; want %q", resp, err, want)
	}
	// A rollout in the group ends with it, and says so.
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Group: "edge", Snapshot: web(t, 4), Canary: &sluicev1.Canary{Nodes: 1}}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "edge"})
	want = "- group edge: gives connected node edge-1 to default; the nodes default takes run its version 1 instead (~ cluster web: endpoint web2 weight 3 -> 1); " +
		"its rollout of version 3 (canary) ends with it"
	if err != nil || len(resp.GetChanges()) != 1 || resp.GetChanges()[0] != want {
		t.Errorf("DeleteGroup edge with a rollout: %v, %v; want %q", resp, err, want)
	}
}

// A group that takes a connected node no group took before says so, not
// that it takes it "from" a group.
func TestGroupTakesANodeInNoGroup(t *testing.T) {
	ctx := testContext(t)
	reg := fleet.NewRegistry()
	reg.Connect(&sluicev1.Node{Id: "core-1", Labels: map[string]string{"role": "core"}}, "127.0.0.1:1", 0)
	s := New(openStore(t, store.BoltOptions{}), reg, stats.NewRing(10), nil)
	if _, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "default", Selector: "role=core"}); err != nil {
		t.Fatal(err)
	}
	reg.Connect(&sluicev1.Node{Id: "lab-1", Labels: map[string]string{"role": "lab"}}, "127.0.0.1:2", 0)
	resp, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "lab", Selector: "role=lab"})
	if want := `+ group lab: selector "role=lab"; takes connected node lab-1, which no group took; ` +
		`nothing is applied to it yet: the nodes it takes keep what they run until an apply --group lab`; err != nil || resp.GetChanges()[0] != want {
		t.Errorf("SetGroup lab: %v, %v; want the change %q", resp, err, want)
	}
}

// A change to the groups that would leave a connected node in no group, so
// that it is sent nothing new, is refused: deleting its group, or giving
// the catch-all a selector its labels miss. Moving it to another group,
// the catch-all included, is not.
func TestGroupChangesKeepConnectedNodesPlaced(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	reg.Connect(&sluicev1.Node{Id: "edge-1", Labels: map[string]string{"role": "edge"}}, "127.0.0.1:1", 0)
	reg.Connect(&sluicev1.Node{Id: "core-1", Labels: map[string]string{"role": "core"}}, "127.0.0.1:2", 0)
	gone := reg.Connect(&sluicev1.Node{Id: "old-1", Labels: map[string]string{"role": "old"}}, "127.0.0.1:3", 0)
	gone.Disconnect() // not connected: not asked about
	s := New(st, reg, stats.NewRing(10), nil)
	// The change says which nodes it moves, and that a group with nothing
	// applied sends them nothing.
	resp, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "role=edge"})
	if want := `+ group edge: selector "role=edge"; takes connected node edge-1 from default; ` +
		`nothing is applied to it yet: the nodes it takes keep what they run until an apply --group edge`; err != nil || resp.GetChanges()[0] != want {
		t.Fatalf("SetGroup edge: %v, %v; want the change %q", resp, err, want)
	}

	_, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "default"})
	wantCode(t, "deleting the group of a connected node", err, codes.FailedPrecondition,
		"connected node core-1 of group default would be in no group: no selector would match its labels, so it would get no new version; "+
			"give a group a selector that takes it first, or stop it; nothing stored")
	_, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "default", DryRun: true})
	wantCode(t, "the same as a dry run", err, codes.FailedPrecondition, "connected node core-1 of group default would be in no group")
	_, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "default", Selector: "role=lab"})
	wantCode(t, "a catch-all selector that misses a connected node", err, codes.FailedPrecondition,
		"connected node core-1 of group default would be in no group")
	_, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: ""})
	wantCode(t, "a second catch-all", err, codes.InvalidArgument, "both have an empty selector")

	// edge-1 falls to the catch-all: allowed, both ways.
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Group: "edge", Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "role in (edge,core)", DryRun: true})
	if want := `~ group edge: selector "role=edge" -> "role in (core,edge)"; takes connected node core-1 from default`; err != nil || resp.GetChanges()[0] != want {
		t.Errorf("SetGroup edge taking core-1 too, dry run: %v, %v; want %q", resp, err, want)
	}
	if _, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: "edge", Selector: "role=edge,zone=a"}); err != nil {
		t.Errorf("a selector that moves edge-1 to default: %v", err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Group: "edge", Selector: proto.String("role=edge"), Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "edge"})
	if want := "- group edge: gives connected node edge-1 to default; nothing is applied to default yet: the nodes it takes keep what they run"; err != nil || resp.GetChanges()[0] != want {
		t.Errorf("deleting edge, whose nodes default takes: %v, %v; want %q", resp, err, want)
	}
	_, err = s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "default"})
	wantCode(t, "deleting the group of two connected nodes", err, codes.FailedPrecondition,
		"connected nodes core-1 and 1 more of group default would be in no group: no selector would match their labels, so they would get no new version; "+
			"give a group a selector that takes them first, or stop them; nothing stored")

	// Once groups take every connected node, default may go, and then
	// a plain apply says how to have it again.
	for name, sel := range map[string]string{"core": "role=core", "edge": "role=edge"} {
		if _, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: name, Selector: sel}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: "default"}); err != nil {
		t.Fatalf("deleting default, which holds no connected node: %v", err)
	}
	_, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)})
	wantCode(t, "apply without a group once default is gone", err, codes.NotFound,
		`group "default" does not exist (the groups are: core, edge); give a selector to create it (--selector '' makes it take every node no other group takes, as at the start)`)
}

// Before anything is applied, a group's nodes have no version to apply:
// groups counts them, and none as having applied it.
func TestGroupsBeforeTheFirstApply(t *testing.T) {
	reg := fleet.NewRegistry()
	reg.Connect(&sluicev1.Node{Id: "n1"}, "127.0.0.1:1", 0).Placed("default", "")
	s := New(openStore(t, store.BoltOptions{}), reg, stats.NewRing(10), nil)
	if g := groupList(t, s)["default"]; g.GetVersion() != 0 || g.GetNodes() != 1 || g.GetApplied() != 0 {
		t.Errorf("default before the first apply: %v; want version 0, 1 node, 0 applied", g)
	}
}

// TestBadGroupNameSaysWhatANameIs: every call that takes a group name
// refuses one that cannot be, naming the field and saying what a valid name
// is, rather than quoting a regular expression or looking the name up.
func TestBadGroupNameSaysWhatANameIs(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	const bad = "Bad Name!"
	const rule = `"Bad Name!" is not a valid group name: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`
	for _, tc := range []struct {
		call  string
		field string
		err   error
	}{
		{"Apply", "group", func() error {
			_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 2), Group: bad})
			return err
		}()},
		{"Apply with a selector", "group", func() error {
			_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 2), Group: bad, Selector: proto.String("role=edge")})
			return err
		}()},
		{"UpdateEndpoint", "group", func() error {
			_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Group: bad, Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9)})
			return err
		}()},
		{"Rollback", "group", func() error { _, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1, Group: bad}); return err }()},
		{"Get", "group", func() error { _, err := s.Get(ctx, &sluicev1.GetRequest{Group: bad}); return err }()},
		{"History", "group", func() error { _, err := s.History(ctx, &sluicev1.HistoryRequest{Group: bad}); return err }()},
		{"SetGroup", "name", func() error {
			_, err := s.SetGroup(ctx, &sluicev1.SetGroupRequest{Name: bad, Selector: "role=edge"})
			return err
		}()},
		{"DeleteGroup", "name", func() error { _, err := s.DeleteGroup(ctx, &sluicev1.DeleteGroupRequest{Name: bad}); return err }()},
		{"GetRollout", "group", func() error { _, err := s.GetRollout(ctx, &sluicev1.RolloutRequest{Group: bad}); return err }()},
		{"ResumeRollout", "group", func() error { _, err := s.ResumeRollout(ctx, &sluicev1.RolloutRequest{Group: bad}); return err }()},
		{"AbortRollout", "group", func() error { _, err := s.AbortRollout(ctx, &sluicev1.RolloutRequest{Group: bad}); return err }()},
	} {
		if want := "invalid request: " + tc.field + ": " + rule; status.Code(tc.err) != codes.InvalidArgument || status.Convert(tc.err).Message() != want {
			t.Errorf("%s: %v; want InvalidArgument %q", tc.call, tc.err, want)
			continue
		}
		faults, ok := snapshot.FromStatus(tc.err)
		if !ok || len(faults) != 1 || faults[0].Path != tc.field || faults[0].Message != rule {
			t.Errorf("%s: faults %v; want one, %s: %s", tc.call, faults, tc.field, rule)
		}
	}
}

// TestTooLongTextSaysHowLong: a request's text field past its limit is
// refused in characters, with how long it was, and an empty one that
// must not be says so; not in PGV's "runes".
func TestTooLongTextSaysHowLong(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Comment: strings.Repeat("é", 1100)})
	wantCode(t, "Apply with a comment of 1100 characters", err, codes.InvalidArgument,
		"invalid request: comment: 1100 characters, more than the 1024 allowed")
	_, err = s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(2), Author: strings.Repeat("a", 300)})
	wantCode(t, "UpdateEndpoint by an author of 300 characters", err, codes.InvalidArgument,
		"invalid request: author: 300 characters, more than the 256 allowed")
	_, err = s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Endpoint: "web2", Weight: proto.Uint32(2)})
	wantCode(t, "UpdateEndpoint without a cluster", err, codes.InvalidArgument, "invalid request: cluster: must not be empty")
}

// An endpoint edit that finds no such endpoint in its group, the default
// one when the operator left out --group, names the groups that have it.
func TestEditNamesTheGroupsThatHaveTheEndpoint(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	edit := func() error {
		_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "api", Endpoint: "a1", Weight: proto.Uint32(9)})
		return err
	}
	if err := edit(); status.Convert(err).Message() != `cluster "api" not found (the snapshot has: web)` {
		t.Errorf("edit of an endpoint no group has: %v", err)
	}
	api := parse(t, "clusters: [{name: api, endpoints: [{name: a1, address: 127.0.0.1:9}]}]")
	for _, g := range []string{"edge", "core"} {
		if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: api, Group: g, Selector: proto.String("role=" + g)}); err != nil {
			t.Fatal(err)
		}
		want := `cluster "api" not found (the snapshot has: web); api/a1 is in group edge, not default: give --group edge`
		if g == "core" {
			want = `cluster "api" not found (the snapshot has: web); api/a1 is in groups core, edge, not default: give --group with one of them`
		}
		wantCode(t, "edit of an endpoint other groups have", edit(), codes.NotFound, want)
	}
}
