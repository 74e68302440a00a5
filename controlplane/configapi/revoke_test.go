package configapi

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestRevokeNode: a revocation is a version of its own, with what it
// does in its changes; a dry run stores nothing, revoking again moves
// it to now, and a rollback, which brings back a group's snapshot, keeps
// it.
func TestRevokeNode(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	s := New(st, fleet.NewRegistry(), stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "edge-1"})
	wantCode(t, "a revocation without TLS", err, codes.FailedPrecondition, "this control plane speaks plain gRPC: nodes present no certificate to revoke")
	s.WithNodeCertificates(true)
	dry, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "edge-1", DryRun: true})
	if err != nil || dry.GetVersion() != 2 || !dry.GetChanged() {
		t.Fatalf("dry run: %v, %v; want version 2, changed", dry, err)
	}
	if h := history(t, ctx, s); len(h) != 1 {
		t.Fatalf("a dry run stored versions: %v", h)
	}
	before := time.Now().Truncate(time.Second)
	resp, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "edge-1", Author: "root"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListRevokedNodes(ctx, &sluicev1.ListRevokedNodesRequest{})
	if err != nil || len(list.GetNodes()) != 1 {
		t.Fatalf("ListRevokedNodes = %v, %v; want edge-1", list, err)
	}
	n := list.GetNodes()[0]
	at := n.GetRevokedAt().AsTime()
	if n.GetNodeId() != "edge-1" || n.GetVersion() != 2 || at.Before(before) || at.After(time.Now()) || at.Nanosecond() != 0 {
		t.Errorf("revoked %v; want edge-1 at version 2, now in whole seconds", n)
	}
	want := "+ revoked node edge-1: its certificates issued before " + at.UTC().Format(time.RFC3339) + " are refused"
	if resp.GetVersion() != 2 || len(resp.GetChanges()) != 1 || resp.GetChanges()[0] != want {
		t.Errorf("RevokeNode: version %d, changes %q; want 2 and %q", resp.GetVersion(), resp.GetChanges(), want)
	}
	h, err := s.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil || h.GetVersions()[0].GetComment() != "revoke node edge-1" || h.GetVersions()[0].GetAuthor() != "root" {
		t.Errorf("history's newest: %v, %v; want the revocation, by root", h.GetVersions()[0], err)
	}

	if _, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "edge-0"}); err != nil {
		t.Fatal(err)
	}
	again, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "edge-1"})
	if err != nil || !strings.HasPrefix(again.GetChanges()[0], "~ revoked node edge-1 again: ") {
		t.Errorf("revoking again: %v, %v", again, err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 3)}); err != nil {
		t.Fatal(err)
	}
	if rb, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1}); err != nil || !rb.GetChanged() {
		t.Fatalf("rollback to version 1: %v, %v; want a new version", rb, err)
	}
	list, _ = s.ListRevokedNodes(ctx, &sluicev1.ListRevokedNodesRequest{})
	var ids []string
	for _, n := range list.GetNodes() {
		ids = append(ids, n.GetNodeId())
	}
	if strings.Join(ids, " ") != "edge-0 edge-1" || list.GetNodes()[1].GetVersion() != again.GetVersion() {
		t.Errorf("after a rollback the revoked nodes are %v; want edge-0 and edge-1 (revoked again at version %d), sorted", list.GetNodes(), again.GetVersion())
	}

	_, err = s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: "bad id"})
	wantCode(t, "a bad node id", err, codes.InvalidArgument, `"bad id" is not a valid node id`)
}

// TestRevokeUnseenNodeWarns: revoking a node id no node of the fleet has
// stores the revocation (the node may be away for long) and warns, with the
// nodes there are; a node seen, or revoked before, gets no warning.
func TestRevokeUnseenNodeWarns(t *testing.T) {
	ctx := testContext(t)
	reg := fleet.NewRegistry()
	s := New(openStore(t, store.BoltOptions{}), reg, stats.NewRing(10), nil).WithNodeCertificates(true)
	reg.Connect(&sluicev1.Node{Id: "edge-1"}, "127.0.0.1:1", 0)
	reg.Connect(&sluicev1.Node{Id: "core-1"}, "127.0.0.1:2", 0)
	for _, tc := range []struct {
		id, warning string
	}{
		{"edge-9", `node "edge-9" is not among the nodes this control plane has seen lately (it has seen: core-1, edge-1); ` +
			"it is revoked all the same, as a node away for longer than sluice-cp --forget-nodes-after would be: check the id"},
		{"edg-1", `node "edg-1" is not among the nodes this control plane has seen lately (did you mean "edge-1"?); ` +
			"it is revoked all the same, as a node away for longer than sluice-cp --forget-nodes-after would be: check the id"},
		{"edge-1", ""},
		{"edge-9", ""}, // again
	} {
		resp, err := s.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: tc.id})
		if err != nil || !resp.GetChanged() {
			t.Fatalf("RevokeNode %s: %v, %v; want it stored", tc.id, resp, err)
		}
		if got := strings.Join(resp.GetWarnings(), "\n"); got != tc.warning {
			t.Errorf("RevokeNode %s warns %q; want %q", tc.id, got, tc.warning)
		}
	}
}
