package httpapi

import (
	"net/http/httptest"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestGoneNodeHoldsNoConnections: a node that went away (crashed, say)
// keeps its last report in the fleet, but the requests in progress and
// the sockets it had then are no longer anyone's: the endpoint's and the
// fleet's node active and conns count the connected nodes only, as the
// charts do, and the gone node shows none. Its counters still count
// towards the totals: those requests happened.
func TestGoneNodeHoldsNoConnections(t *testing.T) {
	f := newFixture(t)
	f.fleet.Connect(&sluicev1.Node{Id: "n1"}, "peer", 1)
	gone := f.fleet.Connect(&sluicev1.Node{Id: "n2"}, "peer", 1)
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
