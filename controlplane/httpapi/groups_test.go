package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// TestClustersOfAGroup: /api/clusters shows one node group's clusters,
// default unless ?group= names another, with the reports of that group's
// nodes only: two groups may each have a cluster of one name. Its charts
// and its endpoint actions are the group's too.
func TestClustersOfAGroup(t *testing.T) {
	f := newFixture(t)
	edge, err := snapshot.Parse([]byte("clusters: [{name: web, endpoints: [{name: e1, address: 127.0.0.1:9101}]}]"), "edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.config.Apply(context.Background(), &sluicev1.ApplyRequest{Snapshot: edge, Group: "edge", Selector: proto.String("role=edge")}); err != nil {
		t.Fatal(err)
	}
	f.fleet.Connect(&sluicev1.Node{Id: "n1"}, "peer", 1).Placed("default", "")
	f.fleet.Connect(&sluicev1.Node{Id: "n2"}, "peer", 1).Placed("edge", "")
	f.views.Put("n1", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Requests: 10}}})
	f.views.Put("n2", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "e1", Requests: 7}, {Cluster: "web", Endpoint: "a", Requests: 99}}})
	now := time.Now()
	f.hist.Observe("n2", "edge", now.Add(-3*time.Second), []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "e1", Requests: 100}})
	f.hist.Observe("n2", "edge", now.Add(-2*time.Second), []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "e1", Requests: 140}})

	for _, tt := range []struct {
		query, group string
		endpoints    []string
		requests     uint64 // of the first endpoint
	}{
		{"", "default", []string{"a", "b"}, 10},
		{"?group=edge", "edge", []string{"e1"}, 7},
	} {
		var got clustersJSON
		if code := f.do(t, httptest.NewRequest("GET", "/api/clusters"+tt.query, nil), &got); code != http.StatusOK {
			t.Fatalf("%s: status %d", tt.query, code)
		}
		var names []string
		for _, ep := range got.Clusters[0].Endpoints {
			names = append(names, ep.Name)
		}
		first := got.Clusters[0].Endpoints[0]
		if got.Group != tt.group || !slices.Equal(got.Groups, []string{"default", "edge"}) || !slices.Equal(names, tt.endpoints) ||
			first.Requests != tt.requests || len(first.Nodes) != 1 {
			t.Errorf("/api/clusters%s: group %q of %q, endpoints %v, the first with %d requests from %d nodes; want %s, %v, %d from 1",
				tt.query, got.Group, got.Groups, names, first.Requests, len(first.Nodes), tt.group, tt.endpoints, tt.requests)
		}
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/clusters?group=egde", nil), nil); code != http.StatusNotFound {
		t.Errorf("?group=egde: status %d, want 404", code)
	}

	// The charts: edge's web is n2's, default's web has none of it.
	for _, tt := range []struct {
		query string
		want  float32
	}{{"cluster=web&group=edge", 40}, {"cluster=web&endpoint=e1&group=edge", 40}, {"cluster=web", 0}} {
		var s seriesJSON
		if code := f.do(t, httptest.NewRequest("GET", "/api/history?seconds=10&"+tt.query, nil), &s); code != http.StatusOK {
			t.Fatalf("history ?%s: status %d", tt.query, code)
		}
		var total float32
		for _, v := range s.Requests {
			total += v
		}
		if total != tt.want {
			t.Errorf("history ?%s: %v requests, want %v", tt.query, total, tt.want)
		}
	}

	// An action names its group.
	if code := f.do(t, post("/api/clusters/web/endpoints/e1/drain?group=edge", ""), nil); code != http.StatusOK {
		t.Fatalf("drain of edge's web/e1: status %d", code)
	}
	cur, err := f.store.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range cur.Config.GetGroups() {
		if g.GetName() == "edge" && g.GetSnapshot().GetClusters()[0].GetEndpoints()[0].GetState() != sluicev1.AdminState_ADMIN_STATE_DRAINING {
			t.Errorf("edge's web/e1 after its drain: %v", g.GetSnapshot().GetClusters()[0].GetEndpoints()[0])
		}
	}
}
