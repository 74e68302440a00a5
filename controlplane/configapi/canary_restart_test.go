package configapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A canary that restarts within its window (a host reboot in a rolling
// maintenance) starts its counters from zero. What its old process
// counted in the window still counts, and so does everything its new
// process counts at the version: the error rate stays that of the whole
// window, not of the few requests since the restart.
func TestCanaryRestartKeepsItsWindow(t *testing.T) {
	c := startOneCanary(t)
	w, step, view := c.w, c.step, c.view

	view(5000, 10) // counters from the node's start: the window counts from here
	view(5000, 10)
	if _, halt := step(0); halt != "" {
		t.Fatalf("at the start: halt %q", halt)
	}
	view(6000, 55) // 45 errors in 1000 requests: 4.5%, under 5%
	if _, halt := step(10 * time.Second); halt != "" || w.requests != 1000 {
		t.Fatalf("before the restart: halt %q, %d requests", halt, w.requests)
	}
	// n1 restarts, runs the version again from its start, and reports.
	view(30, 2)
	if _, halt := step(20 * time.Second); halt != "" {
		t.Errorf("right after the restart: halt %q", halt)
	}
	view(60, 4)
	promote, halt := step(30 * time.Second)
	if halt != "" || promote || w.requests != 1060 || !strings.Contains(w.phase, "error rate 4.62% of 1060 requests") {
		t.Errorf("after the restart: promote %v, halt %q, %d requests, phase %q; want the window's 49 errors in 1060 requests, 4.62%%, going on",
			promote, halt, w.requests, w.phase)
	}
	// It restarts again: its counters are back under the last view, though
	// not under the base the second process counted from (zero).
	view(20, 1)
	if _, halt := step(40 * time.Second); halt != "" || w.requests != 1080 || !strings.Contains(w.phase, "error rate 4.63% of 1080 requests") {
		t.Errorf("after a second restart: halt %q, %d requests, phase %q; want the window's 50 errors in 1080 requests, 4.63%%",
			halt, w.requests, w.phase)
	}
}

// A canary whose restart the control plane sees (its stream ends; it
// connects again and applies the version) keeps what it counted too: the
// window starts again from its new process's first view, and the error
// rate is that of everything counted at the version.
func TestCanaryReconnectKeepsItsCounts(t *testing.T) {
	c := startOneCanary(t)
	w, step, view := c.w, c.step, c.view

	view(5000, 10)
	step(0)
	view(6000, 55) // 45 errors in 1000 requests
	if _, halt := step(10 * time.Second); halt != "" || w.requests != 1000 {
		t.Fatalf("before the restart: halt %q, %d requests", halt, w.requests)
	}

	c.sessions["n1"].Disconnect()
	if _, halt := step(15 * time.Second); halt != "" || w.phase != "waiting for a canary to connect" {
		t.Fatalf("canary away: halt %q, phase %q", halt, w.phase)
	}
	n1 := c.reg.Connect(&sluicev1.Node{Id: "n1"}, "127.0.0.1:2", 0)
	n1.Placed("default", "")
	n1.Acked(c.rollout.GetVersion())
	view(30, 2) // the new process, from its start
	if _, halt := step(20 * time.Second); halt != "" || w.requests != 1030 || !strings.Contains(w.phase, "0s of 1m0s, error rate 4.56% of 1030 requests") {
		t.Errorf("back: halt %q, %d requests, phase %q; want the window started again with 47 errors in 1030 requests", halt, w.requests, w.phase)
	}
	view(60, 4)
	if promote, halt := step(50 * time.Second); promote || halt != "" {
		t.Errorf("30s after it came back: promote %v, halt %q; want the new window going on", promote, halt)
	}
	if promote, halt := step(80 * time.Second); !promote || halt != "" || w.requests != 1060 {
		t.Errorf("a window after it came back: promote %v, halt %q, %d requests; want promoted on 1060", promote, halt, w.requests)
	}
}

// oneCanary is a rollout of a new version to n1, the one canary of nodes n1
// and n2, with a window of a minute and a limit of 5%: n1 has applied it.
type oneCanary struct {
	reg      *fleet.Registry
	sessions map[string]*fleet.Session
	rollout  *sluicev1.Rollout
	w        *watch
	step     func(at time.Duration) (promote bool, halt string)
	// view is n1's report of its endpoint web1's counters at the version.
	view func(requests, errors uint64)
}

func startOneCanary(t *testing.T) *oneCanary {
	t.Helper()
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	c := &oneCanary{reg: fleet.NewRegistry()}
	c.sessions = placedNodes(c.reg, "n1", "n2")
	views := stats.NewViews()
	s := New(st, c.reg, stats.NewRing(10), nil).WithFleet(views, nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	canary := &sluicev1.Canary{Nodes: 1, Window: durationpb.New(time.Minute), MaxErrorRate: 0.05}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: canary}); err != nil {
		t.Fatal(err)
	}
	cur, _ := st.Current(ctx)
	c.rollout = cur.Config.GetGroups()[0].GetRollout()
	if got := strings.Join(c.rollout.GetCanaries(), ","); got != "n1" {
		t.Fatalf("canaries %s; want n1", got)
	}
	at := strconv.FormatUint(c.rollout.GetVersion(), 10)
	c.view = func(requests, errors uint64) {
		views.Put("n1", &sluicev1.EndpointReport{Version: at, Endpoints: []*sluicev1.EndpointStats{
			{Cluster: "web", Endpoint: "web1", Requests: requests, Responses_5Xx: errors},
		}})
	}
	c.sessions["n1"].Acked(c.rollout.GetVersion())
	c.w, c.step = stepper(t, s, c.reg, c.rollout)
	return c
}

// A canary that dies for good leaves the rollout waiting for it to
// connect; past the progress deadline (default 10m, counted from the last
// check that found the window running) the rollout halts, saying what it
// waited for, so the group takes applies again.
func TestDeadCanaryHaltsAtTheProgressDeadline(t *testing.T) {
	c := startOneCanary(t)
	if got := c.rollout.GetProgressDeadline().AsDuration(); got != DefaultProgressDeadline {
		t.Errorf("the rollout's progress deadline is %v; want the default, %v", got, DefaultProgressDeadline)
	}
	c.view(0, 0)
	c.step(0)
	if _, halt := c.step(30 * time.Second); halt != "" || !strings.HasPrefix(c.w.phase, "watching the canaries: 30s of 1m0s") {
		t.Fatalf("mid-window: halt %q, phase %q", halt, c.w.phase)
	}
	c.sessions["n1"].Disconnect()
	for _, at := range []time.Duration{40 * time.Second, 30*time.Second + DefaultProgressDeadline - time.Second} {
		if _, halt := c.step(at); halt != "" || c.w.phase != "waiting for a canary to connect" {
			t.Errorf("%v in, the canary gone: halt %q, phase %q; want it waiting", at, halt, c.w.phase)
		}
	}
	want := "no progress for 10m0s (the progress deadline): waiting for a canary to connect"
	if _, halt := c.step(30*time.Second + DefaultProgressDeadline); halt != want {
		t.Errorf("the deadline after the window last ran: halt %q; want %q", halt, want)
	}
}

// flakyStore fails Current while down is set, as an etcd away would.
type flakyStore struct {
	store.Store
	down bool
}

func (f *flakyStore) Current(ctx context.Context) (*store.Version, error) {
	if f.down {
		return nil, errors.New("etcd away")
	}
	return f.Store.Current(ctx)
}

// flakyFleet lists the fleet's nodes as fleetview does: this replica's
// alone, with an error, while down is set.
type flakyFleet struct {
	*fleet.Registry
	down bool
}

func (f *flakyFleet) FleetNodes() ([]*sluicev1.NodeStatus, error) {
	if f.down {
		return f.Nodes(), errors.New("etcd away")
	}
	return f.Nodes(), nil
}

// A canary that never applies the version halts the rollout at the
// deadline the canary asked for, through the checks RunRollouts makes;
// the deadline counts again from a check that could read the store, and
// the other replicas' nodes, after one that could not (the fleet's
// records may lag an outage).
func TestStuckCanaryHaltsAtItsProgressDeadline(t *testing.T) {
	ctx := testContext(t)
	st := &flakyStore{Store: openStore(t, store.BoltOptions{})}
	reg := &flakyFleet{Registry: fleet.NewRegistry()}
	placedNodes(reg.Registry, "n1", "n2")
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	canary := &sluicev1.Canary{Nodes: 1, ProgressDeadline: durationpb.New(time.Minute)}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: canary}); err != nil {
		t.Fatal(err)
	}
	rollout := func() *sluicev1.Rollout {
		t.Helper()
		cur, err := st.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cur.Config.GetGroups()[0].GetRollout()
	}
	v := rollout().GetVersion()
	t0 := time.Now()
	for _, tc := range []struct {
		at                   time.Duration
		storeDown, fleetDown bool
	}{
		{0, false, false}, {59 * time.Second, false, false},
		{2 * time.Minute, true, false}, {2*time.Minute + time.Second, false, false},
		{3*time.Minute + 5*time.Second, false, true}, {3*time.Minute + 30*time.Second, false, false},
		{4*time.Minute + 29*time.Second, false, false},
	} {
		st.down, reg.down = tc.storeDown, tc.fleetDown
		if err := s.checkRollouts(ctx, true, t0.Add(tc.at)); (err != nil) != tc.storeDown {
			t.Fatalf("check at %v, store down %v: %v", tc.at, tc.storeDown, err)
		}
		st.down, reg.down = false, false
		if r := rollout(); r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY {
			t.Fatalf("at %v: %v (%s); want the rollout still waiting for its canary", tc.at, r.GetState(), r.GetReason())
		}
	}
	if err := s.checkRollouts(ctx, true, t0.Add(4*time.Minute+30*time.Second)); err != nil {
		t.Fatal(err)
	}
	r := rollout()
	want := fmt.Sprintf("no progress for 1m0s (the progress deadline): waiting for 1 of 1 connected canaries to apply version %d", v)
	if r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_HALTED || r.GetReason() != want {
		t.Errorf("a minute after the fleet could be read again: %v, reason %q; want HALTED, %q", r.GetState(), r.GetReason(), want)
	}
	if st, err := s.GetRollout(ctx, &sluicev1.RolloutRequest{}); err != nil || st.GetPhase() != "halted: "+want {
		t.Errorf("rollout status: %q, %v", st.GetPhase(), err)
	}
}
