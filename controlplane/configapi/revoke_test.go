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
