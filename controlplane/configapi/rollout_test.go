package configapi

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// placedNodes connects nodes to reg in the order of ids, each placed in
// the default group.
func placedNodes(reg *fleet.Registry, ids ...string) map[string]*fleet.Session {
	sessions := map[string]*fleet.Session{}
	for _, id := range ids {
		sessions[id] = reg.Connect(&sluicev1.Node{Id: id}, "127.0.0.1:1", 0)
		sessions[id].Placed("default", "")
	}
	return sessions
}

// A canary's share rounds up among the group's connected nodes, picked by
// id; a NACK from a canary halts the rollout and an endpoint edit reaches
// both the group's snapshot and the rollout's.
func TestRolloutCanariesNackAndEdits(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("n%02d", 12-i)) // connected last to first
	}
	sessions := placedNodes(reg, ids...)
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: &sluicev1.Canary{Percent: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetChanges()[0]; !strings.HasPrefix(got, "+ rollout default: canary to n01, n02 of 12 nodes; for 30s under 5% errors") {
		t.Errorf("rollout change = %q; want 10%% of 12 rounded up to 2, the first ids", got)
	}
	if resp.GetGroupVersion() != 1 {
		t.Errorf("group version %d after starting a rollout; want 1, the group keeps its snapshot", resp.GetGroupVersion())
	}

	// A drain during the canary goes to both snapshots, each as a version
	// of its own: the group's first, then the rollout's.
	edit, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", State: sluicev1.AdminState_ADMIN_STATE_DRAINING})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := st.Current(ctx)
	g := cur.Config.GetGroups()[0]
	if g.GetVersion() != 3 || g.GetRollout().GetVersion() != 4 {
		t.Errorf("after the drain the group runs version %d and the rollout %d; want 3 and 4, one version per content", g.GetVersion(), g.GetRollout().GetVersion())
	}
	wantChanges := []string{"~ cluster web: endpoint web1 state ACTIVE -> DRAINING", "~ rollout default: the same edit to the canaries' snapshot, as version 4"}
	if edit.GetVersion() != 4 || edit.GetGroupVersion() != 3 || !slices.Equal(edit.GetChanges(), wantChanges) {
		t.Errorf("drain answered version %d, group version %d, changes %q; want 4, 3, %q", edit.GetVersion(), edit.GetGroupVersion(), edit.GetChanges(), wantChanges)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{4, 3, 2, 1}) {
		t.Errorf("history %v; want 4 3 2 1", h)
	}
	dry, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(5), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetVersion() != 6 || len(dry.GetChanges()) != 2 || dry.GetChanges()[1] != "~ rollout default: the same edit to the canaries' snapshot, as version 6" {
		t.Errorf("dry run of an edit: version %d, changes %q; want version 6, the rollout's as version 6", dry.GetVersion(), dry.GetChanges())
	}
	for what, snap := range map[string]*sluicev1.Snapshot{"group": g.GetSnapshot(), "rollout": g.GetRollout().GetSnapshot()} {
		if ep := snap.GetClusters()[0].GetEndpoints()[0]; ep.GetState() != sluicev1.AdminState_ADMIN_STATE_DRAINING {
			t.Errorf("the %s snapshot's web1 is %v after the drain", what, ep.GetState())
		}
	}
	if w := g.GetRollout().GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight(); w != 4 {
		t.Errorf("the rollout snapshot lost its own change: web2 weight %d", w)
	}
	rv := g.GetRollout().GetVersion()

	sessions["n02"].Nacked(rv, "listener public: bind: address already in use")
	if err := s.checkRollouts(ctx, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	status, err := s.GetRollout(ctx, &sluicev1.RolloutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("halted: canary n02 refused version %d: listener public: bind: address already in use", rv)
	if status.GetPhase() != want || len(status.GetCanaries()) != 2 {
		t.Errorf("rollout status = %q with %d canaries; want %q", status.GetPhase(), len(status.GetCanaries()), want)
	}
	if _, err := s.ResumeRollout(ctx, &sluicev1.RolloutRequest{}); err != nil {
		t.Fatal(err)
	}
	cur, _ = st.Current(ctx)
	if r := cur.Config.GetGroups()[0].GetRollout(); r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY || !proto.Equal(r.GetSnapshot(), g.GetRollout().GetSnapshot()) || r.GetVersion() == rv {
		t.Errorf("resumed rollout = %v; want canary state, the same snapshot, a new version", r)
	}
	// The old NACK is for the old version: the resumed rollout runs on.
	if err := s.checkRollouts(ctx, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if status, _ := s.GetRollout(ctx, &sluicev1.RolloutRequest{}); !strings.HasPrefix(status.GetPhase(), "waiting for 2 of 2 connected canaries") {
		t.Errorf("resumed rollout phase = %q; the earlier NACK must not halt it again", status.GetPhase())
	}
	_, err = s.ResumeRollout(ctx, &sluicev1.RolloutRequest{})
	wantCode(t, "resume of a running rollout", err, 9 /* FailedPrecondition */, "group default has no halted rollout to resume")
}

// A canary's window counts from its first view at the rollout's version,
// not from whatever view was the latest when it ACKed: errors its old
// version answered before the switch, reported after the ACK, do not halt
// a rollout that fixes them. A canary whose views stay older (its stats
// stream went to another replica) holds the window back only viewWait.
func TestCanaryWindowCountsFromItsVersion(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	sessions := placedNodes(reg, "n1", "n2", "n3")
	views := stats.NewViews()
	s := New(st, reg, stats.NewRing(10), nil).WithFleet(views, nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	cur, _ := st.Current(ctx)
	old := strconv.FormatUint(cur.Config.GetGroups()[0].GetVersion(), 10)
	view := func(node, version string, requests, errors uint64) {
		views.Put(node, &sluicev1.EndpointReport{Version: version, Endpoints: []*sluicev1.EndpointStats{
			{Cluster: "web", Endpoint: "web1", Requests: requests, Responses_5Xx: errors},
		}})
	}
	view("n1", old, 100, 0)
	view("n2", old, 40, 0)

	canary := &sluicev1.Canary{Nodes: 2, Window: durationpb.New(10 * time.Second), MaxErrorRate: 0.05}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: canary}); err != nil {
		t.Fatal(err)
	}
	cur, _ = st.Current(ctx)
	r := cur.Config.GetGroups()[0].GetRollout()
	if got := strings.Join(r.GetCanaries(), ","); got != "n1,n2" {
		t.Fatalf("canaries %s; want n1,n2", got)
	}
	rv := r.GetVersion()
	sessions["n1"].Acked(rv)
	sessions["n2"].Acked(rv)
	w, step := stepper(t, s, reg, r)

	// Both ACKed, but their latest views are of the old version.
	if promote, halt := step(0); promote || halt != "" || w.phase != fmt.Sprintf("waiting for the counters of n1, n2 at version %d", rv) {
		t.Errorf("right after the ACKs: promote %v, halt %q, phase %q", promote, halt, w.phase)
	}
	// n1's first view at the version holds 50 errors its old version
	// answered before the switch.
	view("n1", strconv.FormatUint(rv, 10), 150, 50)
	if promote, halt := step(time.Second); promote || halt != "" || w.phase != fmt.Sprintf("waiting for the counters of n2 at version %d", rv) {
		t.Errorf("with n1's view at the version: promote %v, halt %q, phase %q", promote, halt, w.phase)
	}
	// n2's views never come at the version: after viewWait it counts from
	// the view it has, and the window starts.
	if promote, halt := step(viewWait); promote || halt != "" || !strings.HasPrefix(w.phase, "watching the canaries: 0s of 10s, error rate 0% of 0 requests") {
		t.Errorf("viewWait after the ACKs: promote %v, halt %q, phase %q", promote, halt, w.phase)
	}
	view("n1", strconv.FormatUint(rv, 10), 250, 51)
	if promote, halt := step(viewWait + 10*time.Second); !promote || halt != "" || w.requests != 100 || w.rate != 0.01 {
		t.Errorf("after the window: promote %v, halt %q, %d requests at rate %v; want a promotion, with 1 error in the 100 requests since the switch",
			promote, halt, w.requests, w.rate)
	}
}

// A draining node (SIGTERM, a rolling restart) is never picked as a
// canary, and a canary that begins to drain refuses the version with
// "node is shutting down", which must not halt the rollout: not while it
// drains, nor once it is gone, nor when it comes back.
func TestRolloutLeavesOutDrainingNodes(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	sessions := placedNodes(reg, "n01", "n02", "n03")
	reg.Draining("n01", "")
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: &sluicev1.Canary{Nodes: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetChanges()[0]; !strings.HasPrefix(got, "+ rollout default: canary to n02 of 2 nodes;") {
		t.Errorf("rollout change = %q; want n02 picked among the 2 nodes not draining", got)
	}
	rv := resp.GetVersion()
	phase := func(want string) {
		t.Helper()
		if err := s.checkRollouts(ctx, true, time.Now()); err != nil {
			t.Fatal(err)
		}
		status, err := s.GetRollout(ctx, &sluicev1.RolloutRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if status.GetRollout().GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY || status.GetPhase() != want {
			t.Errorf("rollout %v, phase %q; want the canary phase at %q", status.GetRollout().GetState(), status.GetPhase(), want)
		}
	}

	// n02 is restarted: it drains, refuses the version, goes away.
	reg.Draining("n02", "")
	sessions["n02"].Nacked(rv, "node is shutting down")
	phase("waiting for a canary to connect")
	sessions["n02"].Disconnect()
	phase("waiting for a canary to connect")
	if n, _ := reg.Node("n02"); n.GetNackedVersion() != 0 {
		t.Errorf("n02 gone still shows its refusal while draining: %v", n)
	}
	// Its new process connects, running the group's version.
	sessions["n02"] = reg.Connect(&sluicev1.Node{Id: "n02"}, "127.0.0.1:1", 1)
	sessions["n02"].Placed("default", "")
	phase(fmt.Sprintf("waiting for 1 of 1 connected canaries to apply version %d", rv))

	// A refusal by a canary that is not draining still halts it.
	sessions["n02"].Nacked(rv, "listener public: bind: address already in use")
	if err := s.checkRollouts(ctx, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	status, _ := s.GetRollout(ctx, &sluicev1.RolloutRequest{})
	if want := fmt.Sprintf("halted: canary n02 refused version %d: listener public: bind: address already in use", rv); status.GetPhase() != want {
		t.Errorf("phase %q after a real refusal; want %q", status.GetPhase(), want)
	}
}

// A canary of a snapshot that only writes out defaults starts no rollout:
// there is nothing for the canaries to try.
func TestCanaryOfDefaultsWrittenOutIsUnchanged(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	placedNodes(reg, "n01", "n02")
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	spelled := web(t, 1)
	spelled.Clusters[0].Endpoints[0].State = sluicev1.AdminState_ADMIN_STATE_ACTIVE
	spelled.Clusters[0].ConnectTimeout = durationpb.New(5 * time.Second)
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: spelled, Canary: &sluicev1.Canary{Nodes: 1}})
	if err != nil || resp.GetChanged() || resp.GetVersion() != 1 {
		t.Errorf("canary of the defaults written out = %v, %v; want version 1, unchanged", resp, err)
	}
	if status, err := s.GetRollout(ctx, &sluicev1.RolloutRequest{}); err == nil && status.GetRollout() != nil {
		t.Errorf("a rollout was started: %v", status.GetRollout())
	}
}

// The rate sluicectl sends for --canary-max-errors 0% reads as 0%, not
// as the tiny number it is.
func TestCanaryOfNoErrorsSaysZeroPercent(t *testing.T) {
	ctx := testContext(t)
	reg := fleet.NewRegistry()
	placedNodes(reg, "n01")
	s := New(openStore(t, store.BoltOptions{}), reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), DryRun: true,
		Canary: &sluicev1.Canary{Nodes: 1, MaxErrorRate: 1e-12}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetChanges()[0]; !strings.HasPrefix(got, "+ rollout default: canary to n01 of 1 nodes; for 30s under 0% errors") {
		t.Errorf("rollout change = %q; want it under 0%% errors", got)
	}
}

// A window that ends with fewer requests than the canary's min_requests
// halts the rollout, saying how many it saw; one with enough promotes.
func TestCanaryWindowNeedsItsMinRequests(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	sessions := placedNodes(reg, "n1", "n2")
	views := stats.NewViews()
	s := New(st, reg, stats.NewRing(10), nil).WithFleet(views, nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	canary := &sluicev1.Canary{Nodes: 1, Window: durationpb.New(10 * time.Second), MinRequests: 100}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.GetChanges()[0], "+ rollout default: canary to n1 of 2 nodes; for 10s under 5% errors, over at least 100 requests"; got != want {
		t.Errorf("rollout change = %q; want %q", got, want)
	}
	cur, _ := st.Current(ctx)
	r := cur.Config.GetGroups()[0].GetRollout()
	rv := r.GetVersion()
	sessions["n1"].Acked(rv)
	view := func(requests uint64) {
		views.Put("n1", &sluicev1.EndpointReport{Version: strconv.FormatUint(rv, 10), Endpoints: []*sluicev1.EndpointStats{
			{Cluster: "web", Endpoint: "web1", Requests: requests},
		}})
	}
	view(0)
	for _, tc := range []struct {
		requests uint64
		halt     string
	}{
		{99, "the canaries served 99 requests over 10s, fewer than the 100 the rollout needs (min_requests) to judge their error rate"},
		{100, ""},
	} {
		w, step := stepper(t, s, reg, r)
		view(0)
		if promote, halt := step(0); promote || halt != "" {
			t.Fatalf("at the window's start: promote %v, halt %q", promote, halt)
		}
		view(tc.requests)
		if promote, halt := step(5 * time.Second); promote || halt != "" || !strings.HasSuffix(w.phase, "(limit 5%, at least 100 requests)") {
			t.Errorf("%d requests, mid-window: promote %v, halt %q, phase %q", tc.requests, promote, halt, w.phase)
		}
		promote, halt := step(10 * time.Second)
		if promote != (tc.halt == "") || halt != tc.halt {
			t.Errorf("%d requests, at the window's end: promote %v, halt %q; want halt %q", tc.requests, promote, halt, tc.halt)
		}
	}
}

// stepper returns the watch of rollout r and a step of it, at a time given
// from a fixed start, with the fleet's nodes as reg lists them at the step.
func stepper(t *testing.T, s *Server, reg *fleet.Registry, r *sluicev1.Rollout) (*watch, func(at time.Duration) (promote bool, halt string)) {
	w := &watch{version: r.GetVersion()}
	return w, func(at time.Duration) (bool, string) {
		t.Helper()
		nodes := map[string]*sluicev1.NodeStatus{}
		for _, n := range reg.Nodes() {
			nodes[n.GetId()] = n
		}
		return s.step(w, r, nodes, time.Unix(1e9, 0).Add(at))
	}
}

// TestCheckCanaryNamesAShare: an API client's canary that names no share
// of the group, or two, or more than all of it, is refused as the
// request's fault, saying what to give (sluicectl refuses the first and
// the last itself).
func TestCheckCanaryNamesAShare(t *testing.T) {
	for _, tc := range []struct {
		canary *sluicev1.Canary
		want   string
	}{
		{&sluicev1.Canary{}, "canary: give a share of the group's nodes, 1% to 100%, or a count of nodes (1 or more)"},
		{&sluicev1.Canary{Percent: 10, Nodes: 2}, "canary: give a percent or a count of nodes, not both"},
		{&sluicev1.Canary{Percent: 150}, "canary: 150% is more than the whole group: give 1% to 100%"},
		{&sluicev1.Canary{Nodes: 2}, ""},
	} {
		err := checkCanary(tc.canary)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("canary %v: %v, want it taken", tc.canary, err)
		case tc.want != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), tc.want)):
			t.Errorf("canary %v: %v, want InvalidArgument %q", tc.canary, err, tc.want)
		}
	}
}

// TestCanariesRunningTheRolloutAreApplied: a canary that applied the
// rollout's version runs what it is sent: groups counts it applied, with
// the rollout's version and canaries beside the group's version, and a
// node of the group still on the group's version is applied too.
func TestCanariesRunningTheRolloutAreApplied(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	sessions := placedNodes(reg, "n1", "n2", "n3")
	s := New(st, reg, stats.NewRing(10), nil).WithFleet(stats.NewViews(), nil)
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sessions {
		n.Acked(resp.GetVersion())
	}
	canary := &sluicev1.Canary{Nodes: 1, Window: durationpb.New(time.Hour)}
	ro, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	sessions["n1"].Acked(ro.GetVersion())
	gs, err := s.ListGroups(ctx, &sluicev1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	g := gs.GetGroups()[0]
	if g.GetVersion() != resp.GetVersion() || g.GetCanaryVersion() != ro.GetVersion() || !slices.Equal(g.GetCanaries(), []string{"n1"}) {
		t.Errorf("group: version %d, canary version %d, canaries %v; want %d, %d, [n1]",
			g.GetVersion(), g.GetCanaryVersion(), g.GetCanaries(), resp.GetVersion(), ro.GetVersion())
	}
	if g.GetNodes() != 3 || g.GetApplied() != 3 {
		t.Errorf("group: %d nodes, %d applied; want 3 and 3 (the canary on the rollout's version)", g.GetNodes(), g.GetApplied())
	}
	if got := WantVersion(g, "n1"); got != ro.GetVersion() {
		t.Errorf("WantVersion of the canary = %d, want the rollout's %d", got, ro.GetVersion())
	}
	if got := WantVersion(g, "n2"); got != resp.GetVersion() {
		t.Errorf("WantVersion of n2 = %d, want the group's %d", got, resp.GetVersion())
	}
}

// TestGetOfARollout: while a group has a staged rollout, get prints the
// group's snapshot, with a note of the version its canaries run; get of
// that version prints the canaries' snapshot, which is the one the
// version names.
func TestGetOfARollout(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	sessions := placedNodes(reg, "n01", "n02", "n03")
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: &sluicev1.Canary{Nodes: 1}}); err != nil {
		t.Fatal(err)
	}
	weight := func(r *sluicev1.GetResponse) uint32 {
		return r.GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight()
	}
	for _, tc := range []struct {
		version     uint64
		wantVersion uint64
		wantWeight  uint32
		wantNote    string
	}{
		{0, 1, 1, "version 2 runs on its canaries (n01); get --version 2 prints it"},
		{2, 2, 4, ""},
		{1, 1, 1, ""},
	} {
		resp, err := s.Get(ctx, &sluicev1.GetRequest{Version: tc.version})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetInfo().GetVersion() != tc.wantVersion || weight(resp) != tc.wantWeight || resp.GetRollout() != tc.wantNote {
			t.Errorf("get --version %d: version %d, web2 weight %d, note %q; want %d, %d, %q",
				tc.version, resp.GetInfo().GetVersion(), weight(resp), resp.GetRollout(), tc.wantVersion, tc.wantWeight, tc.wantNote)
		}
	}
	sessions["n01"].Nacked(2, "boom")
	if err := s.checkRollouts(ctx, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Get(ctx, &sluicev1.GetRequest{})
	if want := "the rollout of version 2 halted (canary n01 refused version 2: boom): its canaries run this snapshot again; get --version 2 prints the rollout's"; err != nil || resp.GetRollout() != want {
		t.Errorf("get of a halted rollout's group: note %q, %v; want %q", resp.GetRollout(), err, want)
	}
}
