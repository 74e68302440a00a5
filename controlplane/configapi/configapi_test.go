package configapi

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const defaultTestTimeout = 10 * time.Second

func newServer(t *testing.T) (*Server, store.Store) {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st, fleet.NewRegistry(), stats.NewRing(10), nil), st
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func parse(t *testing.T, yaml string) *sluicev1.Snapshot {
	t.Helper()
	s, err := snapshot.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

const webYAML = `
clusters:
  - name: web
    endpoints:
      - { name: web1, address: 127.0.0.1:9001, weight: 2 }
      - { name: web2, address: 127.0.0.1:9002, weight: %d }
listeners:
  - { name: public, address: 127.0.0.1:8080, protocol: HTTP, default_cluster: web }
`

func web(t *testing.T, weight int) *sluicev1.Snapshot { return parse(t, fmt.Sprintf(webYAML, weight)) }

func history(t *testing.T, ctx context.Context, s *Server) []uint64 {
	t.Helper()
	h, err := s.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var out []uint64
	for _, v := range h.GetVersions() {
		out = append(out, v.GetVersion())
	}
	return out
}

func TestApplyStoresChanges(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Author: "ann", Comment: "first"})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if resp.GetVersion() != 1 || !resp.GetChanged() || !slices.Equal(resp.GetChanges(), []string{"+ cluster web", "+ listener public"}) {
		t.Errorf("first Apply = %v", resp)
	}
	resp, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 3), Author: "bob"})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{"~ cluster web: endpoint web2 weight 1 -> 3"}
	if resp.GetVersion() != 2 || !slices.Equal(resp.GetChanges(), want) {
		t.Errorf("second Apply = %v, want version 2 changes %q", resp, want)
	}
	got, err := s.Get(ctx, &sluicev1.GetRequest{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetInfo().GetAuthor() != "bob" || !slices.Equal(got.GetInfo().GetChanges(), want) || !proto.Equal(got.GetSnapshot(), web(t, 3)) {
		t.Errorf("Get(2) = %v", got)
	}
}

func TestApplyUnchangedAndDryRun(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Comment: "again"})
	if err != nil || resp.GetVersion() != 1 || resp.GetChanged() || len(resp.GetChanges()) != 0 {
		t.Errorf("unchanged Apply = %v, %v; want version 1, unchanged", resp, err)
	}
	resp, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 5), DryRun: true})
	if err != nil || resp.GetVersion() != 2 || !resp.GetChanged() ||
		!slices.Equal(resp.GetChanges(), []string{"~ cluster web: endpoint web2 weight 1 -> 5"}) {
		t.Errorf("dry run = %v, %v; want the version it would create (2) and the change", resp, err)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
}

func TestApplyFaultsStoreNothing(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	bad := web(t, 1)
	bad.Clusters[0].Endpoints[1].Weight = proto.Uint32(300)
	bad.Listeners[0].DefaultCluster = "nope"
	for _, tt := range []struct {
		name  string
		req   *sluicev1.ApplyRequest
		paths []string
	}{
		{"snapshot faults", &sluicev1.ApplyRequest{Snapshot: bad}, []string{"clusters[0].endpoints[1].weight", "listeners[0].default_cluster"}},
		{"dry run faults", &sluicev1.ApplyRequest{Snapshot: bad, DryRun: true}, []string{"clusters[0].endpoints[1].weight", "listeners[0].default_cluster"}},
		{"no snapshot", &sluicev1.ApplyRequest{}, []string{"snapshot"}},
		{"comment too long", &sluicev1.ApplyRequest{Snapshot: web(t, 2), Comment: string(make([]byte, 2000))}, []string{"comment"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(ctx, tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Apply error = %v, want InvalidArgument", err)
			}
			faults, ok := snapshot.FromStatus(err)
			if !ok {
				t.Fatalf("no BadRequest detail in %v", err)
			}
			var paths []string
			for _, f := range faults {
				paths = append(paths, f.Path)
			}
			if !slices.Equal(paths, tt.paths) {
				t.Errorf("violation paths = %q, want %q", paths, tt.paths)
			}
		})
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
}

func TestGet(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	got, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatalf("Get on an empty store: %v", err)
	}
	if got.GetInfo().GetVersion() != 0 || got.GetSnapshot() == nil || len(got.GetSnapshot().GetClusters()) != 0 {
		t.Errorf("Get on an empty store = %v, want version 0 and an empty snapshot", got)
	}
	if _, err := s.Get(ctx, &sluicev1.GetRequest{Version: 7}); status.Code(err) != codes.NotFound {
		t.Errorf("Get(7) error = %v, want NotFound", err)
	}
	s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)})
	if got, _ := s.Get(ctx, &sluicev1.GetRequest{}); got.GetInfo().GetVersion() != 1 {
		t.Errorf("Get current = version %d, want 1", got.GetInfo().GetVersion())
	}
	h, _ := s.History(ctx, &sluicev1.HistoryRequest{})
	if h.GetCurrent() != 1 {
		t.Errorf("History.current = %d, want 1", h.GetCurrent())
	}
}

// Concurrent applies each record the diff from the version they replaced.
func TestConcurrentAppliesDiffAgainstTheirPredecessor(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, w+1)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	h, _ := s.History(ctx, &sluicev1.HistoryRequest{})
	for _, info := range h.GetVersions() {
		if info.GetVersion() == 1 {
			continue
		}
		prev, _ := s.Get(ctx, &sluicev1.GetRequest{Version: info.GetVersion() - 1})
		cur, _ := s.Get(ctx, &sluicev1.GetRequest{Version: info.GetVersion()})
		var want []string
		for _, c := range snapshot.Diff(prev.GetSnapshot(), cur.GetSnapshot()) {
			want = append(want, c.String())
		}
		if !slices.Equal(info.GetChanges(), want) {
			t.Errorf("version %d records changes %q, want %q", info.GetVersion(), info.GetChanges(), want)
		}
	}
}

func TestListConnsValidatesLimit(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	if _, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{Limit: 200000}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListConns(limit 200000) error = %v, want InvalidArgument", err)
	}
}
