package configapi

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// applyWeights stores one version per weight of web2 and returns the
// server.
func applyWeights(t *testing.T, s *Server, weights ...int) {
	t.Helper()
	ctx := testContext(t)
	for _, w := range weights {
		if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, w), Author: "ann"}); err != nil {
			t.Fatalf("Apply weight %d: %v", w, err)
		}
	}
}

func TestRollbackStoresTheOldSnapshotAsANewVersion(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	applyWeights(t, s, 1, 3, 5)

	resp, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1, Author: "bob"})
	if err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if resp.GetVersion() != 4 || !resp.GetChanged() {
		t.Fatalf("Rollback = version %d changed %v, want version 4 changed", resp.GetVersion(), resp.GetChanged())
	}
	if want := []string{"~ cluster web: endpoint web2 weight 5 -> 1"}; !slices.Equal(resp.GetChanges(), want) {
		t.Errorf("changes = %q, want %q", resp.GetChanges(), want)
	}
	cur, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(cur.GetSnapshot(), web(t, 1)) {
		t.Errorf("current snapshot is not version 1's")
	}
	if info := cur.GetInfo(); info.GetAuthor() != "bob" || info.GetComment() != "rollback to version 1" {
		t.Errorf("history says author %q comment %q", info.GetAuthor(), info.GetComment())
	}
	if got := history(t, ctx, s); !slices.Equal(got, []uint64{4, 3, 2, 1}) {
		t.Errorf("history = %v: a rollback adds a version and rewrites nothing", got)
	}

	// Rolling back to what is current stores nothing.
	resp, err = s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1})
	if err != nil || resp.GetChanged() || resp.GetVersion() != 4 {
		t.Errorf("rollback to the current snapshot = %v, %v; want unchanged version 4", resp, err)
	}
}

func TestRollbackDryRunStoresNothing(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	applyWeights(t, s, 1, 3)
	resp, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() != 3 || !resp.GetChanged() || len(resp.GetChanges()) != 1 {
		t.Errorf("dry run = %v; want would-be version 3 with one change", resp)
	}
	if got := history(t, ctx, s); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("history after a dry run = %v, want [2 1]", got)
	}
}

// TestRollbackToNothingRefused: a rollback to a version whose group held
// no clusters and no listeners would empty every node of the group: it is
// refused, as sluicectl refuses a file that lists nothing, unless the group
// holds nothing now either.
func TestRollbackToNothingRefused(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	emptied := func() {
		t.Helper()
		if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: &sluicev1.Snapshot{}}); err != nil {
			t.Fatal(err)
		}
	}
	applyWeights(t, s, 1)
	emptied() // version 2
	applyWeights(t, s, 3)
	for _, dry := range []bool{true, false} {
		_, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 2, DryRun: dry})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "version 2 of group default holds no clusters and no listeners") {
			t.Errorf("rollback (dry run %v) to the empty version 2: %v; want FAILED_PRECONDITION saying it holds nothing", dry, err)
		}
	}
	if got := history(t, ctx, s); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Errorf("history = %v, want [3 2 1]: the refused rollback stores nothing", got)
	}
	// Emptied on purpose, the group may go back to the empty version.
	emptied()
	if resp, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 2}); err != nil || resp.GetChanged() {
		t.Errorf("rollback to empty from empty = %v, %v; want unchanged", resp, err)
	}
}

func TestRollbackToAVersionNotKept(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{Retain: 2})
	s := New(st, fleet.NewRegistry(), stats.NewRing(10), nil)
	applyWeights(t, s, 1, 3, 5)

	for _, v := range []uint64{1, 9} {
		_, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: v})
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "the kept versions are 2 to 3") {
			t.Errorf("rollback to %d: %v; want NOT_FOUND naming the kept versions 2 to 3", v, err)
		}
	}
	_, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 0})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "version") {
		t.Errorf("rollback to 0: %v; want INVALID_ARGUMENT naming version", err)
	}
	if got := history(t, ctx, s); !slices.Equal(got, []uint64{3, 2}) {
		t.Errorf("history = %v, want [3 2]: failed rollbacks store nothing", got)
	}
}

// TestIfVersion: each writing call stores only while the current version
// is the one the caller names, and says what it is otherwise.
func TestIfVersion(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	zero, two := uint64(0), uint64(2)

	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), IfVersion: &zero}); err != nil {
		t.Fatalf("apply --if-version 0 on an empty store: %v", err)
	}
	applyWeights(t, s, 3) // version 2
	calls := map[string]func() error{
		"apply": func() error {
			_, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 7), IfVersion: &zero})
			return err
		},
		"update endpoint": func() error {
			w := uint32(7)
			_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: &w, IfVersion: &zero})
			return err
		},
		"rollback": func() error {
			_, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1, IfVersion: &zero})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "the current version is 2, not 0") {
			t.Errorf("%s with a stale if_version: %v; want FAILED_PRECONDITION naming versions 2 and 0", name, err)
		}
	}
	if got := history(t, ctx, s); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("history = %v: refused calls stored something", got)
	}
	if _, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: 1, IfVersion: &two}); err != nil {
		t.Errorf("rollback with the current if_version: %v", err)
	}
}
