package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/configapi"
	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/history"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// fixture is a real config API over a real store, fleet, stats and
// history, with web/a and web/b applied as version 1.
type fixture struct {
	config *configapi.Server
	store  store.Store
	fleet  *fleet.Registry
	ring   *stats.Ring
	views  *stats.Views
	hist   *history.Recorder
	api    http.Handler
}

func newFixture(t *testing.T, interceptors ...grpc.UnaryServerInterceptor) *fixture {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, fleet: fleet.NewRegistry(), ring: stats.NewRing(100), views: stats.NewViews(), hist: history.New(0)}
	f.config = configapi.New(st, f.fleet, f.ring, nil).WithFleet(f.views, nil)
	f.api = New(f.config, f.hist, interceptors...).Handler()
	snap, err := snapshot.Parse([]byte(`
clusters:
  - name: web
    endpoints:
      - { name: a, address: 127.0.0.1:9001, weight: 2 }
      - { name: b, address: 127.0.0.1:9002 }
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.config.Apply(context.Background(), &sluicev1.ApplyRequest{Snapshot: snap, Author: "test"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// do serves one request and decodes the JSON answer into out (nil: not
// decoded); it returns the status.
func (f *fixture) do(t *testing.T, req *http.Request, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", req.Method, req.URL, ct)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v: %s", req.Method, req.URL, err, rec.Body)
		}
	}
	return rec.Code
}

func post(path, body string) *http.Request {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// current returns the current version's info and web/a.
func (f *fixture) current(t *testing.T) (*sluicev1.VersionInfo, *sluicev1.Endpoint) {
	t.Helper()
	v, err := f.store.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v.Info, v.Config.GetGroups()[0].GetSnapshot().GetClusters()[0].GetEndpoints()[0]
}

// TestEndpointActions: each action stores what sluicectl's command would,
// with its comment, and says so as sluicectl does.
func TestEndpointActions(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		path, body, comment string
		state               sluicev1.AdminState
		weight              uint32
		change              string
	}{
		{"drain", ``, "drain web/a", sluicev1.AdminState_ADMIN_STATE_DRAINING, 2, "state ACTIVE -> DRAINING"},
		{"disable", `{}`, "disable web/a", sluicev1.AdminState_ADMIN_STATE_DISABLED, 2, "state DRAINING -> DISABLED"},
		{"enable", ``, "enable web/a", sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED, 2, "state DISABLED -> ACTIVE"},
		{"weight", `{"weight": 5, "comment": "more for a"}`, "more for a", sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED, 5, "weight 2 -> 5"},
	} {
		var got actionJSON
		req := post("/api/clusters/web/endpoints/a/"+tt.path, tt.body)
		if code := f.do(t, req, &got); code != http.StatusOK {
			t.Fatalf("%s: status %d", tt.path, code)
		}
		info, ep := f.current(t)
		if !got.Changed || got.Version != info.GetVersion() || len(got.Changes) != 1 || !strings.Contains(got.Changes[0], tt.change) {
			t.Errorf("%s: answered %+v; want version %d changed with %q", tt.path, got, info.GetVersion(), tt.change)
		}
		if info.GetComment() != tt.comment || info.GetAuthor() != "dashboard@192.0.2.1" {
			t.Errorf("%s: history says %q by %q, want %q by dashboard@192.0.2.1", tt.path, info.GetComment(), info.GetAuthor(), tt.comment)
		}
		if ep.GetState() != tt.state || ep.GetWeight() != tt.weight {
			t.Errorf("%s: web/a is %v weight %d, want %v weight %d", tt.path, ep.GetState(), ep.GetWeight(), tt.state, tt.weight)
		}
	}
	var again actionJSON
	if code := f.do(t, post("/api/clusters/web/endpoints/a/enable", ""), &again); code != http.StatusOK || again.Changed {
		t.Errorf("enable of an active endpoint: status %d, %+v; want 200, unchanged", code, again)
	}
	// A dry run says what it would store, and that it stored nothing.
	before, _ := f.current(t)
	var dry map[string]any
	code := f.do(t, post("/api/clusters/web/endpoints/a/drain", `{"dry_run": true}`), &dry)
	want := map[string]any{"version": float64(before.GetVersion() + 1), "changed": true, "dry_run": true,
		"changes": []any{"~ cluster web: endpoint a state ACTIVE -> DRAINING"}}
	if code != http.StatusOK || !reflect.DeepEqual(dry, want) {
		t.Errorf("dry run: status %d, %v; want 200, %v", code, dry, want)
	}
	if after, _ := f.current(t); after.GetVersion() != before.GetVersion() {
		t.Errorf("dry run stored version %d", after.GetVersion())
	}
}

// TestEndpointActionErrors: the API refuses what the config API refuses,
// with its words, and an HTTP status that means the same.
func TestEndpointActionErrors(t *testing.T) {
	f := newFixture(t)
	_, grpcErr := f.config.UpdateEndpoint(context.Background(), &sluicev1.UpdateEndpointRequest{
		Cluster: "web", Endpoint: "zz", State: sluicev1.AdminState_ADMIN_STATE_DRAINING})
	for _, tt := range []struct {
		name, path, body string
		code             int
		msg, field       string
	}{
		{"unknown endpoint", "/api/clusters/web/endpoints/zz/drain", ``, 404, status.Convert(grpcErr).Message(), ""},
		{"unknown cluster", "/api/clusters/wbe/endpoints/a/drain", ``, 404, `cluster "wbe" not found, did you mean "web"?`, ""},
		{"weight too big", "/api/clusters/web/endpoints/a/weight", `{"weight": 999}`, 400, "weight must be an integer from 0 to 256, not 999", "weight"},
		{"fractional weight", "/api/clusters/web/endpoints/a/weight", `{"weight": 2.5}`, 400, "weight must be an integer from 0 to 256, not 2.5", "weight"},
		{"negative weight", "/api/clusters/web/endpoints/a/weight", `{"weight": -1}`, 400, "weight must be an integer from 0 to 256, not -1", "weight"},
		{"weight as text", "/api/clusters/web/endpoints/a/weight", `{"weight": "3"}`, 400, `weight must be an integer from 0 to 256, not "3"`, "weight"},
		{"no weight", "/api/clusters/web/endpoints/a/weight", `{}`, 400, `weight: the body must give the weight: {"weight": 3}`, "weight"},
		{"null weight", "/api/clusters/web/endpoints/a/weight", `{"weight": null}`, 400, `weight: the body must give the weight: {"weight": 3}`, "weight"},
		{"bad body", "/api/clusters/web/endpoints/a/weight", `{"wieght": 3}`, 400, `body: json: unknown field "wieght"`, ""},
		{"unknown action", "/api/clusters/web/endpoints/a/restart", ``, 404, `unknown action "restart": drain, enable, disable or weight`, ""},
	} {
		var got errorBody
		code := f.do(t, post(tt.path, tt.body), &got)
		if code != tt.code || (tt.msg != "" && got.Error != tt.msg) || (tt.field != "" && (len(got.Fields) != 1 || got.Fields[0].Field != tt.field)) {
			t.Errorf("%s: status %d, %+v; want %d, %q, field %q", tt.name, code, got, tt.code, tt.msg, tt.field)
		}
	}
	if info, _ := f.current(t); info.GetVersion() != 1 {
		t.Errorf("refused actions stored version %d", info.GetVersion())
	}
}

// TestCrossSitePostsRefused: a page of another site cannot make the
// visitor's browser drain an endpoint; curl-like clients can.
func TestCrossSitePostsRefused(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name   string
		header map[string]string
		code   int
	}{
		{"foreign origin", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"text body", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"same origin", map[string]string{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
	} {
		req := post("/api/clusters/web/endpoints/b/drain", "")
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		var body errorBody
		if code := f.do(t, req, &body); code != tt.code {
			t.Errorf("%s: status %d (%s), want %d", tt.name, code, body.Error, tt.code)
		}
	}
	info, _ := f.current(t)
	if info.GetVersion() != 2 {
		t.Errorf("version %d after one allowed drain, want 2", info.GetVersion())
	}
}

// TestCallsGoThroughInterceptors: every API call reaches the gRPC
// interceptors with the ConfigService method's name and the request's
// Authorization header, and an interceptor's refusal is the answer.
func TestCallsGoThroughInterceptors(t *testing.T) {
	var methods []string
	deny := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		methods = append(methods, info.FullMethod)
		md, _ := metadata.FromIncomingContext(ctx)
		if auth := md.Get("authorization"); len(auth) != 1 || auth[0] != "Bearer good" {
			return nil, status.Error(codes.PermissionDenied, "token may not do that")
		}
		return h(ctx, req)
	}
	f := newFixture(t, deny)
	var body errorBody
	if code := f.do(t, post("/api/clusters/web/endpoints/a/drain", ""), &body); code != http.StatusForbidden || body.Error != "token may not do that" {
		t.Errorf("drain without token: status %d %q, want 403 from the interceptor", code, body.Error)
	}
	req := post("/api/clusters/web/endpoints/a/drain", "")
	req.Header.Set("Authorization", "Bearer good")
	if code := f.do(t, req, nil); code != http.StatusOK {
		t.Errorf("drain with token: status %d", code)
	}
	for _, path := range []string{"/api/fleet", "/api/clusters", "/api/conns", "/api/history?cluster=web", "/api/versions"} {
		if code := f.do(t, httptest.NewRequest("GET", path, nil), nil); code != http.StatusForbidden {
			t.Errorf("GET %s without token: status %d, want 403", path, code)
		}
	}
	// Each GET stops at its first call, which the interceptor refuses.
	want := []string{"UpdateEndpoint", "UpdateEndpoint", "ListGroups", "Get", "ListConns", "GetStats", "History"}
	for i, m := range want {
		want[i] = "/sluice.v1.ConfigService/" + m
	}
	if strings.Join(methods, " ") != strings.Join(want, " ") {
		t.Errorf("interceptor saw %q, want %q", methods, want)
	}
}

// TestReadsWaitTogether: the reads behind the fleet and the clusters
// wait on etcd each (the store, the other replicas' nodes), so they run
// side by side: here the versions' read does not end until the stats'
// read has begun, which one after another would never do.
func TestReadsWaitTogether(t *testing.T) {
	var statsBegun chan struct{}
	waitForStats := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch info.FullMethod {
		case sluicev1.ConfigService_GetStats_FullMethodName:
			close(statsBegun)
		case sluicev1.ConfigService_ListGroups_FullMethodName, sluicev1.ConfigService_Get_FullMethodName:
			resp, err := h(ctx, req)
			select {
			case <-statsBegun:
			case <-time.After(5 * time.Second):
				return nil, status.Error(codes.Unavailable, "the stats were not asked for while the versions were read")
			}
			return resp, err
		}
		return h(ctx, req)
	}
	f := newFixture(t, waitForStats)
	for _, path := range []string{"/api/fleet", "/api/clusters"} {
		statsBegun = make(chan struct{})
		var body errorBody
		if code := f.do(t, httptest.NewRequest("GET", path, nil), &body); code != http.StatusOK {
			t.Errorf("GET %s: status %d %q", path, code, body.Error)
		}
	}
}

// TestClustersJoinSnapshotAndNodes: an endpoint shows the snapshot's
// admin state and weight, each node's health, and the fleet's sums.
func TestClustersJoinSnapshotAndNodes(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"n1", "n2"} {
		f.fleet.Connect(&sluicev1.Node{Id: id}, "peer", 1).Placed("default", "")
	}
	f.views.Put("n1", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Active: 2, Conns: 3, Requests: 10, Responses_5Xx: 1}}})
	f.views.Put("n2", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN, Detail: "connection refused", Active: 1, Conns: 1, Requests: 5, ConnectErrors: 2}}})
	f.do(t, post("/api/clusters/web/endpoints/b/disable", ""), nil)

	var got clustersJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/clusters", nil), &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got.Version != 2 || len(got.Clusters) != 1 || got.Clusters[0].LBPolicy != "ROUND_ROBIN" || len(got.Clusters[0].Endpoints) != 2 {
		t.Fatalf("got %+v", got)
	}
	a, b := got.Clusters[0].Endpoints[0], got.Clusters[0].Endpoints[1]
	if a.State != "ACTIVE" || a.Weight != 2 || a.Health != "MIXED" || a.Active != 3 || a.Conns != 4 || a.Requests != 15 || a.Errors != 3 || len(a.Nodes) != 2 || a.Nodes[1].Detail != "connection refused" {
		t.Errorf("web/a: %+v", a)
	}
	if b.State != "DISABLED" || b.Weight != 1 || b.Health != "UNKNOWN" || len(b.Nodes) != 0 {
		t.Errorf("web/b: %+v", b)
	}
}

// TestConnsFilters: the filters select records as sluicectl conns's do.
func TestConnsFilters(t *testing.T) {
	f := newFixture(t)
	f.ring.Add([]*sluicev1.ConnRecord{
		{NodeId: "n1", Cluster: "web", Endpoint: "a", CloseReason: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED, Duration: durationpb.New(time.Second),
			FailedRequests: 3, Failures: []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT, sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}},
		{NodeId: "n1", Cluster: "web", Endpoint: "b", CloseReason: sluicev1.CloseReason_CLOSE_REASON_DRAINED, Duration: durationpb.New(5 * time.Second)},
		{NodeId: "n2", Cluster: "web", Endpoint: "a", CloseReason: sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT, Duration: durationpb.New(30 * time.Second)},
	})
	for _, tt := range []struct {
		query string
		want  string // node/endpoint/reason of each record, newest first
	}{
		{"", "n2/a/server_timeout n1/b/drained n1/a/client_closed/3 server_timeout,no_endpoint"},
		{"reason=drained,server_timeout&node=n1", "n1/b/drained n1/a/client_closed/3 server_timeout,no_endpoint"},
		{"reason=drained&node=n1", "n1/b/drained"},
		{"min_duration=2s&limit=1", "n2/a/server_timeout"},
		{"endpoint=a&reason=CLIENT_CLOSED", "n1/a/client_closed/3 server_timeout,no_endpoint"},
		{"reason=no_endpoint", "n1/a/client_closed/3 server_timeout,no_endpoint"},
		{"reason=server_timeout", "n2/a/server_timeout n1/a/client_closed/3 server_timeout,no_endpoint"},
	} {
		var got struct{ Conns []connJSON }
		if code := f.do(t, httptest.NewRequest("GET", "/api/conns?"+tt.query, nil), &got); code != http.StatusOK {
			t.Fatalf("%s: status %d", tt.query, code)
		}
		var seen []string
		for _, c := range got.Conns {
			row := c.Node + "/" + c.Endpoint + "/" + c.Reason
			if c.FailedRequests > 0 || len(c.Failures) > 0 {
				row += fmt.Sprintf("/%d %s", c.FailedRequests, strings.Join(c.Failures, ","))
			}
			seen = append(seen, row)
		}
		if strings.Join(seen, " ") != tt.want {
			t.Errorf("?%s: got %q, want %q", tt.query, seen, tt.want)
		}
	}
	var bad errorBody
	if code := f.do(t, httptest.NewRequest("GET", "/api/conns?reason=closed", nil), &bad); code != 400 || !strings.Contains(bad.Error, `unknown reason "closed" (one of: client_closed, server_closed,`) {
		t.Errorf("unknown reason: status %d %q", code, bad.Error)
	}
}

// TestHistoryAnswersPerSecond: the history of a cluster is the recorder's,
// one value per second.
func TestHistoryAnswersPerSecond(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.hist.Observe("n1", "default", now.Add(-3*time.Second), []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Requests: 100}})
	f.hist.Observe("n1", "default", now.Add(-2*time.Second), []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Requests: 130}})
	var got seriesJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web&endpoint=a&seconds=10", nil), &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	total := float32(0)
	for _, v := range got.Requests {
		total += v
	}
	if len(got.Requests) != 10 || len(got.Active) != 10 || got.Step != 1 || total != 30 {
		t.Errorf("got %d points (step %d) totalling %v requests, want 10 points totalling 30", len(got.Requests), got.Step, total)
	}
	for _, q := range []string{"", "node=n1&cluster=web", "cluster=web&seconds=0", "cluster=web&seconds=3601", "endpoint=a"} {
		if code := f.do(t, httptest.NewRequest("GET", "/api/history?"+q, nil), nil); code != 400 {
			t.Errorf("?%s: status %d, want 400", q, code)
		}
	}
}

// TestHistoryOfUnknownNames: a series never recorded reads as zeros when
// its cluster or node exists (no traffic yet), and as 404 naming what
// there is when it is a typo, as sluicectl stats answers.
func TestHistoryOfUnknownNames(t *testing.T) {
	f := newFixture(t)
	var got seriesJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web&endpoint=b&seconds=5", nil), &got); code != http.StatusOK || len(got.Requests) != 5 {
		t.Errorf("a known cluster with no traffic: status %d, %d points; want 200 and 5 points", code, len(got.Requests))
	}
	for _, tt := range []struct{ query, want string }{
		{"cluster=wbe", `cluster "wbe" is in no group's snapshot, did you mean "web"?`},
		{"cluster=api&endpoint=a", `cluster "api" is in no group's snapshot (the clusters are: web)`},
		{"node=n1", `node "n1" is not in the fleet (no node is in it)`},
	} {
		var bad errorBody
		if code := f.do(t, httptest.NewRequest("GET", "/api/history?"+tt.query, nil), &bad); code != http.StatusNotFound || bad.Error != tt.want {
			t.Errorf("?%s: status %d %q, want 404 %q", tt.query, code, bad.Error, tt.want)
		}
	}
	// A cluster's series is its group's: a group that does not exist, or
	// one whose snapshot lacks the cluster, is 404 too, not a flat line.
	edge, err := snapshot.Parse([]byte("clusters: [{name: api, endpoints: [{name: e1, address: 127.0.0.1:9101}]}]"), "edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.config.Apply(context.Background(), &sluicev1.ApplyRequest{Snapshot: edge, Group: "edge", Selector: proto.String("role=edge")}); err != nil {
		t.Fatal(err)
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=api&endpoint=e1&group=edge", nil), nil); code != http.StatusOK {
		t.Errorf("edge's api/e1, with no traffic: status %d, want 200", code)
	}
	for _, tt := range []struct{ query, want string }{
		{"cluster=web&group=egde", `group "egde" does not exist in version 2, did you mean "edge"?`},
		{"cluster=web&endpoint=a&group=nope", `group "nope" does not exist in version 2 (the groups are: default, edge)`},
		{"cluster=web&group=edge", `group "edge" has no cluster "web" (it has: api)`},
		{"cluster=api", `group "default" has no cluster "api" (it has: web)`},
		{"cluster=api&endpoint=a&group=edge", `cluster "api" has no endpoint "a" (it has: e1)`},
	} {
		var bad errorBody
		if code := f.do(t, httptest.NewRequest("GET", "/api/history?"+tt.query, nil), &bad); code != http.StatusNotFound || bad.Error != tt.want {
			t.Errorf("?%s: status %d %q, want 404 %q", tt.query, code, bad.Error, tt.want)
		}
	}

	// Once recorded, a series answers even if its name has left the
	// snapshot: its past is still there to see.
	f.hist.Observe("n1", "default", time.Now().Add(-2*time.Second), []*sluicev1.EndpointStats{{Cluster: "old", Endpoint: "a", Requests: 5}})
	for _, q := range []string{"cluster=old", "node=n1"} {
		if code := f.do(t, httptest.NewRequest("GET", "/api/history?"+q, nil), nil); code != http.StatusOK {
			t.Errorf("?%s after a report: status %d, want 200", q, code)
		}
	}
}

// countStats counts the GetStats calls that reach the config API.
type countStats struct {
	sluicev1.ConfigServiceServer
	calls atomic.Int32
}

func (c *countStats) GetStats(ctx context.Context, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	c.calls.Add(1)
	return c.ConfigServiceServer.GetStats(ctx, req)
}

// TestHistoryOfSentClustersAsksNothing: a never-recorded series of a
// cluster this control plane sends its nodes answers zeros without a
// GetStats, which would read etcd at every dashboard refresh; a name it
// does not send is still checked.
func TestHistoryOfSentClustersAsksNothing(t *testing.T) {
	f := newFixture(t)
	counted := &countStats{ConfigServiceServer: f.config}
	cur, err := f.config.Get(context.Background(), &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sent := &sluicev1.FleetConfig{Groups: []*sluicev1.Group{{Name: "default", Version: 1, Snapshot: cur.GetSnapshot()}}}
	f.api = New(counted, f.hist).WithPublished(func() (uint64, *sluicev1.FleetConfig) { return 1, sent }).Handler()
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web", nil), nil); code != http.StatusOK || counted.calls.Load() != 0 {
		t.Errorf("history of web, which is sent: status %d after %d GetStats calls; want 200 after none", code, counted.calls.Load())
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=wbe", nil), nil); code != http.StatusNotFound || counted.calls.Load() != 1 {
		t.Errorf("history of wbe, which is not: status %d after %d GetStats calls; want 404 after one", code, counted.calls.Load())
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web&group=edge", nil), nil); code != http.StatusNotFound {
		t.Errorf("history of web in group edge, which is sent no group edge: status %d, want 404", code)
	}

	// An endpoint of a sent cluster is checked against what is sent.
	counted.calls.Store(0)
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web&endpoint=b", nil), nil); code != http.StatusOK {
		t.Errorf("history of web's endpoint b, which is sent: status %d, want 200", code)
	}
	var bad errorBody
	want := `cluster "web" has no endpoint "typo" (it has: a, b)`
	if code := f.do(t, httptest.NewRequest("GET", "/api/history?cluster=web&endpoint=typo", nil), &bad); code != http.StatusNotFound || bad.Error != want {
		t.Errorf("history of web's endpoint typo: status %d %q, want 404 %q", code, bad.Error, want)
	}
	if n := counted.calls.Load(); n != 0 {
		t.Errorf("the endpoints' history made %d GetStats calls, want none", n)
	}
}

// FuzzQueries: no query string crashes the parsers, and what they accept
// stays within the bounds they promise.
func FuzzQueries(f *testing.F) {
	for _, s := range []string{"", "reason=drained,client_closed&limit=5", "min_duration=1s", "cluster=web&seconds=60", "node=n1", "limit=0", "reason=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if req, err := parseConnsQuery(q); err == nil {
			if req.GetLimit() < 1 || req.GetLimit() > maxConnsLimit || req.GetMinDuration().AsDuration() < 0 {
				t.Fatalf("%q: accepted %v", raw, req)
			}
			if err := req.Validate(); err != nil {
				t.Fatalf("%q: accepted a request ListConns refuses: %v", raw, err)
			}
		}
		if hq, err := parseHistoryQuery(q); err == nil && (hq.seconds < 1 || hq.seconds > history.Window || hq.key.Kind == 0) {
			t.Fatalf("%q: accepted %+v", raw, hq)
		}
		if req, maxChanges, err := parseVersionsQuery(q); err == nil && (req.GetLimit() < 1 || req.GetLimit() > maxVersionsLimit || maxChanges < -1) {
			t.Fatalf("%q: accepted %v", raw, req)
		}
	})
}

// TestVersionsListRefusals: /api/versions lists the stored versions,
// newest first, with the nodes that refused each and why, as sluicectl
// history does; limit and group narrow it, and a bad one is refused with
// the reason.
func TestVersionsListRefusals(t *testing.T) {
	f := newFixture(t)
	if code := f.do(t, post("/api/clusters/web/endpoints/b/weight", `{"weight": 3, "comment": "more to b"}`), nil); code != http.StatusOK {
		t.Fatalf("set weight: status %d", code)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	const why = "listener public: listen tcp 10.0.0.5:443: bind: address already in use"
	if err := f.store.Refused(context.Background(), 2, &sluicev1.Refusal{Node: "edge-1", Error: why, At: timestamppb.New(at)}); err != nil {
		t.Fatal(err)
	}
	var got versionsJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/versions", nil), &got); code != http.StatusOK {
		t.Fatalf("GET /api/versions: status %d", code)
	}
	if got.Current != 2 || len(got.Versions) != 2 {
		t.Fatalf("current %d, %d versions; want current 2 and versions 2 and 1: %+v", got.Current, len(got.Versions), got)
	}
	v2, v1 := got.Versions[0], got.Versions[1]
	if v2.Version != 2 || v2.Group != "default" || v2.Comment != "more to b" || len(v2.Changes) != 1 || v2.Changes[0] != "~ cluster web: endpoint b weight 1 (default) -> 3" {
		t.Errorf("version 2 listed as %+v; want group default, the comment and the weight change", v2)
	}
	want := []refusalJSON{{Node: "edge-1", Error: why, At: at}}
	if v2.RefusedBy != 1 || !reflect.DeepEqual(v2.Refusals, want) {
		t.Errorf("version 2 refused by %d: %+v; want 1, %+v", v2.RefusedBy, v2.Refusals, want)
	}
	if v1.Version != 1 || v1.Author != "test" || v1.RefusedBy != 0 || v1.Refusals == nil || len(v1.Refusals) != 0 {
		t.Errorf("version 1 listed as %+v; want by test, refused by none (an empty list)", v1)
	}
	h, err := f.config.History(context.Background(), &sluicev1.HistoryRequest{})
	if err != nil || len(h.GetVersions()) != 2 {
		t.Fatalf("History: %v, %v", h, err)
	}
	for i, v := range []versionJSON{v2, v1} {
		if want := h.GetVersions()[i].GetFingerprint(); len(want) != 32 || !bytes.Equal(v.Fingerprint, want) {
			t.Errorf("version %d's fingerprint %x, want %x, as sluicectl history has it", v.Version, v.Fingerprint, want)
		}
	}
	if bytes.Equal(v1.Fingerprint, v2.Fingerprint) {
		t.Errorf("versions 1 and 2 share the fingerprint %x, though 2 changed a weight", v1.Fingerprint)
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/versions?limit=1&group=default", nil), &got); code != http.StatusOK || len(got.Versions) != 1 || got.Versions[0].Version != 2 || got.Current != 2 {
		t.Errorf("limit=1&group=default: status %d, %+v; want version 2 alone, current 2", code, got)
	}
	if v2.ChangesTotal != 1 {
		t.Errorf("version 2's changes_total %d, want 1", v2.ChangesTotal)
	}
	// The dashboard shows a few changes of each version: a big apply's
	// thousands of lines need not travel at every refresh.
	var few versionsJSON
	if code := f.do(t, httptest.NewRequest("GET", "/api/versions?max_changes=0", nil), &few); code != http.StatusOK || len(few.Versions) != 2 ||
		few.Versions[0].Changes == nil || len(few.Versions[0].Changes) != 0 || few.Versions[0].ChangesTotal != 1 {
		t.Errorf("max_changes=0: status %d, %+v; want no change listed of the 1 version 2 has", code, few)
	}
	if code := f.do(t, httptest.NewRequest("GET", "/api/versions?max_changes=1", nil), &few); code != http.StatusOK || !reflect.DeepEqual(few.Versions[0].Changes, v2.Changes) {
		t.Errorf("max_changes=1: status %d, %+v; want version 2's one change", code, few)
	}
	for _, tt := range []struct {
		query string
		code  int
		want  string
	}{
		{"limit=0", 400, `versions: limit must be a whole number from 1 to 1000, not "0"`},
		{"limit=x", 400, `versions: limit must be a whole number from 1 to 1000, not "x"`},
		{"max_changes=-1", 400, `versions: max_changes must be a whole number, 0 or more, not "-1"`},
		{"group=edge", 404, "group \"edge\" does not exist"},
		{"group=Edge!", 400, "group"},
	} {
		var bad errorBody
		if code := f.do(t, httptest.NewRequest("GET", "/api/versions?"+tt.query, nil), &bad); code != tt.code || !strings.Contains(bad.Error, tt.want) {
			t.Errorf("%s: status %d %q, want %d with %q", tt.query, code, bad.Error, tt.code, tt.want)
		}
	}
}

// TestJSONReadsAsText: what curl shows of an answer reads as sluicectl's
// words, without HTML escapes.
func TestJSONReadsAsText(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, map[string]string{"change": "web/a: state ACTIVE -> DRAINING <&>"})
	if got, want := rec.Body.String(), `{"change":"web/a: state ACTIVE -> DRAINING <&>"}`+"\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

// TestWrongMethod: a path the API serves with another method is 405 with
// Allow naming it, as HTTP clients expect; a path it does not serve is
// 404.
func TestWrongMethod(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		method, path string
		code         int
		allow, want  string
	}{
		{"GET", "/api/clusters/web/endpoints/a/drain", 405, "POST", "GET /api/clusters/web/endpoints/a/drain: the API answers POST there"},
		{"POST", "/api/versions", 405, "GET", "POST /api/versions: the API answers GET there"},
		{"DELETE", "/api/fleet", 405, "GET", "DELETE /api/fleet: the API answers GET there"},
		{"GET", "/api/nope", 404, "", "no such API: GET /api/nope"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tt.method, tt.path, nil)
		req.Header.Set("Content-Type", "application/json")
		f.api.ServeHTTP(rec, req)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != tt.code || rec.Header().Get("Allow") != tt.allow || body.Error != tt.want {
			t.Errorf("%s %s: %d, Allow %q, %q (%v); want %d, Allow %q, %q", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), body.Error, err, tt.code, tt.allow, tt.want)
		}
	}
}
