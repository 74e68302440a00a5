package stats

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 10 * time.Second

func rec(listener, cluster, endpoint string) *sluicev1.ConnRecord {
	return &sluicev1.ConnRecord{Listener: listener, Cluster: cluster, Endpoint: endpoint}
}

func listeners(recs []*sluicev1.ConnRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.GetListener())
	}
	return out
}

func TestRingKeepsNewestFirst(t *testing.T) {
	r := NewRing(3)
	if got := r.List(Filter{}, 0); len(got) != 0 {
		t.Errorf("empty ring listed %v", listeners(got))
	}
	r.Add([]*sluicev1.ConnRecord{rec("a", "", ""), rec("b", "", "")})
	if got := listeners(r.List(Filter{}, 0)); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("List = %v, want [b a]", got)
	}
	r.Add([]*sluicev1.ConnRecord{rec("c", "", ""), rec("d", "", "")})
	if got := listeners(r.List(Filter{}, 0)); !slices.Equal(got, []string{"d", "c", "b"}) {
		t.Errorf("after wrap List = %v, want [d c b]", got)
	}
	// A batch larger than the ring keeps its newest records.
	r.Add([]*sluicev1.ConnRecord{rec("1", "", ""), rec("2", "", ""), rec("3", "", ""), rec("4", "", "")})
	if got := listeners(r.List(Filter{}, 0)); !slices.Equal(got, []string{"4", "3", "2"}) {
		t.Errorf("after big batch List = %v, want [4 3 2]", got)
	}
	if got := listeners(r.List(Filter{}, 2)); !slices.Equal(got, []string{"4", "3"}) {
		t.Errorf("List(limit 2) = %v, want [4 3]", got)
	}
}

func TestRingDefaults(t *testing.T) {
	r := NewRing(0)
	for i := range DefaultRingSize + 5 {
		r.Add([]*sluicev1.ConnRecord{rec(fmt.Sprint(i), "", "")})
	}
	got := r.List(Filter{}, 0)
	if len(got) != DefaultListLimit || got[0].GetListener() != fmt.Sprint(DefaultRingSize+4) {
		t.Errorf("List(0) returned %d records starting at %s", len(got), got[0].GetListener())
	}
	if all := r.List(Filter{}, 1<<20); len(all) != DefaultRingSize {
		t.Errorf("ring kept %d records, want %d", len(all), DefaultRingSize)
	}
}

func TestRingFilters(t *testing.T) {
	r := NewRing(10)
	recs := []*sluicev1.ConnRecord{rec("1", "web", "web1"), rec("2", "web", "web2"), rec("3", "db", "db1"), rec("4", "web", "web1")}
	recs[0].NodeId, recs[1].NodeId, recs[2].NodeId, recs[3].NodeId = "n1", "n2", "n1", "n2"
	shutdown, denied := sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN, sluicev1.CloseReason_CLOSE_REASON_DENIED
	recs[1].CloseReason, recs[2].CloseReason, recs[3].CloseReason = shutdown, denied, shutdown
	recs[0].Duration, recs[1].Duration, recs[3].Duration = durationpb.New(time.Second), durationpb.New(2*time.Second), durationpb.New(time.Minute)
	// 1 went on after requests the node answered 502 (no endpoint) and
	// 504 (the endpoint timed out).
	noEndpoint, timedOut := sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT, sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT
	recs[0].CloseReason, recs[0].FailedRequests = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED, 2
	recs[0].Failures = []sluicev1.CloseReason{timedOut, noEndpoint}
	r.Add(recs)
	for _, tt := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Cluster: "web"}, []string{"4", "2", "1"}},
		{Filter{Cluster: "web", Endpoint: "web1"}, []string{"4", "1"}},
		{Filter{NodeID: "n1"}, []string{"3", "1"}},
		{Filter{NodeID: "n2", Endpoint: "web1"}, []string{"4"}},
		{Filter{Cluster: "none"}, nil},
		{Filter{Listener: "3"}, []string{"3"}},
		{Filter{Reasons: []sluicev1.CloseReason{shutdown}}, []string{"4", "2"}},
		{Filter{Reasons: []sluicev1.CloseReason{denied, shutdown}, Endpoint: "web1"}, []string{"4"}},
		{Filter{MinDuration: 2 * time.Second}, []string{"4", "2"}},
		{Filter{Reasons: []sluicev1.CloseReason{noEndpoint}}, []string{"1"}},
		{Filter{Reasons: []sluicev1.CloseReason{timedOut}}, []string{"1"}},
		{Filter{Reasons: []sluicev1.CloseReason{noEndpoint, denied}}, []string{"3", "1"}},
		{Filter{MinDuration: time.Second, Reasons: []sluicev1.CloseReason{shutdown}, NodeID: "n2"}, []string{"4", "2"}},
	} {
		if got := listeners(r.List(tt.f, 0)); !slices.Equal(got, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// fakeNodes records whom the server said is draining, and seen, and says
// the processes in replaced ("node/instance") were replaced.
type fakeNodes struct {
	mu       sync.Mutex
	draining []string
	seen     []string
	replaced map[string]bool
}

func (f *fakeNodes) Seen(node, instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, node+"/"+instance)
}

func (f *fakeNodes) seenCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeNodes) Replaced(node, instance string) bool { return f.replaced[node+"/"+instance] }

func (f *fakeNodes) Group(string) string { return "default" }

func (f *fakeNodes) Draining(node, instance string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.draining = append(f.draining, node+"/"+instance)
	return len(f.draining) == 1
}

func (f *fakeNodes) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.draining)
}

func startStats(t *testing.T) (*Server, sluicev1.StatsServiceClient) {
	t.Helper()
	return startStatsWith(t, nil)
}

func startStatsWith(t *testing.T, nodes Nodes) (*Server, sluicev1.StatsServiceClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(NewRing(100), nodes, nil)
	gs := grpc.NewServer()
	sluicev1.RegisterStatsServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, sluicev1.NewStatsServiceClient(conn)
}

func TestReportStampsNodeAndCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	srv, client := startStats(t)

	stream, err := client.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batches := []*sluicev1.StatsReport{
		{NodeId: "n1", Records: []*sluicev1.ConnRecord{rec("a", "web", "web1"), rec("b", "web", "web2")}},
		// Later messages cannot speak for another node.
		{NodeId: "n2", Records: []*sluicev1.ConnRecord{{NodeId: "forged", Listener: "c"}}, Dropped: 7},
		{Dropped: 3},
	}
	for _, b := range batches {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	if sum.GetRecords() != 3 {
		t.Errorf("summary records = %d, want 3", sum.GetRecords())
	}
	got := srv.Ring().List(Filter{}, 0)
	if l := listeners(got); !slices.Equal(l, []string{"c", "b", "a"}) {
		t.Errorf("records = %v, want [c b a]", l)
	}
	for _, r := range got {
		if r.GetNodeId() != "n1" {
			t.Errorf("record %s stamped %q, want n1", r.GetListener(), r.GetNodeId())
		}
	}
	if c := srv.Counters(); c != (Counters{Received: 3, Dropped: 10}) {
		t.Errorf("Counters = %+v, want {3 10}", c)
	}
}

func TestReportNeedsNodeID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	srv, client := startStats(t)
	stream, err := client.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sluicev1.StatsReport{Records: []*sluicev1.ConnRecord{rec("a", "", "")}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("report without node_id: %v, want InvalidArgument", err)
	}
	if n := len(srv.Ring().List(Filter{}, 0)); n != 0 {
		t.Errorf("kept %d records of an anonymous report", n)
	}
}

// TestReportDraining: every report saying draining is passed on for the
// stream's node, whatever node_id it carries; other reports are not, and the
// summary comes only after they were.
func TestReportDraining(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	nodes := &fakeNodes{}
	srv, client := startStatsWith(t, nodes)
	stream, err := client.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*sluicev1.StatsReport{
		{NodeId: "n1", Instance: "i1"},
		{Records: []*sluicev1.ConnRecord{rec("a", "web", "web1")}},
		{NodeId: "n2", Instance: "i2", Draining: true},
		{Records: []*sluicev1.ConnRecord{rec("b", "web", "web1")}, Draining: true},
	} {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	if got := nodes.calls(); !slices.Equal(got, []string{"n1/i1", "n1/i1"}) {
		t.Errorf("Draining calls = %v, want [n1/i1 n1/i1]: the node and instance of the first report", got)
	}
	if got := nodes.seenCalls(); !slices.Equal(got, []string{"n1/i1"}) {
		t.Errorf("Seen calls = %v, want [n1/i1]: once for the four reports of well under a second", got)
	}
	if l := listeners(srv.Ring().List(Filter{}, 0)); !slices.Equal(l, []string{"b", "a"}) {
		t.Errorf("records = %v, want [b a]: a draining report's records are kept", l)
	}
}

func epStats(cluster, endpoint string, requests uint64) *sluicev1.EndpointStats {
	return &sluicev1.EndpointStats{Cluster: cluster, Endpoint: endpoint, Requests: requests}
}

func names(v *View) []string {
	var out []string
	for _, ep := range v.Endpoints {
		out = append(out, fmt.Sprintf("%s/%s:%d", ep.GetCluster(), ep.GetEndpoint(), ep.GetRequests()))
	}
	return out
}

// TestReportEndpoints: a report with endpoints replaces the stream's node's
// view, stamped with when it came; one without them leaves the view as it
// was.
func TestReportEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	srv, client := startStats(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv.Views().now = func() time.Time { return at }
	stream, err := client.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*sluicev1.StatsReport{
		{NodeId: "n1", Endpoints: &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("web", "a", 1), epStats("web", "b", 2)}}},
		{NodeId: "forged", Endpoints: &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("web", "a", 3)}}},
		{Records: []*sluicev1.ConnRecord{rec("l", "web", "a")}},
	} {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	views := srv.Views().List("", "")
	if len(views) != 1 || views[0].NodeID != "n1" || !views[0].ReportedAt.Equal(at) {
		t.Fatalf("views %+v, want one of n1 reported at %v", views, at)
	}
	if got := names(views[0]); !slices.Equal(got, []string{"web/a:3"}) {
		t.Errorf("n1's view = %v, want the last one reported, [web/a:3]", got)
	}
}

// forgetting records the nodes an Observer was told to forget.
type forgetting struct {
	mu     sync.Mutex
	forgot []string
}

func (f *forgetting) Observe(string, string, time.Time, []*sluicev1.EndpointStats) {}

func (f *forgetting) Forget(node string, _ time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, node)
}

func (f *forgetting) nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.forgot)
}

// TestReportOfReplacedProcess: an old process of a node, draining beside
// the process that replaced it, reports its connections, but its endpoint
// counters (from its own start) do not replace the node's view, and the end
// of its stream does not make the charts forget the node.
func TestReportOfReplacedProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	obs := &forgetting{}
	srv, client := startStatsWith(t, &fakeNodes{replaced: map[string]bool{"n1/old": true}})
	srv.WithObserver(obs)
	send := func(reports ...*sluicev1.StatsReport) {
		t.Helper()
		stream, err := client.Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reports {
			if err := stream.Send(r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatalf("CloseAndRecv: %v", err)
		}
	}
	send(&sluicev1.StatsReport{NodeId: "n1", Instance: "new", Endpoints: &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("web", "a", 5)}}})
	// The summary comes once the stream's end was handled.
	if got := obs.nodes(); !slices.Equal(got, []string{"n1"}) {
		t.Errorf("forgot %v after the current process's stream ended, want [n1]", got)
	}
	send(&sluicev1.StatsReport{NodeId: "n1", Instance: "old", Draining: true,
		Records:   []*sluicev1.ConnRecord{rec("from-old", "web", "a")},
		Endpoints: &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("web", "a", 900)}}})
	views := srv.Views().List("n1", "")
	if len(views) != 1 || !slices.Equal(names(views[0]), []string{"web/a:5"}) {
		t.Errorf("n1's view after its old process reported: %v, want the current process's [web/a:5]", views)
	}
	if l := listeners(srv.Ring().List(Filter{}, 0)); !slices.Equal(l, []string{"from-old"}) {
		t.Errorf("records = %v, want the old process's [from-old]", l)
	}
	if got := obs.nodes(); !slices.Equal(got, []string{"n1"}) {
		t.Errorf("forgot %v after the old process's stream ended, want only the first [n1]", got)
	}
}

// TestViewsList: views come sorted by node, filtered by node and cluster;
// a node without an endpoint of the cluster is left out.
func TestViewsList(t *testing.T) {
	v := NewViews()
	v.Put("n2", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("api", "x", 1), epStats("web", "a", 2)}})
	v.Put("n1", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("web", "a", 3), epStats("web", "b", 4)}})
	v.Put("n3", &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{epStats("api", "x", 5)}})
	show := func(views []*View) []string {
		var out []string
		for _, view := range views {
			out = append(out, view.NodeID+"="+fmt.Sprint(names(view)))
		}
		return out
	}
	for _, tt := range []struct {
		node, cluster string
		want          []string
	}{
		{"", "", []string{"n1=[web/a:3 web/b:4]", "n2=[api/x:1 web/a:2]", "n3=[api/x:5]"}},
		{"n2", "", []string{"n2=[api/x:1 web/a:2]"}},
		{"", "web", []string{"n1=[web/a:3 web/b:4]", "n2=[web/a:2]"}},
		{"n3", "web", nil},
		{"n9", "", nil},
	} {
		if got := show(v.List(tt.node, tt.cluster)); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %q) = %v, want %v", tt.node, tt.cluster, got, tt.want)
		}
	}
	// Filtering copies nothing into the stored views.
	if got := show(v.List("n2", "")); !slices.Equal(got, []string{"n2=[api/x:1 web/a:2]"}) {
		t.Errorf("after filtered lists, n2 = %v", got)
	}
}
