package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/controlplane/configapi"
	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// TestGoneNodeHoldsNoConnections: a node that went away (crashed, say)
// keeps its last report in the fleet, but the requests in progress and
// the sockets it had then are no longer anyone's: the endpoint's and the
// fleet's node active and conns count the connected nodes only, as the
// charts do, and the gone node shows none. Its counters still count
// towards the totals: those requests happened.
func TestGoneNodeHoldsNoConnections(t *testing.T) {
	f := newFixture(t)
	f.fleet.Connect(&sluicev1.Node{Id: "n1"}, "peer", 1).Placed("default", "")
	gone := f.fleet.Connect(&sluicev1.Node{Id: "n2"}, "peer", 1)
	gone.Placed("default", "")
	f.views.Put("n1", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Active: 2, Conns: 3, Requests: 10}}})
	f.views.Put("n2", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Active: 40, Conns: 50, Requests: 5}}})
	gone.Disconnect()

	var cl clustersJSON
	f.do(t, httptest.NewRequest("GET", "/api/clusters", nil), &cl)
	a := cl.Clusters[0].Endpoints[0]
	if a.Name != "a" || a.Active != 2 || a.Conns != 3 {
		t.Errorf("web/a: active %d, conns %d; want 2 and 3, those of the connected n1 only", a.Active, a.Conns)
	}
	if a.Requests != 15 {
		t.Errorf("web/a: requests %d, want 15 (both nodes' counters)", a.Requests)
	}

	var fl fleetJSON
	f.do(t, httptest.NewRequest("GET", "/api/fleet", nil), &fl)
	for _, n := range fl.Nodes {
		want := map[string][2]int64{"n1": {2, 3}, "n2": {0, 0}}[n.ID]
		if n.Active != want[0] || n.Conns != want[1] {
			t.Errorf("fleet node %s (%s): active %d, conns %d; want %d and %d", n.ID, n.State, n.Active, n.Conns, want[0], want[1])
		}
	}
}

// onReplicas lists reg's nodes as replicas on one etcd do (fleetview):
// each on the replica on names.
type onReplicas struct {
	reg *fleet.Registry
	on  map[string]string
}

func (o onReplicas) Nodes() []*sluicev1.NodeStatus {
	ns := o.reg.Nodes()
	for _, n := range ns {
		n.Replica = o.on[n.GetId()]
	}
	return ns
}

// TestNodeOnAnotherReplica: with replicas on one etcd, a node reports to
// the replica its streams are on. The dashboard of another replica names
// that replica for the node, and counts nothing of what the node reported
// here before it moved, in the fleet or in the endpoints.
func TestNodeOnAnotherReplica(t *testing.T) {
	f := newFixture(t)
	f.fleet.Connect(&sluicev1.Node{Id: "here"}, "peer", 1).Placed("default", "")
	f.fleet.Connect(&sluicev1.Node{Id: "moved"}, "peer", 1).Placed("default", "")
	f.views.Put("here", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Active: 2, Conns: 3, Requests: 10}}})
	f.views.Put("moved", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Active: 40, Conns: 50, Requests: 5}}})
	config := configapi.New(f.store, onReplicas{f.fleet, map[string]string{"here": "a", "moved": "b"}}, f.ring, nil).
		WithFleet(f.views, nil).WithReplica("a")
	f.api = New(config, f.hist).Handler()

	var fl fleetJSON
	f.do(t, httptest.NewRequest("GET", "/api/fleet", nil), &fl)
	got := map[string]nodeJSON{}
	for _, n := range fl.Nodes {
		got[n.ID] = n
	}
	if n := got["here"]; n.Replica != "a" || n.StatsReplica != "" || n.Active != 2 || n.Conns != 3 {
		t.Errorf("here: replica %q, stats on %q, active %d, conns %d; want a, \"\", 2, 3", n.Replica, n.StatsReplica, n.Active, n.Conns)
	}
	if n := got["moved"]; n.Replica != "b" || n.StatsReplica != "b" || n.Active != 0 || n.Conns != 0 {
		t.Errorf("moved: replica %q, stats on %q, active %d, conns %d; want b, b, 0, 0", n.Replica, n.StatsReplica, n.Active, n.Conns)
	}

	var cl clustersJSON
	f.do(t, httptest.NewRequest("GET", "/api/clusters", nil), &cl)
	if a := cl.Clusters[0].Endpoints[0]; a.Name != "a" || a.Active != 2 || a.Requests != 10 || len(a.Nodes) != 1 {
		t.Errorf("web/a: active %d, requests %d, %d nodes; want here's 2 and 10 only", a.Active, a.Requests, len(a.Nodes))
	}

	// The recent connections name the replica that keeps moved's records,
	// unless the filter leaves moved out.
	for query, want := range map[string]string{"": `["b"]`, "?node=moved": `["b"]`, "?node=here": `[]`} {
		rec := httptest.NewRecorder()
		f.api.ServeHTTP(rec, httptest.NewRequest("GET", "/api/conns"+query, nil))
		var got struct {
			ReportedElsewhere json.RawMessage `json:"reported_elsewhere"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || string(got.ReportedElsewhere) != want {
			t.Errorf("/api/conns%s: reported_elsewhere %s (%v), want %s", query, got.ReportedElsewhere, err, want)
		}
	}
}

// unreadable lists this replica's nodes only: the others' could not be
// read from etcd.
type unreadable struct{ onReplicas }

func (u unreadable) FleetNodes() ([]*sluicev1.NodeStatus, error) {
	return u.Nodes(), errors.New("etcdserver: request timed out")
}

// TestFleetSaysWhenIncomplete: when the other replicas' nodes cannot be
// read, the fleet still lists this replica's, and says why it lacks the
// others', for the dashboard's banner.
func TestFleetSaysWhenIncomplete(t *testing.T) {
	f := newFixture(t)
	f.fleet.Connect(&sluicev1.Node{Id: "here"}, "peer", 1).Placed("default", "")
	for _, tc := range []struct {
		nodes configapi.NodeLister
		want  string
	}{
		{onReplicas{f.fleet, map[string]string{"here": "a"}}, ""},
		{unreadable{onReplicas{f.fleet, map[string]string{"here": "a"}}}, "the nodes of other control-plane replicas could not be read (etcdserver: request timed out); only those of a, the replica that answered, are listed"},
	} {
		config := configapi.New(f.store, tc.nodes, f.ring, nil).WithFleet(f.views, nil).WithReplica("a")
		f.api = New(config, f.hist).Handler()
		var fl fleetJSON
		f.do(t, httptest.NewRequest("GET", "/api/fleet", nil), &fl)
		if len(fl.Nodes) != 1 || fl.Incomplete != tc.want {
			t.Errorf("fleet: %d nodes, incomplete %q; want here, and %q", len(fl.Nodes), fl.Incomplete, tc.want)
		}
	}
}

// storeAway is a store etcd no longer answers for.
type storeAway struct{ store.Store }

func (storeAway) Current(context.Context) (*store.Version, error) { return nil, awayError{} }

type awayError struct{}

func (awayError) Error() string        { return "etcd (http://127.0.0.1:2379) did not answer within 5s" }
func (awayError) Is(target error) bool { return target == store.ErrUnavailable }

// TestStoreAwayShowsWhatNodesAreSent: while the configuration store
// cannot be reached, the fleet and clusters views show the version this
// control plane sends its nodes, and say why, where they used to fail
// and leave the dashboard blank. With nothing published, the store's
// error stands.
func TestStoreAwayShowsWhatNodesAreSent(t *testing.T) {
	f := newFixture(t)
	f.fleet.Connect(&sluicev1.Node{Id: "here"}, "peer", 1).Placed("default", "")
	config := configapi.New(storeAway{f.store}, f.fleet, f.ring, nil).WithFleet(f.views, nil).
		WithPublished(func() (uint64, *sluicev1.FleetConfig) { return 0, nil })
	f.api = New(config, f.hist).Handler()
	for _, path := range []string{"/api/fleet", "/api/clusters"} {
		var e struct {
			Error string `json:"error"`
		}
		if code := f.do(t, httptest.NewRequest("GET", path, nil), &e); code != 503 || !strings.Contains(e.Error, "did not answer within 5s") {
			t.Errorf("%s with nothing published: %d %q; want 503 and the store's error", path, code, e.Error)
		}
	}

	snap, err := snapshot.Parse([]byte("clusters:\n  - name: api\n    endpoints: [{ name: x, address: 127.0.0.1:9009 }]\n"), "sent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sent := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{{Name: "default", Version: 7, Snapshot: snap}}}
	config = configapi.New(storeAway{f.store}, f.fleet, f.ring, nil).WithFleet(f.views, nil).
		WithPublished(func() (uint64, *sluicev1.FleetConfig) { return 7, sent })
	f.api = New(config, f.hist).Handler()
	want := "the configuration store cannot be reached: etcd (http://127.0.0.1:2379) did not answer within 5s; shown is version 7, the one this control plane sends its nodes"
	var fl fleetJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/fleet", nil), &fl); code != 200 || fl.Version != 7 || fl.Stale != want || len(fl.Nodes) != 1 {
		t.Errorf("fleet: %d, version %d, %d nodes, stale %q; want 200, 7, here, and %q", code, fl.Version, len(fl.Nodes), fl.Stale, want)
	}
	var cl clustersJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/clusters", nil), &cl); code != 200 || cl.Version != 7 || cl.Stale != want ||
		len(cl.Clusters) != 1 || cl.Clusters[0].Name != "api" {
		t.Errorf("clusters: %d, version %d, %v, stale %q; want 200, 7, the sent cluster api, and %q", code, cl.Version, cl.Clusters, cl.Stale, want)
	}
}

// disagreeing lists replicas as a control plane on etcd whose replica b
// has another token key than a, which answers; it counts the asks.
type disagreeing struct{ asked *int }

func (d disagreeing) ListReplicas(context.Context) (*sluicev1.ListReplicasResponse, error) {
	*d.asked++
	return &sluicev1.ListReplicasResponse{AnsweredBy: "a", Replicated: true,
		Disagreements: []string{`replica b has token key "1f2e", replica a "off": a token made through one is refused by the other`}}, nil
}

// TestFleetSaysReplicasDisagree: the fleet carries, for the dashboard's
// banner, what other replicas have otherwise than the one asked, asked
// again at most every replicasRefresh (each ask reads etcd).
func TestFleetSaysReplicasDisagree(t *testing.T) {
	f := newFixture(t)
	asked := 0
	config := configapi.New(f.store, f.fleet, f.ring, nil).WithFleet(f.views, nil).WithReplica("a").WithReplicas(disagreeing{&asked})
	api := New(config, f.hist)
	now := time.Now()
	api.now = func() time.Time { return now }
	f.api = api.Handler()
	want := []string{`replica b has token key "1f2e", replica a "off": a token made through one is refused by the other`}
	for i, step := range []time.Duration{0, replicasRefresh - time.Second, 2 * time.Second} {
		now = now.Add(step)
		var fl fleetJSON
		f.do(t, httptest.NewRequest("GET", "/api/fleet", nil), &fl)
		if !slices.Equal(fl.Disagreements, want) {
			t.Errorf("fleet %d: disagreements %q, want %q", i, fl.Disagreements, want)
		}
	}
	if asked != 2 {
		t.Errorf("the replicas were asked %d times over %v, want 2: at the first fleet, and once %v had passed", asked, replicasRefresh+time.Second, replicasRefresh)
	}
}
