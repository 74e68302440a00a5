package configapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const defaultTestTimeout = 10 * time.Second

func newServer(t *testing.T) (*Server, store.Store) {
	t.Helper()
	st := openStore(t, store.BoltOptions{})
	return New(st, fleet.NewRegistry(), stats.NewRing(10), nil), st
}

// openStore opens a store in a new folder, closed when the test ends.
func openStore(t *testing.T, opts store.BoltOptions) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
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

// Writing out a default (weight 1, connect_timeout 5s), or leaving out
// one that was written, tells nodes nothing new: no version is stored, and
// the one stored keeps its text.
func TestApplyOfDefaultsWrittenOutIsUnchanged(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	bare := web(t, 1)
	bare.Clusters[0].Endpoints[1].Weight = nil
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: bare}); err != nil {
		t.Fatal(err)
	}
	spelled := web(t, 1)
	spelled.Clusters[0].ConnectTimeout = durationpb.New(5 * time.Second)
	spelled.Clusters[0].LbPolicy = sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN
	for _, dry := range []bool{true, false} {
		resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: spelled, DryRun: dry})
		if err != nil || resp.GetVersion() != 1 || resp.GetChanged() || len(resp.GetChanges()) != 0 {
			t.Errorf("Apply (dry run %v) of the defaults written out = %v, %v; want version 1, unchanged", dry, resp, err)
		}
	}
	got, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetSnapshot(), bare) {
		t.Errorf("Get = %v; want version 1 as it was applied", got.GetSnapshot())
	}
	// A default written out beside a change is stored as written, and
	// only the change is named.
	spelled.Clusters[0].Endpoints[0].Weight = proto.Uint32(4)
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: spelled})
	want := []string{"~ cluster web: endpoint web1 weight 2 -> 4"}
	if err != nil || resp.GetVersion() != 2 || !slices.Equal(resp.GetChanges(), want) {
		t.Errorf("Apply with a change = %v, %v; want version 2, changes %q", resp, err, want)
	}
	if got, err := s.Get(ctx, &sluicev1.GetRequest{}); err != nil || !proto.Equal(got.GetSnapshot(), spelled) {
		t.Errorf("Get = %v, %v; want version 2 as it was applied", got.GetSnapshot(), err)
	}
	// Leaving them out again is no change either.
	bare.Clusters[0].Endpoints[0].Weight = proto.Uint32(4)
	if resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: bare}); err != nil || resp.GetVersion() != 2 || resp.GetChanged() {
		t.Errorf("Apply of the defaults left out = %v, %v; want version 2, unchanged", resp, err)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{2, 1}) {
		t.Errorf("History = %v, want [2 1]", h)
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
	// The field by its name, as for every other request, not the Go
	// package that refused it.
	_, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{Limit: 200000})
	const want = "invalid request: limit: value must be less than or equal to 100000"
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Errorf("ListConns(limit 200000) error = %v, want InvalidArgument %q", err, want)
	}
	if faults, ok := snapshot.FromStatus(err); !ok || len(faults) != 1 || faults[0].Path != "limit" {
		t.Errorf("ListConns(limit 200000) faults %v; want one, of limit", faults)
	}
}

// TestConnsOfNamesThatAreNowhere: a filter of connection records that
// finds none and names a node, cluster, endpoint or listener that is
// nowhere is a typo, said so as for stats; records of a cluster since
// removed are still listed, and a known name with no records yet is no
// error.
func TestConnsOfNamesThatAreNowhere(t *testing.T) {
	ctx := testContext(t)
	ring := stats.NewRing(10)
	s := New(openStore(t, store.BoltOptions{}), fixedNodes{{Id: "here", Connected: true}}, ring, nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	ring.Add([]*sluicev1.ConnRecord{{NodeId: "here", Cluster: "old", Endpoint: "o1", Listener: "gone"}})
	for _, tt := range []struct {
		req  *sluicev1.ListConnsRequest
		want string
	}{
		{&sluicev1.ListConnsRequest{NodeId: "hre"}, `node "hre" is not in the fleet, did you mean "here"?`},
		{&sluicev1.ListConnsRequest{NodeId: "edge-7"}, `node "edge-7" is not in the fleet (its nodes are: here)`},
		{&sluicev1.ListConnsRequest{Cluster: "wbe"}, `cluster "wbe" is in no group's snapshot, did you mean "web"?`},
		{&sluicev1.ListConnsRequest{Cluster: "api"}, `cluster "api" is in no group's snapshot (the clusters are: web)`},
		{&sluicev1.ListConnsRequest{Cluster: "web", Endpoint: "web3"}, `cluster "web" has no endpoint "web3" (it has: web1, web2)`},
		{&sluicev1.ListConnsRequest{Endpoint: "web3"}, `no cluster of any group's snapshot has an endpoint "web3"`},
		{&sluicev1.ListConnsRequest{Endpoint: "wbe2"}, `no cluster of any group's snapshot has an endpoint "wbe2", did you mean "web2"?`},
		{&sluicev1.ListConnsRequest{Listener: "pubilc"}, `listener "pubilc" is in no group's snapshot, did you mean "public"?`},
		{&sluicev1.ListConnsRequest{Listener: "admin"}, `listener "admin" is in no group's snapshot (the listeners are: public)`},
	} {
		_, err := s.ListConns(ctx, tt.req)
		wantCode(t, fmt.Sprintf("ListConns(%v)", tt.req), err, codes.NotFound, tt.want)
	}
	resp, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: "here", Cluster: "web", Endpoint: "web2", Listener: "public"})
	if err != nil || len(resp.GetRecords()) != 0 {
		t.Errorf("ListConns of known names without records = %v, %v; want none, no error", resp, err)
	}
	resp, err = s.ListConns(ctx, &sluicev1.ListConnsRequest{Cluster: "old", Endpoint: "o1", Listener: "gone"})
	if err != nil || len(resp.GetRecords()) != 1 {
		t.Errorf("ListConns of a removed cluster's records = %v, %v; want its record", resp, err)
	}
}

// TestConnsOfAGroup: ListConns with a group lists the records of the
// nodes that group takes, and a group that does not exist is a typo.
func TestConnsOfAGroup(t *testing.T) {
	ctx := testContext(t)
	ring := stats.NewRing(10)
	s := New(openStore(t, store.BoltOptions{}), fixedNodes{
		{Id: "core-1", Connected: true, Group: "default"},
		{Id: "edge-1", Connected: true, Group: "edge"},
		{Id: "edge-2", Connected: false, Group: "edge"},
	}, ring, nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	sel := "role=edge"
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Group: "edge", Selector: &sel}); err != nil {
		t.Fatal(err)
	}
	ring.Add([]*sluicev1.ConnRecord{{NodeId: "core-1", Listener: "a"}, {NodeId: "edge-1", Listener: "b"}, {NodeId: "edge-2", Listener: "c"}, {NodeId: "core-1", Listener: "d"}})
	resp, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{Group: "edge"})
	var got []string
	for _, r := range resp.GetRecords() {
		got = append(got, r.GetNodeId()+"/"+r.GetListener())
	}
	if err != nil || !slices.Equal(got, []string{"edge-2/c", "edge-1/b"}) {
		t.Errorf("ListConns(group edge) = %v, %v; want edge-2's and edge-1's, newest first", got, err)
	}
	_, err = s.ListConns(ctx, &sluicev1.ListConnsRequest{Group: "egde"})
	wantCode(t, "ListConns(group egde)", err, codes.NotFound, `group "egde" does not exist, did you mean "edge"?`)
}

// updated applies web(t, 1) as version 1 and returns the server.
func updated(t *testing.T, ctx context.Context) *Server {
	t.Helper()
	s, _ := newServer(t)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Author: "ann"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUpdateEndpointStoresAVersion(t *testing.T) {
	ctx := testContext(t)
	s := updated(t, ctx)
	resp, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{
		Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(3), Author: "bob",
	})
	if err != nil {
		t.Fatalf("UpdateEndpoint: %v", err)
	}
	want := []string{"~ cluster web: endpoint web2 weight 1 -> 3"}
	if resp.GetVersion() != 2 || !resp.GetChanged() || !slices.Equal(resp.GetChanges(), want) {
		t.Errorf("UpdateEndpoint = %v, want version 2, changes %q", resp, want)
	}
	got, err := s.Get(ctx, &sluicev1.GetRequest{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	info := got.GetInfo()
	if info.GetAuthor() != "bob" || info.GetComment() != "set-weight web/web2 3" || !slices.Equal(info.GetChanges(), want) {
		t.Errorf("version 2 info = %v; want author bob, comment %q, changes %q", info, "set-weight web/web2 3", want)
	}
	// The stored snapshot is exactly what an Apply of the edited file stores.
	if !proto.Equal(got.GetSnapshot(), web(t, 3)) {
		t.Errorf("version 2 = %v, want web(3)", got.GetSnapshot())
	}

	// The same weight again changes nothing and stores nothing.
	resp, err = s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(3)})
	if err != nil || resp.GetVersion() != 2 || resp.GetChanged() || len(resp.GetChanges()) != 0 {
		t.Errorf("same weight again = %v, %v; want version 2, unchanged", resp, err)
	}
	// web1's weight is 2; a comment given is kept as given.
	resp, err = s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{
		Cluster: "web", Endpoint: "web1", State: sluicev1.AdminState_ADMIN_STATE_DRAINING, Comment: "kernel upgrade",
	})
	if err != nil || resp.GetVersion() != 3 {
		t.Fatalf("drain = %v, %v; want version 3", resp, err)
	}
	got, _ = s.Get(ctx, &sluicev1.GetRequest{})
	if c := got.GetInfo().GetComment(); c != "kernel upgrade" {
		t.Errorf("comment = %q, want the one given", c)
	}
	if st := got.GetSnapshot().GetClusters()[0].GetEndpoints()[0].GetState(); st != sluicev1.AdminState_ADMIN_STATE_DRAINING {
		t.Errorf("web1 state = %v, want DRAINING", st)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{3, 2, 1}) {
		t.Errorf("History = %v, want [3 2 1]", h)
	}
}

func TestUpdateEndpointDefaultComments(t *testing.T) {
	ctx := testContext(t)
	s := updated(t, ctx)
	for _, tt := range []struct {
		req  *sluicev1.UpdateEndpointRequest
		want string
	}{
		{&sluicev1.UpdateEndpointRequest{State: sluicev1.AdminState_ADMIN_STATE_DRAINING}, "drain web/web1"},
		{&sluicev1.UpdateEndpointRequest{State: sluicev1.AdminState_ADMIN_STATE_DISABLED}, "disable web/web1"},
		{&sluicev1.UpdateEndpointRequest{State: sluicev1.AdminState_ADMIN_STATE_ACTIVE}, "enable web/web1"},
		{&sluicev1.UpdateEndpointRequest{Weight: proto.Uint32(0), State: sluicev1.AdminState_ADMIN_STATE_DRAINING}, "set-weight web/web1 0; drain web/web1"},
	} {
		tt.req.Cluster, tt.req.Endpoint = "web", "web1"
		resp, err := s.UpdateEndpoint(ctx, tt.req)
		if err != nil || !resp.GetChanged() {
			t.Fatalf("UpdateEndpoint(%v) = %v, %v; want a new version", tt.req, resp, err)
		}
		got, _ := s.Get(ctx, &sluicev1.GetRequest{Version: resp.GetVersion()})
		if c := got.GetInfo().GetComment(); c != tt.want {
			t.Errorf("UpdateEndpoint(%v) comment = %q, want %q", tt.req, c, tt.want)
		}
	}
}

// Disable then enable stores two versions, and the second holds the
// snapshot the first replaced: ACTIVE goes back to the state left unset.
func TestUpdateEndpointEnableRestoresTheSnapshot(t *testing.T) {
	ctx := testContext(t)
	s := updated(t, ctx)
	for _, st := range []sluicev1.AdminState{sluicev1.AdminState_ADMIN_STATE_DISABLED, sluicev1.AdminState_ADMIN_STATE_ACTIVE} {
		resp, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: st})
		if err != nil || !resp.GetChanged() {
			t.Fatalf("UpdateEndpoint(%v) = %v, %v; want a new version", st, resp, err)
		}
	}
	got, err := s.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetInfo().GetVersion() != 3 || !proto.Equal(got.GetSnapshot(), web(t, 1)) {
		t.Errorf("after disable and enable: version %d, snapshot %v; want version 3 equal to version 1",
			got.GetInfo().GetVersion(), got.GetSnapshot())
	}
	// Enabling an endpoint that is active changes nothing.
	resp, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: sluicev1.AdminState_ADMIN_STATE_ACTIVE})
	if err != nil || resp.GetChanged() || resp.GetVersion() != 3 {
		t.Errorf("enable of an active endpoint = %v, %v; want version 3, unchanged", resp, err)
	}
}

// Weight unset means 1: setting 1 on such an endpoint is no change.
func TestUpdateEndpointWeightOneOnUnsetIsNoChange(t *testing.T) {
	ctx := testContext(t)
	s, _ := newServer(t)
	snap := web(t, 1)
	snap.Clusters[0].Endpoints[1].Weight = nil
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(1)})
	if err != nil || resp.GetChanged() || resp.GetVersion() != 1 {
		t.Errorf("set-weight 1 on an unset weight = %v, %v; want version 1, unchanged", resp, err)
	}
}

func TestUpdateEndpointDryRun(t *testing.T) {
	ctx := testContext(t)
	s := updated(t, ctx)
	resp, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{
		Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(7), DryRun: true,
	})
	want := []string{"~ cluster web: endpoint web2 weight 1 -> 7"}
	if err != nil || resp.GetVersion() != 2 || !resp.GetChanged() || !slices.Equal(resp.GetChanges(), want) {
		t.Errorf("dry run = %v, %v; want version 2, changes %q", resp, err, want)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
	got, _ := s.Get(ctx, &sluicev1.GetRequest{})
	if !proto.Equal(got.GetSnapshot(), web(t, 1)) {
		t.Errorf("dry run changed the current snapshot")
	}
}

func TestUpdateEndpointErrorsStoreNothing(t *testing.T) {
	ctx := testContext(t)
	weight := proto.Uint32(5)
	for _, tt := range []struct {
		name  string
		empty bool // no snapshot applied yet
		req   *sluicev1.UpdateEndpointRequest
		code  codes.Code
		msg   string
	}{
		{"no snapshot yet", true, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: weight},
			codes.FailedPrecondition, "no snapshot has been applied yet"},
		{"unknown cluster, near", false, &sluicev1.UpdateEndpointRequest{Cluster: "wbe", Endpoint: "web1", Weight: weight},
			codes.NotFound, `cluster "wbe" not found, did you mean "web"?`},
		{"unknown cluster, far", false, &sluicev1.UpdateEndpointRequest{Cluster: "database", Endpoint: "web1", Weight: weight},
			codes.NotFound, `cluster "database" not found (the snapshot has: web)`},
		{"unknown endpoint", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web3", Weight: weight},
			codes.NotFound, `cluster "web" has no endpoint "web3" (it has: web1, web2)`},
		{"unknown endpoint, near", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "wbe2", Weight: weight},
			codes.NotFound, `cluster "web" has no endpoint "wbe2", did you mean "web2"?`},
		{"unknown endpoint, dry run", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web3", Weight: weight, DryRun: true},
			codes.NotFound, `cluster "web" has no endpoint "web3"`},
		{"nothing to change", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1"},
			codes.InvalidArgument, "nothing to change"},
		{"weight too big", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(257)},
			codes.InvalidArgument, "weight: value must be less than or equal to 256"},
		{"undefined state", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", State: 9},
			codes.InvalidArgument, "state: value must be one of the defined enum values"},
		{"no endpoint named", false, &sluicev1.UpdateEndpointRequest{Cluster: "web", Weight: weight},
			codes.InvalidArgument, "endpoint: must not be empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newServer(t)
			var want []uint64
			if !tt.empty {
				if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
					t.Fatal(err)
				}
				want = []uint64{1}
			}
			resp, err := s.UpdateEndpoint(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("UpdateEndpoint = %v, %v; want %v containing %q", resp, err, tt.code, tt.msg)
			}
			if h := history(t, ctx, s); !slices.Equal(h, want) {
				t.Errorf("History = %v, want %v", h, want)
			}
		})
	}
}

// The edited snapshot is validated whole, like an Apply of it: a fault the
// current snapshot already had refuses the edit with INVALID_ARGUMENT and
// the fault's path.
func TestUpdateEndpointValidatesTheResult(t *testing.T) {
	ctx := testContext(t)
	s, st := newServer(t)
	bad := web(t, 1)
	bad.Listeners[0].DefaultCluster = "nope"
	// Written past the API, as an older control plane with laxer rules
	// might have.
	if _, _, err := st.Put(ctx, 0, store.Record{Config: inDefault(bad)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateEndpoint(ctx, &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web1", Weight: proto.Uint32(4)})
	faults, ok := snapshot.FromStatus(err)
	if !ok || len(faults) != 1 || faults[0].Path != "listeners[0].default_cluster" {
		t.Errorf("UpdateEndpoint error = %v; want the fault at listeners[0].default_cluster", err)
	}
	if h := history(t, ctx, s); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
}

// Concurrent edits of different endpoints all land: each retry starts from
// the version another writer stored.
func TestConcurrentUpdateEndpointsAllLand(t *testing.T) {
	ctx := testContext(t)
	s := updated(t, ctx)
	var wg sync.WaitGroup
	for _, name := range []string{"web1", "web2"} {
		for w := range 4 {
			wg.Go(func() {
				req := &sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: name, Weight: proto.Uint32(uint32(10 + w))}
				if name == "web1" {
					req.Weight = nil
					req.State = []sluicev1.AdminState{sluicev1.AdminState_ADMIN_STATE_DRAINING, sluicev1.AdminState_ADMIN_STATE_DISABLED}[w%2]
				}
				if _, err := s.UpdateEndpoint(ctx, req); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	got, _ := s.Get(ctx, &sluicev1.GetRequest{})
	eps := got.GetSnapshot().GetClusters()[0].GetEndpoints()
	if st := eps[0].GetState(); st != sluicev1.AdminState_ADMIN_STATE_DRAINING && st != sluicev1.AdminState_ADMIN_STATE_DISABLED {
		t.Errorf("web1 state = %v, want one of the states written", st)
	}
	if w := eps[1].GetWeight(); w < 10 || w > 13 {
		t.Errorf("web2 weight = %d, want one of the weights written", w)
	}
}

// inDefault makes snap the default group's snapshot of a configuration.
func inDefault(snap *sluicev1.Snapshot) *sluicev1.FleetConfig {
	cfg := store.Initial()
	cfg.Groups[0].Snapshot, cfg.Groups[0].Version = snap, 1
	return cfg
}

// fixedNodes is a NodeLister of given statuses (fleetview.View's merge of
// replicas, say).
type fixedNodes []*sluicev1.NodeStatus

func (f fixedNodes) Nodes() []*sluicev1.NodeStatus { return f }

// TestStatsOfNodesOnOtherReplicas: with replicas on one etcd, a node
// reports its stats to the replica its streams are on. Asked on another
// replica, GetStats names that replica instead of showing what the node
// reported here before it moved, and lists it even when it never
// reported here; a disconnected node keeps its last report, as on a lone
// control plane.
func TestStatsOfNodesOnOtherReplicas(t *testing.T) {
	ctx := testContext(t)
	views := stats.NewViews()
	nodes := fixedNodes{
		{Id: "here", Connected: true, Replica: "a"},
		{Id: "moved", Connected: true, Replica: "b"},
		{Id: "there", Connected: true, Replica: "b"},
		{Id: "gone", Connected: false, Replica: "b"},
	}
	s := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(views, nil).WithReplica("a")
	snap := web(t, 1)
	db := proto.Clone(snap.GetClusters()[0]).(*sluicev1.Cluster)
	db.Name = "db"
	snap.Clusters = append(snap.Clusters, db)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"here", "moved", "gone"} {
		views.Put(id, &sluicev1.EndpointReport{Version: "3", Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "web1", Requests: 7}}})
	}
	show := func(req *sluicev1.GetStatsRequest) []string {
		t.Helper()
		resp, err := s.GetStats(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range resp.GetNodes() {
			line := fmt.Sprintf("%s connected=%v replica=%q version=%q endpoints=%d reported=%v", n.GetNodeId(), n.GetConnected(),
				n.GetReplica(), n.GetVersion(), len(n.GetEndpoints()), n.GetReportedAt() != nil)
			out = append(out, line)
		}
		return out
	}
	all := []string{
		`gone connected=false replica="" version="3" endpoints=1 reported=true`,
		`here connected=true replica="" version="3" endpoints=1 reported=true`,
		`moved connected=true replica="b" version="" endpoints=0 reported=false`,
		`there connected=true replica="b" version="" endpoints=0 reported=false`,
	}
	for _, tt := range []struct {
		req  *sluicev1.GetStatsRequest
		want []string
	}{
		{&sluicev1.GetStatsRequest{}, all},
		{&sluicev1.GetStatsRequest{NodeId: "there"}, all[3:]},
		{&sluicev1.GetStatsRequest{NodeId: "moved"}, all[2:3]},
		// Whether a node elsewhere has the cluster, only its replica knows.
		{&sluicev1.GetStatsRequest{Cluster: "db"}, all[2:]},
		{&sluicev1.GetStatsRequest{Cluster: "web"}, all},
	} {
		if got := show(tt.req); !slices.Equal(got, tt.want) {
			t.Errorf("GetStats(%v):\n got %q\nwant %q", tt.req, got, tt.want)
		}
	}
	// Names that are nowhere are typos, said so rather than answered with
	// nothing.
	_, err := s.GetStats(ctx, &sluicev1.GetStatsRequest{Cluster: "wbe"})
	wantCode(t, "stats of a cluster that is nowhere", err, codes.NotFound, `cluster "wbe" is in no group's snapshot, did you mean "web"?`)
	_, err = s.GetStats(ctx, &sluicev1.GetStatsRequest{Cluster: "cache"})
	wantCode(t, "stats of a cluster that is nowhere", err, codes.NotFound, `cluster "cache" is in no group's snapshot (the clusters are: db, web)`)
	_, err = s.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "hre"})
	wantCode(t, "stats of a node the fleet does not know", err, codes.NotFound, `node "hre" is not in the fleet, did you mean "here"?`)
	_, err = s.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "edge-7"})
	wantCode(t, "stats of a node the fleet does not know", err, codes.NotFound, `node "edge-7" is not in the fleet (its nodes are: gone, here, moved, there)`)
	if resp, err := s.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "here", Cluster: "db"}); err != nil || len(resp.GetNodes()) != 0 {
		t.Errorf("stats of a known node and cluster that have none: %v, %v; want none, no error", resp, err)
	}

	// A lone control plane names no replica: nothing is elsewhere.
	lone := New(openStore(t, store.BoltOptions{}), fixedNodes{{Id: "here", Connected: true}}, stats.NewRing(10), nil).WithFleet(views, nil)
	resp, err := lone.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "here"})
	if err != nil || len(resp.GetNodes()) != 1 || resp.GetNodes()[0].GetReplica() != "" || len(resp.GetNodes()[0].GetEndpoints()) != 1 {
		t.Errorf("lone control plane: %v, %v; want here with its endpoint", resp, err)
	}
}

// localNodes answers a command for this replica's nodes.
type localNodes map[string]*sluicev1.CommandResult

func (l localNodes) Run(_ context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult {
	var out []*sluicev1.CommandResult
	for id, r := range l {
		var cmd sluicev1.Command
		action(&cmd)
		if len(cmd.GetNodes()) > 0 && !slices.Contains(cmd.GetNodes(), id) {
			continue // as command.Registry does
		}
		r = proto.Clone(r).(*sluicev1.CommandResult)
		r.NodeId = id
		out = append(out, r)
	}
	return out
}

// relay answers for the nodes of other replicas, or fails for a replica
// with no answers, and keeps what it was sent where.
type relay struct {
	answers map[string][]*sluicev1.CommandResult // by replica

	mu   sync.Mutex
	sent []string
}

func (r *relay) Send(_ context.Context, replica string, cmd *sluicev1.Command) ([]*sluicev1.CommandResult, error) {
	r.mu.Lock()
	sd := cmd.GetShutdownSessions()
	to := ""
	if len(cmd.GetNodes()) > 0 {
		to = " to " + strings.Join(cmd.GetNodes(), ",")
	}
	r.sent = append(r.sent, replica+":"+sd.GetCluster()+"/"+sd.GetEndpoint()+to)
	r.mu.Unlock()
	res, ok := r.answers[replica]
	if !ok {
		return nil, errors.New("no answer within 8s; the command was not run there")
	}
	return res, nil
}

// TestShutdownSessionsOnOtherReplicas: a command given to one replica
// reaches the nodes on the others through them; one result per node comes
// back, whichever replica answered for it.
func TestShutdownSessionsOnOtherReplicas(t *testing.T) {
	ctx := testContext(t)
	nodes := fixedNodes{
		{Id: "here", Connected: true, Replica: "a"},
		{Id: "moved", Connected: true, Replica: "b"}, // b's record, but it moved here
		{Id: "there", Connected: true, Replica: "b"},
		{Id: "far", Connected: true, Replica: "c"},
		{Id: "gone", Connected: false, Replica: "b"},
		{Id: "silent", Connected: true, Replica: "a"},
	}
	rl := &relay{answers: map[string][]*sluicev1.CommandResult{
		"b": {{NodeId: "there", Closed: 3}, {NodeId: "moved", Error: "the node's command stream ended before it answered"}},
	}}
	local := localNodes{"here": {Closed: 5}, "moved": {Closed: 1}}
	s := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(nil, local).WithReplica("a").WithRelay(rl)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	shutdownWeb1(t, ctx, s,
		`far 0 "on replica c: no answer within 8s; the command was not run there"`,
		`here 5 ""`,
		`moved 1 ""`,
		`silent 0 "connected, but not for commands"`,
		`there 3 ""`,
	)
	slices.Sort(rl.sent)
	if want := []string{"b:web/web1", "c:web/web1"}; !slices.Equal(rl.sent, want) {
		t.Errorf("relayed %q, want %q", rl.sent, want)
	}
}

// TestShutdownSessionsOfAGroup: with a group, the command goes to that
// group's connected nodes alone, here and through the replicas that have
// some, and the answer has theirs alone, though a replica older than
// Command.nodes runs it on all its nodes.
func TestShutdownSessionsOfAGroup(t *testing.T) {
	ctx := testContext(t)
	nodes := fixedNodes{
		{Id: "here", Connected: true, Replica: "a", Group: "edge"},
		{Id: "here-too", Connected: true, Replica: "a", Group: groups.Default},
		{Id: "there", Connected: true, Replica: "b", Group: "edge"},
		{Id: "there-too", Connected: true, Replica: "b", Group: groups.Default},
		{Id: "far", Connected: true, Replica: "c", Group: groups.Default},
		{Id: "gone", Replica: "c", Group: "edge"},
	}
	rl := &relay{answers: map[string][]*sluicev1.CommandResult{
		"b": {{NodeId: "there", Closed: 3}, {NodeId: "there-too", Closed: 9}}, // b ran it on all its nodes
	}}
	local := localNodes{"here": {Closed: 5}, "here-too": {Closed: 7}}
	s := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(nil, local).WithReplica("a").WithRelay(rl)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1), Group: "edge", Selector: proto.String("role=edge")}); err != nil {
		t.Fatal(err)
	}
	shutdownWeb1Of(t, ctx, s, "edge",
		`here 5 ""`,
		`there 3 ""`,
	)
	if want := []string{"b:web/web1 to there"}; !slices.Equal(rl.sent, want) {
		t.Errorf("relayed %q, want %q", rl.sent, want)
	}
}

// shutdownWeb1 shuts down the sessions of web/web1 through s, and checks
// its results, one "NODE CLOSED ERROR" line each, against want.
func shutdownWeb1(t *testing.T, ctx context.Context, s *Server, want ...string) {
	t.Helper()
	shutdownWeb1Of(t, ctx, s, "", want...)
}

// shutdownWeb1Of is shutdownWeb1 on the nodes of group only.
func shutdownWeb1Of(t *testing.T, ctx context.Context, s *Server, group string, want ...string) {
	t.Helper()
	resp, err := s.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "web1", Group: group})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range resp.GetResults() {
		got = append(got, fmt.Sprintf("%s %d %q", r.GetNodeId(), r.GetClosed(), r.GetError()))
	}
	if !slices.Equal(got, want) {
		t.Errorf("results:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// fleetDown lists this replica's nodes only: it could not read the others'.
type fleetDown struct{ fixedNodes }

func (f fleetDown) FleetNodes() ([]*sluicev1.NodeStatus, error) {
	return f.fixedNodes, errors.New("etcdserver: request timed out")
}

// countedNodes counts the commands it runs.
type countedNodes struct {
	localNodes
	runs atomic.Int32
}

func (c *countedNodes) Run(ctx context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult {
	c.runs.Add(1)
	return c.localNodes.Run(ctx, action)
}

// TestShutdownSessionsNeedsTheWholeFleet: when the other replicas' nodes
// cannot be listed, ShutdownSessions sends the command to no node, this
// replica's included, and says why: an answer listing this replica's nodes
// alone would read as the whole fleet.
func TestShutdownSessionsNeedsTheWholeFleet(t *testing.T) {
	ctx := testContext(t)
	nodes := fleetDown{fixedNodes{{Id: "here", Connected: true, Replica: "a"}}}
	rl := &relay{}
	local := &countedNodes{localNodes: localNodes{"here": {Closed: 5}}}
	s := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(nil, local).WithReplica("a").WithRelay(rl)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "web1"})
	want := "cannot learn which nodes the other replicas have (etcdserver: request timed out), so the command was sent to no node"
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != want {
		t.Fatalf("ShutdownSessions = %v, %v; want UNAVAILABLE %q", resp, err, want)
	}
	if len(status.Convert(err).Details()) == 0 {
		t.Error("UNAVAILABLE without a detail: sluicectl would take it for its own connection failing")
	}
	if n := local.runs.Load(); n != 0 || len(rl.sent) != 0 {
		t.Errorf("the command ran here %d times and was relayed %q; want neither", n, rl.sent)
	}

	// A lone control plane (no relay) has no other replicas to miss.
	lone := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(nil, local)
	if _, err := lone.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	if resp, err := lone.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "web1"}); err != nil || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetClosed() != 5 {
		t.Errorf("lone control plane: ShutdownSessions = %v, %v; want here closed 5", resp, err)
	}
}

// TestShutdownSessionsOnlyWhereTheGroupHasIt: with node groups, a node of
// a group whose snapshot lacks the endpoint cannot have it; its "no
// cluster" is no failure, and it is left out. A node of a group that has
// the endpoint, or of no group, still fails when it lacks it (it runs an
// older snapshot).
func TestShutdownSessionsOnlyWhereTheGroupHasIt(t *testing.T) {
	ctx := testContext(t)
	nodes := fixedNodes{
		{Id: "d1", Connected: true, Group: groups.Default},
		{Id: "d2", Connected: true, Group: groups.Default},
		{Id: "e1", Connected: true, Group: "edge"},
		{Id: "e2", Connected: true, Group: "edge"}, // no command stream
		{Id: "u1", Connected: true},                // in no group
	}
	lacks := &sluicev1.CommandResult{Error: `node: no cluster "web" in the running configuration (version 2)`}
	local := localNodes{"d1": {Closed: 2}, "d2": lacks, "e1": lacks, "u1": lacks}
	s := New(openStore(t, store.BoltOptions{}), nodes, stats.NewRing(10), nil).WithFleet(nil, local)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	other := parse(t, `
clusters: [{ name: static, endpoints: [{ name: s1, address: 127.0.0.1:9003 }] }]
listeners: [{ name: public, address: 127.0.0.1:8080, protocol: HTTP, default_cluster: static }]
`)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: other, Group: "edge", Selector: proto.String("zone=a")}); err != nil {
		t.Fatal(err)
	}
	shutdownWeb1(t, ctx, s,
		`d1 2 ""`,
		`d2 0 "node: no cluster \"web\" in the running configuration (version 2)"`,
		`u1 0 "node: no cluster \"web\" in the running configuration (version 2)"`,
	)
	// --group: the nodes of that group only, not those in no group.
	shutdownWeb1Of(t, ctx, s, groups.Default,
		`d1 2 ""`,
		`d2 0 "node: no cluster \"web\" in the running configuration (version 2)"`,
	)
	for group, want := range map[string]string{
		"edge": `group "edge": cluster "web" not found (the snapshot has: static)`,
		"edg":  `group "edg" does not exist`,
	} {
		_, err := s.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "web1", Group: group})
		if status.Code(err) != codes.NotFound || !strings.HasPrefix(status.Convert(err).Message(), want) {
			t.Errorf("group %s: %v\nwant NOT_FOUND %q", group, err, want)
		}
	}

	// An endpoint no group has is refused with every group's reason, not
	// only the default group's: the operator may have meant the other's.
	_, err := s.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "static", Endpoint: "cdn"})
	want := `no group's snapshot has endpoint "cdn" in cluster "static" (group "default": cluster "static" not found (the snapshot has: web); group "edge": cluster "static" has no endpoint "cdn" (it has: s1))`
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != want {
		t.Errorf("unknown endpoint: %v\nwant NOT_FOUND %q", err, want)
	}
}

// fleetUp lists every replica's nodes.
type fleetUp struct{ fixedNodes }

func (f fleetUp) FleetNodes() ([]*sluicev1.NodeStatus, error) { return f.fixedNodes, nil }

// TestReadsSayWhatTheyLack: with replicas on one etcd, conns names the
// replicas whose nodes report their connections there, and nodes, stats
// and conns say so when the other replicas' nodes could not be read,
// rather than answer this replica's part as if it were the fleet.
func TestReadsSayWhatTheyLack(t *testing.T) {
	ctx := testContext(t)
	fleet := fixedNodes{
		{Id: "here", Connected: true, Replica: "a"},
		{Id: "there", Connected: true, Replica: "b"},
		{Id: "gone", Replica: "d"}, // disconnected: reports nowhere
		{Id: "yonder", Connected: true, Replica: "c"},
	}
	s := New(openStore(t, store.BoltOptions{}), fleetUp{fleet}, stats.NewRing(10), nil).WithFleet(stats.NewViews(), nil).WithReplica("a")
	for _, tt := range []struct {
		node string
		want []string
	}{{"", []string{"b", "c"}}, {"there", []string{"b"}}, {"here", nil}, {"gone", nil}} {
		resp, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{NodeId: tt.node})
		if err != nil || !slices.Equal(resp.GetReportedElsewhere(), tt.want) || resp.GetIncomplete() != "" {
			t.Errorf("ListConns(node %q) = %v, %v; want reported elsewhere %q", tt.node, resp, err, tt.want)
		}
	}
	if resp, err := s.ListNodes(ctx, &sluicev1.ListNodesRequest{}); err != nil || len(resp.GetNodes()) != 4 || resp.GetIncomplete() != "" {
		t.Errorf("ListNodes = %v, %v; want the 4 nodes, complete", resp, err)
	}

	down := New(openStore(t, store.BoltOptions{}), fleetDown{fleet[:1]}, stats.NewRing(10), nil).WithFleet(stats.NewViews(), nil).WithReplica("a")
	const want = "the nodes of other control-plane replicas could not be read (etcdserver: request timed out); only those of a, the replica that answered, are listed"
	nodes, err := down.ListNodes(ctx, &sluicev1.ListNodesRequest{})
	if err != nil || len(nodes.GetNodes()) != 1 || nodes.GetIncomplete() != want {
		t.Errorf("ListNodes with etcd down = %v, %v; want here, incomplete %q", nodes, err, want)
	}
	st, err := down.GetStats(ctx, &sluicev1.GetStatsRequest{})
	if err != nil || st.GetIncomplete() != want {
		t.Errorf("GetStats with etcd down = %v, %v; want incomplete %q", st, err, want)
	}
	conns, err := down.ListConns(ctx, &sluicev1.ListConnsRequest{})
	if err != nil || conns.GetIncomplete() != want {
		t.Errorf("ListConns with etcd down = %v, %v; want incomplete %q", conns, err, want)
	}
}

// Before the first apply there is nothing to list beside a typo; the
// message says so in words, not with an empty list.
func TestUnknownNamesBeforeTheFirstApply(t *testing.T) {
	ctx := testContext(t)
	s := New(openStore(t, store.BoltOptions{}), fixedNodes{}, stats.NewRing(10), nil).WithFleet(stats.NewViews(), nil).WithReplica("a")
	_, err := s.GetStats(ctx, &sluicev1.GetStatsRequest{Cluster: "web"})
	wantCode(t, "stats of a cluster before the first apply", err, codes.NotFound,
		`cluster "web" is in no group's snapshot (no group's snapshot has a cluster yet)`)
	_, err = s.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "node-1"})
	wantCode(t, "stats of a node with no fleet", err, codes.NotFound, `node "node-1" is not in the fleet (no node is in it)`)
}

// storeAway is a store etcd no longer answers for: its reads fail.
type storeAway struct{ store.Store }

func (storeAway) Current(context.Context) (*store.Version, error)     { return nil, awayError{} }
func (storeAway) Get(context.Context, uint64) (*store.Version, error) { return nil, awayError{} }

type awayError struct{}

func (awayError) Error() string        { return "etcd (http://127.0.0.1:2379) did not answer within 5s" }
func (awayError) Is(target error) bool { return target == store.ErrUnavailable }

// TestStoreAwayAnswersWithWhatNodesAreSent: while the configuration store
// cannot be reached, get and groups answer with the version this control
// plane sends its nodes, and say so, where they used to fail and leave an
// operator blind during an etcd outage. Asked for a given version, or
// with nothing sent yet, the store's error stands.
func TestStoreAwayAnswersWithWhatNodesAreSent(t *testing.T) {
	ctx := testContext(t)
	_, st := newServer(t)
	nodes := fixedNodes{{Id: "n1", Group: "edge", Connected: true, AckedVersion: 3}}
	away := "the configuration store cannot be reached: etcd (http://127.0.0.1:2379) did not answer within 5s"

	s := New(storeAway{st}, nodes, stats.NewRing(10), nil).
		WithPublished(func() (uint64, *sluicev1.FleetConfig) { return 0, nil })
	if _, err := s.Get(ctx, &sluicev1.GetRequest{}); status.Code(err) != codes.Unavailable || status.Convert(err).Message() != away {
		t.Errorf("Get with nothing sent: %v, want UNAVAILABLE %q", err, away)
	}
	if _, err := s.ListGroups(ctx, &sluicev1.ListGroupsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ListGroups with nothing sent: %v, want UNAVAILABLE", err)
	}

	sent := inDefault(web(t, 1))
	sent.Groups = append(sent.Groups, &sluicev1.Group{Name: "edge", Selector: "tier=edge", Version: 3, Snapshot: web(t, 5)})
	s = New(storeAway{st}, nodes, stats.NewRing(10), nil).
		WithPublished(func() (uint64, *sluicev1.FleetConfig) { return 4, sent })
	stale := away + "; shown is version 4, the one this control plane sends its nodes"
	for _, tt := range []struct {
		group   string
		version uint64
		weight  uint32
	}{{"", 1, 1}, {"edge", 3, 5}} {
		got, err := s.Get(ctx, &sluicev1.GetRequest{Group: tt.group})
		if err != nil {
			t.Fatalf("Get %q with the store away: %v", tt.group, err)
		}
		if v, w := got.GetInfo().GetVersion(), got.GetSnapshot().GetClusters()[0].GetEndpoints()[1].GetWeight(); v != tt.version || w != tt.weight || got.GetStoreUnreachable() != stale {
			t.Errorf("Get %q with the store away: version %d, web2 weight %d, store_unreachable %q; want %d, %d, %q", tt.group, v, w, got.GetStoreUnreachable(), tt.version, tt.weight, stale)
		}
	}
	if _, err := s.Get(ctx, &sluicev1.GetRequest{Version: 4}); status.Code(err) != codes.Unavailable {
		t.Errorf("Get of version 4 with the store away: %v, want UNAVAILABLE: only the current version is sent", err)
	}
	gs, err := s.ListGroups(ctx, &sluicev1.ListGroupsRequest{})
	if err != nil {
		t.Fatalf("ListGroups with the store away: %v", err)
	}
	if len(gs.GetGroups()) != 2 || gs.GetVersion() != 4 || gs.GetStoreUnreachable() != stale {
		t.Fatalf("ListGroups with the store away: %v; want version 4, groups default and edge, and store_unreachable %q", gs, stale)
	}
	if edge := gs.GetGroups()[1]; edge.GetName() != "edge" || edge.GetSelector() != "tier=edge" || edge.GetVersion() != 3 || edge.GetNodes() != 1 || edge.GetApplied() != 1 {
		t.Errorf("group edge with the store away: %v, want selector tier=edge, version 3, 1 node that runs it", edge)
	}

	// A filter's typo is still told apart from "no traffic yet".
	_, err = s.ListConns(ctx, &sluicev1.ListConnsRequest{Cluster: "wbe"})
	wantCode(t, "records of a cluster that is nowhere, with the store away", err, codes.NotFound, `cluster "wbe" is in no group's snapshot, did you mean "web"?`)
	if got, err := s.ListConns(ctx, &sluicev1.ListConnsRequest{Cluster: "web", Endpoint: "web2"}); err != nil || len(got.GetRecords()) != 0 {
		t.Errorf("records of web/web2 with the store away: %v, %v; want none and no error", got, err)
	}
}

// TestHistoryListsRefusals: History gives each version the nodes that
// refused it, the earliest ten when more did, and how many did.
func TestHistoryListsRefusals(t *testing.T) {
	ctx := testContext(t)
	s, st := newServer(t)
	s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)})
	s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 2)})
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range 12 {
		r := &sluicev1.Refusal{Node: fmt.Sprintf("edge-%02d", 12-i), Error: "bind: address already in use", At: timestamppb.New(t0.Add(time.Duration(i) * time.Second))}
		if err := st.Refused(ctx, 2, r); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v2, v1 := h.GetVersions()[0], h.GetVersions()[1]
	var nodes []string
	for _, r := range v2.GetRefusals() {
		nodes = append(nodes, r.GetNode())
	}
	want := []string{"edge-12", "edge-11", "edge-10", "edge-09", "edge-08", "edge-07", "edge-06", "edge-05", "edge-04", "edge-03"}
	if v2.GetRefusedBy() != 12 || !slices.Equal(nodes, want) {
		t.Errorf("version 2 refused by %d: %v; want 12, listing %v", v2.GetRefusedBy(), nodes, want)
	}
	if v1.GetRefusedBy() != 0 || len(v1.GetRefusals()) != 0 {
		t.Errorf("version 1 refused by %d: %v; want none", v1.GetRefusedBy(), v1.GetRefusals())
	}
	// Get heads the snapshot with the same info, asked by number or as
	// the current one.
	for _, req := range []*sluicev1.GetRequest{{Version: 2}, {}} {
		g, err := s.Get(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if info := g.GetInfo(); info.GetRefusedBy() != 12 || len(info.GetRefusals()) != maxRefusalsListed || info.GetRefusals()[0].GetNode() != "edge-12" {
			t.Errorf("Get(%v): version %d refused by %d, listing %d from %s; want 12, listing the earliest 10",
				req, info.GetVersion(), info.GetRefusedBy(), len(info.GetRefusals()), info.GetRefusals()[0].GetNode())
		}
	}
}

// applyWebAndEdge stores versions 1 to 3 of group default (web with
// weights 1, 2 and 3, web(t, w)), and version 4, which creates group edge
// with web(t, 7).
func applyWebAndEdge(t *testing.T, ctx context.Context, s *Server) {
	t.Helper()
	for w := range 3 {
		if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, w+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 7), Group: "edge", Selector: proto.String("role=edge")}); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackWarnsOfRefusals: a rollback to a version nodes refused
// warns, naming them and the latest reason, and still happens; one to a
// version nobody refused, or to another group's snapshot as of a refused
// version (that group's nodes were never sent it), does not warn.
func TestRollbackWarnsOfRefusals(t *testing.T) {
	ctx := testContext(t)
	s, st := newServer(t)
	applyWebAndEdge(t, ctx, s)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	refuse := func(v uint64, node, why string, after time.Duration) {
		t.Helper()
		if err := st.Refused(ctx, v, &sluicev1.Refusal{Node: node, Error: why, At: timestamppb.New(t0.Add(after))}); err != nil {
			t.Fatal(err)
		}
	}
	refuse(2, "edge-b", "listener public: listen tcp 10.0.0.5:443: bind: address already in use", time.Second)
	refuse(2, "edge-a", "listener public: open /etc/tls/web.pem: no such file or directory", 2*time.Second)
	refuse(4, "edge-c", "bind: address already in use", 0)
	const warn2 = "version 2 was refused by 2 nodes, edge-b and edge-a (the latest, edge-a: listener public: open /etc/tls/web.pem: no such file or directory); they may refuse this rollback too"
	for _, tc := range []struct {
		req  *sluicev1.RollbackRequest
		want []string
	}{
		{&sluicev1.RollbackRequest{Version: 2, DryRun: true}, []string{warn2}},
		{&sluicev1.RollbackRequest{Version: 2}, []string{warn2}},
		{&sluicev1.RollbackRequest{Version: 1}, nil},
		{&sluicev1.RollbackRequest{Version: 4, Group: "default"}, nil},
		{&sluicev1.RollbackRequest{Version: 4, DryRun: true}, []string{"version 4 was refused by edge-c: bind: address already in use; it may refuse this rollback too"}},
	} {
		resp, err := s.Rollback(ctx, tc.req)
		if err != nil {
			t.Fatalf("Rollback(%v): %v", tc.req, err)
		}
		if !slices.Equal(resp.GetWarnings(), tc.want) {
			t.Errorf("Rollback(%v) warnings:\n%q\nwant\n%q", tc.req, resp.GetWarnings(), tc.want)
		}
		if !tc.req.GetDryRun() && !resp.GetChanged() {
			t.Errorf("Rollback(%v) changed nothing; a warning must not stop it", tc.req)
		}
	}

	// A rollback to a version nobody refused warns when a recent version
	// with the same snapshot was refused: here the rollback to refused
	// version 8 stores version 10, which is then rolled back to.
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 5)})
	if err != nil {
		t.Fatal(err)
	}
	refusedV := resp.GetVersion()
	refuse(refusedV, "edge-d", "bind: address already in use", 3*time.Second)
	if _, err := s.Rollback(ctx, &sluicev1.RollbackRequest{Version: refusedV - 1}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Rollback(ctx, &sluicev1.RollbackRequest{Version: refusedV})
	if err != nil {
		t.Fatal(err)
	}
	again := resp.GetVersion()
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 6)}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Rollback(ctx, &sluicev1.RollbackRequest{Version: again, DryRun: true})
	want := []string{fmt.Sprintf("version %d, with this same snapshot, was refused by edge-d: bind: address already in use; it may refuse this rollback too", refusedV)}
	if err != nil || !slices.Equal(resp.GetWarnings(), want) {
		t.Errorf("Rollback to version %d, unrefused, with refused version %d's snapshot: %v, warnings\n%q\nwant\n%q", again, refusedV, err, resp.GetWarnings(), want)
	}
}

// TestRollbackWarnsOfWhatItRestores: the canaries' refusal of the version
// that started a rollout is of the rollout's snapshot; a rollback to that
// version restores the group's, and does not warn of it.
func TestRollbackWarnsOfWhatItRestores(t *testing.T) {
	ctx := testContext(t)
	st := openStore(t, store.BoltOptions{})
	reg := fleet.NewRegistry()
	placedNodes(reg, "n1", "n2")
	s := New(st, reg, stats.NewRing(10), nil)
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), Canary: &sluicev1.Canary{Nodes: 1}})
	if err != nil {
		t.Fatal(err)
	}
	started := resp.GetVersion()
	at := timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	if err := st.Refused(ctx, started, &sluicev1.Refusal{Node: "n1", Error: "bind: address already in use", At: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AbortRollout(ctx, &sluicev1.RolloutRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 2)}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Rollback(ctx, &sluicev1.RollbackRequest{Version: started, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetWarnings()) != 0 || !slices.Equal(resp.GetChanges(), []string{"~ cluster web: endpoint web2 weight 2 -> 1"}) {
		t.Errorf("Rollback to version %d, whose canary refused the rollout: warnings %q, changes %q; want none, and the group's weight 1 back",
			started, resp.GetWarnings(), resp.GetChanges())
	}
	// Applied again, the rollout's snapshot is the one n1 refused.
	resp, err = s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 4), DryRun: true})
	want := []string{fmt.Sprintf("version %d, with this same snapshot, was refused by n1: bind: address already in use; it may refuse this apply too", started)}
	if err != nil || !slices.Equal(resp.GetWarnings(), want) {
		t.Errorf("Apply of the rollout's snapshot: %v, warnings %q; want %q", err, resp.GetWarnings(), want)
	}
}

// TestApplyWarnsOfRefusedSnapshot: an apply of the snapshot that nodes
// refused as an earlier version of the same group warns, naming the newest
// such version, also when the file writes out defaults the refused one
// left out; it still stores the version. The same snapshot refused in
// another group, or an unrefused one, gets no warning.
func TestApplyWarnsOfRefusedSnapshot(t *testing.T) {
	ctx := testContext(t)
	s, st := newServer(t)
	applyWebAndEdge(t, ctx, s)
	at := timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	for v, node := range map[uint64]string{2: "edge-b", 4: "edge-c"} {
		if err := st.Refused(ctx, v, &sluicev1.Refusal{Node: node, Error: "listener public: bind: address already in use", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	const warn2 = "version 2, with this same snapshot, was refused by edge-b: listener public: bind: address already in use; it may refuse this apply too"
	// Version 2's snapshot with its defaults written out: nodes would run
	// the same.
	spelled := web(t, 2)
	spelled.GetClusters()[0].ConnectTimeout = durationpb.New(5 * time.Second)
	for _, tc := range []struct {
		name string
		req  *sluicev1.ApplyRequest
		want []string
	}{
		{"dry run of version 2's", &sluicev1.ApplyRequest{Snapshot: web(t, 2), DryRun: true}, []string{warn2}},
		{"version 2's", &sluicev1.ApplyRequest{Snapshot: web(t, 2)}, []string{warn2}},
		{"version 2's with defaults, unchanged", &sluicev1.ApplyRequest{Snapshot: spelled}, []string{warn2}},
		{"version 1's", &sluicev1.ApplyRequest{Snapshot: web(t, 1)}, nil},
		{"edge's refused to default", &sluicev1.ApplyRequest{Snapshot: web(t, 7)}, nil},
		{"default's refused to edge", &sluicev1.ApplyRequest{Snapshot: web(t, 2), Group: "edge", DryRun: true}, nil},
		{"edge's refused to edge, unchanged", &sluicev1.ApplyRequest{Snapshot: web(t, 7), Group: "edge"},
			[]string{"version 4, with this same snapshot, was refused by edge-c: listener public: bind: address already in use; it may refuse this apply too"}},
	} {
		before := history(t, ctx, s)[0]
		resp, err := s.Apply(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(resp.GetWarnings(), tc.want) {
			t.Errorf("%s: warnings\n%q\nwant\n%q", tc.name, resp.GetWarnings(), tc.want)
		}
		if tc.name == "version 2's" && (!resp.GetChanged() || resp.GetVersion() != before+1) {
			t.Errorf("%s: version %d, changed %v; a warning must not stop it", tc.name, resp.GetVersion(), resp.GetChanged())
		}
	}
	// A version of default that nodes refused keeps edge's snapshot as it
	// was, but edge's nodes were not sent that version: edge's snapshot
	// applied again warns of nothing.
	if _, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 8), Group: "edge"}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 9)})
	if err != nil {
		t.Fatal(err)
	}
	refused := resp.GetVersion()
	if err := st.Refused(ctx, refused, &sluicev1.Refusal{Node: "edge-e", Error: "bind: address already in use", At: at}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, 8), Group: "edge"}); err != nil || len(resp.GetWarnings()) != 0 {
		t.Errorf("edge's snapshot to edge after default's version %d was refused: %v, warnings %q; want none", refused, err, resp.GetWarnings())
	}
}

// readCounter is a store that counts the versions read whole.
type readCounter struct {
	store.Store
	gets atomic.Int32
}

func (c *readCounter) Get(ctx context.Context, v uint64) (*store.Version, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, v)
}

// TestRefusedBeforeReadsOnlyMatches: each version keeps the fingerprint of
// the snapshot it sent, and an apply reads no refused version whose
// fingerprint differs: a fleet where one node refuses every version does
// not make each apply read them all. A version stored without one (before
// fingerprints were kept) is read and still warns of.
func TestRefusedBeforeReadsOnlyMatches(t *testing.T) {
	ctx := testContext(t)
	st := &readCounter{Store: openStore(t, store.BoltOptions{})}
	// Version 1, stored as by an older control plane, then 2 to 6.
	if _, _, err := st.Put(ctx, 0, store.Record{Config: inDefault(web(t, 1)), Group: "default"}); err != nil {
		t.Fatal(err)
	}
	s := New(st, fleet.NewRegistry(), stats.NewRing(10), nil)
	at := timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	for w := 2; w <= 6; w++ {
		resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, w)})
		if err != nil {
			t.Fatal(err)
		}
		g, err := st.Get(ctx, resp.GetVersion())
		if err != nil {
			t.Fatal(err)
		}
		if want := snapshot.Fingerprint(web(t, w)); !bytes.Equal(g.Info.GetFingerprint(), want[:]) {
			t.Errorf("version %d keeps the fingerprint %x, want %x, its snapshot's", resp.GetVersion(), g.Info.GetFingerprint(), want)
		}
	}
	for v := uint64(1); v <= 6; v++ {
		if err := st.Refused(ctx, v, &sluicev1.Refusal{Node: "edge-9", Error: "bind: address already in use", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		weight int
		reads  int32 // the versions read whole
		want   string
	}{
		{7, 1, ""}, // version 1, which has no fingerprint
		{1, 1, "version 1, with this same snapshot, was refused by edge-9: bind: address already in use; it may refuse this apply too"},
		{4, 1, "version 4, with this same snapshot, was refused by edge-9: bind: address already in use; it may refuse this apply too"},
	} {
		st.gets.Store(0)
		resp, err := s.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: web(t, tc.weight), DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(resp.GetWarnings(), "\n"); got != tc.want {
			t.Errorf("weight %d: warnings %q, want %q", tc.weight, got, tc.want)
		}
		if n := st.gets.Load(); n != tc.reads {
			t.Errorf("weight %d: the apply read %d versions whole, want %d", tc.weight, n, tc.reads)
		}
	}
}

// TestSentSnapshot: a version that started or edited a rollout sent the
// rollout's snapshot; any other, the group's.
func TestSentSnapshot(t *testing.T) {
	group, rollout := web(t, 1), web(t, 2)
	cfg := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{{
		Name: "default", Snapshot: group, Version: 3,
		Rollout: &sluicev1.Rollout{Version: 5, Snapshot: rollout},
	}}}
	for v, want := range map[uint64]*sluicev1.Snapshot{3: group, 4: group, 5: rollout} {
		if got := sentSnapshot(cfg, "default", v); got != want {
			t.Errorf("version %d sent %v, want %v", v, got, want)
		}
	}
	if got := sentSnapshot(cfg, "edge", 5); got != nil {
		t.Errorf("group edge, not in the configuration: %v, want nil", got)
	}
}

// TestRefusedWarningNamesThree: the warning names up to three nodes and
// counts the rest.
func TestRefusedWarningNamesThree(t *testing.T) {
	info := &sluicev1.VersionInfo{Version: 9}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		info.Refusals = append(info.Refusals, &sluicev1.Refusal{Node: n, Error: "why " + n})
	}
	for n, want := range map[int]string{
		0: "",
		3: "version 9 was refused by 3 nodes, a, b and c (the latest, c: why c); they may refuse this rollback too",
		5: "version 9 was refused by 5 nodes, a, b, c and 2 more (the latest, e: why e); they may refuse this rollback too",
	} {
		in := &sluicev1.VersionInfo{Version: 9, Refusals: info.Refusals[:n]}
		if got := refusedWarning(in, "version 9", "this rollback"); got != want {
			t.Errorf("%d refusals: %q\nwant %q", n, got, want)
		}
	}
}

// TestEndpointEditWarnsWhenBuiltOnRefused: an endpoint edit builds on its
// group's current version; when nodes refused that version, the edit
// carries what they refused, and says so. An edit on a version nobody
// refused, or on another group's, does not warn.
func TestEndpointEditWarnsWhenBuiltOnRefused(t *testing.T) {
	ctx := testContext(t)
	s, st := newServer(t)
	applyWebAndEdge(t, ctx, s) // default: versions 1 to 3; edge: 4
	if err := st.Refused(ctx, 3, &sluicev1.Refusal{Node: "n1", Error: "listener alt: bind: address already in use", At: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	const warn = "version 3, which this edit builds on, was refused by n1: listener alt: bind: address already in use; it may refuse this edit too"
	for _, tc := range []struct {
		req  *sluicev1.UpdateEndpointRequest
		want []string
	}{
		{&sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9), DryRun: true}, []string{warn}},
		{&sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(9), Group: "edge"}, nil},
		{&sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", State: sluicev1.AdminState_ADMIN_STATE_DRAINING}, []string{warn}},
		// Built on the edit just stored, which nobody refused.
		{&sluicev1.UpdateEndpointRequest{Cluster: "web", Endpoint: "web2", Weight: proto.Uint32(4)}, nil},
	} {
		resp, err := s.UpdateEndpoint(ctx, tc.req)
		if err != nil {
			t.Fatalf("UpdateEndpoint(%v): %v", tc.req, err)
		}
		if !slices.Equal(resp.GetWarnings(), tc.want) {
			t.Errorf("UpdateEndpoint(%v) warnings %q, want %q", tc.req, resp.GetWarnings(), tc.want)
		}
	}
}
