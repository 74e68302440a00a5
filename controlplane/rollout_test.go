package controlplane

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// nextWithin is n.next bounded by d, saying what was awaited on failure.
func (n *node) nextWithin(ctx context.Context, d time.Duration, what string) *sluicev1.DiscoveryResponse {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	select {
	case r := <-n.resps:
		return r
	case err := <-n.done:
		n.t.Fatalf("node %s: stream ended waiting for %s: %v", n.id, what, err)
	case <-ctx.Done():
		n.t.Fatalf("node %s: not sent %s within %v", n.id, what, d)
	}
	return nil
}

// edited returns s with endpoint ep of cluster web in state st.
func edited(s *sluicev1.Snapshot, ep string, st sluicev1.AdminState) *sluicev1.Snapshot {
	s = proto.Clone(s).(*sluicev1.Snapshot)
	for _, e := range s.GetClusters()[0].GetEndpoints() {
		if e.GetName() == ep {
			e.State = st
		}
	}
	return s
}

// An endpoint edit during a staged rollout reaches the canaries and the
// rest of the group, each under a version of its own; a canary sent back
// to the group's snapshot (halt, abort) or on to the promoted one is sent
// what the group runs, whatever it ran before.
func TestEditDuringRolloutThenHaltAbortPromote(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	const drained = sluicev1.AdminState_ADMIN_STATE_DRAINING
	s1, s2 := snap(t, 1), snap(t, 4)
	cp.apply(ctx, t, s1)
	canary := cp.connect(ctx, t, "n1", "")
	other := cp.connect(ctx, t, "n2", "")
	for _, n := range []*node{canary, other} {
		n.ack(n.next(ctx))
		cp.waitNode(ctx, t, n.id, "version 1 applied", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 1 })
	}
	expect := func(n *node, r *sluicev1.DiscoveryResponse, version string, want *sluicev1.Snapshot) {
		t.Helper()
		if r.GetVersionInfo() != version || !proto.Equal(r.GetSnapshot(), want) {
			t.Fatalf("%s was sent version %s; want version %s with its snapshot", n.id, r.GetVersionInfo(), version)
		}
	}

	// Version 2: s2 to n1 only, for long enough that it is not promoted.
	if _, err := cp.config.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: s2, Canary: &sluicev1.Canary{Nodes: 1, Window: durationpb.New(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	r := canary.next(ctx)
	expect(canary, r, "2", s2)
	canary.ack(r)

	// The drain: the group's snapshot as version 3, the canary's as 4.
	resp, err := cp.config.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", State: drained})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetGroupVersion() != 3 || resp.GetVersion() != 4 {
		t.Errorf("drain: group version %d, version %d; want 3 and 4", resp.GetGroupVersion(), resp.GetVersion())
	}
	groupLabel, canaryLabel := strconv.FormatUint(resp.GetGroupVersion(), 10), strconv.FormatUint(resp.GetVersion(), 10)
	r = other.next(ctx)
	expect(other, r, groupLabel, edited(s1, "web1", drained))
	other.ack(r)
	r = canary.next(ctx)
	expect(canary, r, canaryLabel, edited(s2, "web1", drained))

	// The canary refuses it: the rollout halts and the canary is sent
	// the group's snapshot, with the drain.
	canary.nack(r, "2", "listener public: bind: address already in use")
	r = canary.nextWithin(ctx, 5*time.Second, "the group's version after the halt")
	expect(canary, r, groupLabel, edited(s1, "web1", drained))
	canary.ack(r)
	st, err := cp.config.GetRollout(ctx, &sluicev1.RolloutRequest{})
	if err != nil || st.GetRollout().GetState() != sluicev1.RolloutState_ROLLOUT_STATE_HALTED {
		t.Fatalf("rollout after the NACK: %v, %v; want halted", st, err)
	}

	// Resumed (version 6), then aborted: back to the group's again.
	if _, err := cp.config.ResumeRollout(ctx, &sluicev1.RolloutRequest{}); err != nil {
		t.Fatal(err)
	}
	r = canary.next(ctx)
	expect(canary, r, "6", edited(s2, "web1", drained))
	canary.ack(r)
	if _, err := cp.config.AbortRollout(ctx, &sluicev1.RolloutRequest{}); err != nil {
		t.Fatal(err)
	}
	r = canary.nextWithin(ctx, 5*time.Second, "the group's version 3 after the abort")
	expect(canary, r, "3", edited(s1, "web1", drained))
	canary.ack(r)
	for _, id := range []string{"n1", "n2"} {
		cp.waitNode(ctx, t, id, "version 3 applied", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 3 })
	}

	// A rollout with a short window (version 8), an edit during it (9 for
	// the group, 10 for the canary), then the promotion (11).
	if _, err := cp.config.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: s2, Canary: &sluicev1.Canary{Nodes: 1, Window: durationpb.New(time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	r = canary.next(ctx)
	expect(canary, r, "8", s2)
	if _, err := cp.config.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: drained}); err != nil {
		t.Fatal(err)
	}
	canary.ack(r)
	r = other.next(ctx)
	expect(other, r, "9", edited(edited(s1, "web1", drained), "web2", drained))
	other.ack(r)
	r = canary.next(ctx)
	promoted := edited(s2, "web2", drained)
	expect(canary, r, "10", promoted)
	canary.ack(r)
	for _, n := range []*node{canary, other} {
		r = n.nextWithin(ctx, 5*time.Second, "the promoted version 11")
		expect(n, r, "11", promoted)
		n.ack(r)
	}
	for _, id := range []string{"n1", "n2"} {
		cp.waitNode(ctx, t, id, "version 11 applied", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 11 })
	}
}
