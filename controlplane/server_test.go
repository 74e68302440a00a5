package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/store"
	"github.com/sluice-lb/sluice/dataplane/conntrack"
	dpstats "github.com/sluice-lb/sluice/dataplane/stats"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const defaultTestTimeout = 30 * time.Second

// quietPeriod is how long a test waits to see that nothing more arrives.
const quietPeriod = 300 * time.Millisecond

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testCP is a control plane served in-process, with clients.
type testCP struct {
	*Server
	conn   *grpc.ClientConn
	config sluicev1.ConfigServiceClient
	stop   func() error // stops Serve and returns its error
}

func startCP(t *testing.T, dir string) *testCP {
	t.Helper()
	return startCPWith(t, Options{DataDir: dir})
}

// startCPWith is startCP with opts, on loopback addresses of its own.
func startCPWith(t *testing.T, opts Options) *testCP {
	t.Helper()
	opts.Listen, opts.HTTP = "127.0.0.1:0", "127.0.0.1:0"
	cp, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-served:
			case <-time.After(defaultTestTimeout):
				serveErr = fmt.Errorf("Serve did not return")
			}
		})
		return serveErr
	}
	t.Cleanup(func() { stop() })
	conn, err := grpc.NewClient(cp.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testCP{Server: cp, conn: conn, config: sluicev1.NewConfigServiceClient(conn), stop: stop}
}

const quickstart = `
clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    health_check: { interval: 2s, fall: 3, rise: 2 }
    endpoints:
      - { name: web1, address: 127.0.0.1:9001, weight: 2 }
      - { name: web2, address: 127.0.0.1:9002, weight: %d }
      - { name: sorry, address: 127.0.0.1:9009, backup: true }
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: HTTP
    default_cluster: web
  - name: db
    address: 127.0.0.1:6663
    protocol: TCP
    default_cluster: web
`

// snap returns the quickstart snapshot with web2's weight set to w.
func snap(t *testing.T, w int) *sluicev1.Snapshot {
	t.Helper()
	s, err := snapshot.Parse(fmt.Appendf(nil, quickstart, w), "quickstart.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func (cp *testCP) apply(ctx context.Context, t *testing.T, s *sluicev1.Snapshot) *sluicev1.ApplyResponse {
	t.Helper()
	resp, err := cp.config.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: s, Author: "test"})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return resp
}

func (cp *testCP) history(ctx context.Context, t *testing.T) []uint64 {
	t.Helper()
	h, err := cp.config.History(ctx, &sluicev1.HistoryRequest{})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var out []uint64
	for _, v := range h.GetVersions() {
		out = append(out, v.GetVersion())
	}
	return out
}

// node returns what ListNodes says about id (nil when not listed).
func (cp *testCP) node(ctx context.Context, t *testing.T, id string) *sluicev1.NodeStatus {
	t.Helper()
	resp, err := cp.config.ListNodes(ctx, &sluicev1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

// waitNode polls ListNodes until node id satisfies cond.
func (cp *testCP) waitNode(ctx context.Context, t *testing.T, id, what string, cond func(*sluicev1.NodeStatus) bool) *sluicev1.NodeStatus {
	t.Helper()
	for {
		if n := cp.node(ctx, t, id); n != nil && cond(n) {
			return n
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s: timed out waiting for %s; last status %v", id, what, cp.node(context.Background(), t, id))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// node is a dataplane node's discovery stream driven by a test.
type node struct {
	t      *testing.T
	id     string
	stream grpc.BidiStreamingClient[sluicev1.DiscoveryRequest, sluicev1.DiscoveryResponse]
	resps  chan *sluicev1.DiscoveryResponse
	done   chan error
	cancel context.CancelFunc
}

func (cp *testCP) connect(ctx context.Context, t *testing.T, id, running string) *node {
	t.Helper()
	return cp.connectAs(ctx, t, &sluicev1.Node{Id: id, Labels: map[string]string{"zone": "eu-1"}, BuildVersion: "test"}, running)
}

// connectAs is connect with the node's self-description given whole.
func (cp *testCP) connectAs(ctx context.Context, t *testing.T, self *sluicev1.Node, running string) *node {
	t.Helper()
	id := self.GetId()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := sluicev1.NewDiscoveryServiceClient(cp.conn).StreamSnapshots(ctx)
	if err != nil {
		t.Fatalf("StreamSnapshots: %v", err)
	}
	n := &node{t: t, id: id, stream: stream, resps: make(chan *sluicev1.DiscoveryResponse, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				n.done <- err
				return
			}
			n.resps <- r
		}
	}()
	n.send(&sluicev1.DiscoveryRequest{Node: self, VersionInfo: running})
	return n
}

func (n *node) send(req *sluicev1.DiscoveryRequest) {
	n.t.Helper()
	if err := n.stream.Send(req); err != nil {
		n.t.Fatalf("node %s: Send: %v", n.id, err)
	}
}

func (n *node) next(ctx context.Context) *sluicev1.DiscoveryResponse {
	n.t.Helper()
	select {
	case r := <-n.resps:
		return r
	case err := <-n.done:
		n.t.Fatalf("node %s: stream ended: %v", n.id, err)
	case <-ctx.Done():
		n.t.Fatalf("node %s: no response: %v", n.id, ctx.Err())
	}
	return nil
}

func (n *node) expectNothing() {
	n.t.Helper()
	select {
	case r := <-n.resps:
		n.t.Fatalf("node %s: unexpected response version %s", n.id, r.GetVersionInfo())
	case err := <-n.done:
		n.t.Fatalf("node %s: stream ended: %v", n.id, err)
	case <-time.After(quietPeriod):
	}
}

func (n *node) ack(r *sluicev1.DiscoveryResponse) {
	n.send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
}

func (n *node) nack(r *sluicev1.DiscoveryResponse, running, detail string) {
	n.send(&sluicev1.DiscoveryRequest{VersionInfo: running, ResponseNonce: r.GetNonce(), ErrorDetail: detail})
}

// The whole loop: apply, subscribe, ACK, NACK without resend, next version,
// stale nonce, reconnect.
func TestAckNackLoop(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())

	v1 := snap(t, 1)
	if resp := cp.apply(ctx, t, v1); resp.GetVersion() != 1 || !resp.GetChanged() {
		t.Fatalf("first Apply = %v", resp)
	}

	// First subscription gets the current version.
	n := cp.connect(ctx, t, "edge-1", "")
	r1 := n.next(ctx)
	if r1.GetVersionInfo() != "1" || !proto.Equal(r1.GetSnapshot(), v1) {
		t.Fatalf("first response: version %q, snapshot equal %v", r1.GetVersionInfo(), proto.Equal(r1.GetSnapshot(), v1))
	}
	n.ack(r1)
	st := cp.waitNode(ctx, t, "edge-1", "ACK of 1", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 1 })
	if !st.GetConnected() || st.GetSentVersion() != 1 || st.GetLabels()["zone"] != "eu-1" || st.GetBuildVersion() != "test" ||
		st.GetPeer() == "" || st.GetConnectedSince() == nil || st.GetLastSeen() == nil {
		t.Errorf("after ACK: %v", st)
	}

	// NACK: recorded with its text, the version is not sent again.
	cp.apply(ctx, t, snap(t, 2))
	r2 := n.next(ctx)
	if r2.GetVersionInfo() != "2" {
		t.Fatalf("second response version %q, want 2", r2.GetVersionInfo())
	}
	n.nack(r2, "1", "listener public: bind 127.0.0.1:8080: address already in use")
	st = cp.waitNode(ctx, t, "edge-1", "NACK of 2", func(s *sluicev1.NodeStatus) bool { return s.GetNackedVersion() == 2 })
	if st.GetNackError() != "listener public: bind 127.0.0.1:8080: address already in use" || st.GetAckedVersion() != 1 || st.GetSentVersion() != 2 {
		t.Errorf("after NACK: %v", st)
	}
	n.expectNothing()

	// A stale answer (nonce of the first response) is ignored; the
	// subscription stands and the next new version is sent.
	n.send(&sluicev1.DiscoveryRequest{VersionInfo: "1", ResponseNonce: r1.GetNonce(), ErrorDetail: "stale"})
	cp.apply(ctx, t, snap(t, 3))
	r3 := n.next(ctx)
	if r3.GetVersionInfo() != "3" || r3.GetNonce() == r2.GetNonce() || r3.GetNonce() == r1.GetNonce() {
		t.Fatalf("third response version %q nonce %q", r3.GetVersionInfo(), r3.GetNonce())
	}
	if st := cp.node(ctx, t, "edge-1"); st.GetNackError() == "stale" {
		t.Error("stale NACK recorded")
	}
	n.ack(r3)
	st = cp.waitNode(ctx, t, "edge-1", "ACK of 3", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 3 })
	if st.GetNackedVersion() != 0 || st.GetNackError() != "" {
		t.Errorf("NACK not cleared by a newer ACK: %v", st)
	}

	// Disconnect: listed, not connected.
	n.cancel()
	cp.waitNode(ctx, t, "edge-1", "disconnected", func(s *sluicev1.NodeStatus) bool { return !s.GetConnected() })

	// Reconnect running the current version: nothing is re-sent.
	again := cp.connect(ctx, t, "edge-1", "3")
	cp.waitNode(ctx, t, "edge-1", "reconnected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	again.expectNothing()
	if st := cp.node(ctx, t, "edge-1"); st.GetAckedVersion() != 3 {
		t.Errorf("after reconnect acked = %d, want 3", st.GetAckedVersion())
	}
	// ...and the next change is.
	cp.apply(ctx, t, snap(t, 4))
	if r := again.next(ctx); r.GetVersionInfo() != "4" {
		t.Errorf("after reconnect got version %q, want 4", r.GetVersionInfo())
	}
}

func TestApplyFaultsStoreNothing(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	cp.apply(ctx, t, snap(t, 1))
	n := cp.connect(ctx, t, "edge-1", "1")

	bad := snap(t, 1)
	bad.Clusters[0].Endpoints[1].Weight = proto.Uint32(300)
	bad.Listeners[1].DefaultCluster = "missing"
	_, err := cp.config.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: bad})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Apply(bad) error = %v, want InvalidArgument", err)
	}
	faults, ok := snapshot.FromStatus(err)
	if !ok {
		t.Fatalf("no BadRequest detail: %v", err)
	}
	want := snapshot.Errors{
		{Path: "clusters[0].endpoints[1].weight", Message: "must be <= 256"},
		{Path: "listeners[1].default_cluster", Message: `unknown cluster "missing"`},
	}
	if !slices.Equal(faults, want) {
		t.Errorf("violations = %v, want %v", faults, want)
	}
	if h := cp.history(ctx, t); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
	n.expectNothing()
}

func TestApplyUnchangedAndDryRun(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	cp.apply(ctx, t, snap(t, 1))
	n := cp.connect(ctx, t, "edge-1", "1")

	if resp := cp.apply(ctx, t, snap(t, 1)); resp.GetVersion() != 1 || resp.GetChanged() {
		t.Errorf("unchanged Apply = %v, want version 1 unchanged", resp)
	}
	resp, err := cp.config.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap(t, 7), DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if resp.GetVersion() != 2 || !slices.Equal(resp.GetChanges(), []string{"~ cluster web: endpoint web2 weight 1 -> 7"}) {
		t.Errorf("dry run = %v; want the version it would create (2) and the change", resp)
	}
	if h := cp.history(ctx, t); !slices.Equal(h, []uint64{1}) {
		t.Errorf("History = %v, want [1]", h)
	}
	got, err := cp.config.Get(ctx, &sluicev1.GetRequest{})
	if err != nil || !proto.Equal(got.GetSnapshot(), snap(t, 1)) {
		t.Errorf("current after dry run changed: %v", err)
	}
	n.expectNothing()
}

func TestGet(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	got, err := cp.config.Get(ctx, &sluicev1.GetRequest{})
	if err != nil || got.GetInfo().GetVersion() != 0 || got.GetSnapshot() == nil || len(got.GetSnapshot().GetClusters()) != 0 {
		t.Errorf("Get before any apply = %v, %v; want version 0, empty snapshot", got, err)
	}
	if _, err := cp.config.Get(ctx, &sluicev1.GetRequest{Version: 9}); status.Code(err) != codes.NotFound {
		t.Errorf("Get(9) error = %v, want NotFound", err)
	}
}

func TestRestartKeepsCurrentAndHistory(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	cp := startCP(t, dir)
	cp.apply(ctx, t, snap(t, 1))
	cp.apply(ctx, t, snap(t, 2))
	if err := cp.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}

	cp = startCP(t, dir)
	got, err := cp.config.Get(ctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetInfo().GetVersion() != 2 || got.GetInfo().GetAuthor() != "test" || !proto.Equal(got.GetSnapshot(), snap(t, 2)) {
		t.Errorf("current after restart = %v", got.GetInfo())
	}
	if h := cp.history(ctx, t); !slices.Equal(h, []uint64{2, 1}) {
		t.Errorf("History after restart = %v, want [2 1]", h)
	}
	// Nodes get the stored current version from the restarted server.
	n := cp.connect(ctx, t, "edge-1", "")
	if r := n.next(ctx); r.GetVersionInfo() != "2" {
		t.Errorf("node got version %q after restart, want 2", r.GetVersionInfo())
	}
	if resp := cp.apply(ctx, t, snap(t, 3)); resp.GetVersion() != 3 {
		t.Errorf("first Apply after restart stored version %d, want 3", resp.GetVersion())
	}
}

func TestManyStreamsAck(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	cp.apply(ctx, t, snap(t, 1))
	const streams, conns = 1000, 10
	clients := make([]sluicev1.DiscoveryServiceClient, conns)
	for i := range clients {
		conn, err := grpc.NewClient(cp.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients[i] = sluicev1.NewDiscoveryServiceClient(conn)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range streams {
		stream, err := clients[i%conns].StreamSnapshots(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "n" + strconv.Itoa(i)}, VersionInfo: "1"}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for {
				r, err := stream.Recv()
				if err != nil {
					return
				}
				stream.Send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
			}
		})
	}
	waitCount := func(version uint64) {
		t.Helper()
		for {
			applied, connected := cp.Fleet().Count(version)
			if applied == streams {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("version %d: %d of %d nodes (%d connected) ACKed", version, applied, streams, connected)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitCount(1)
	cp.apply(ctx, t, snap(t, 2))
	waitCount(2)
	resp, err := cp.config.ListNodes(ctx, &sluicev1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetNodes()) != streams {
		t.Fatalf("ListNodes lists %d nodes, want %d", len(resp.GetNodes()), streams)
	}
	for _, n := range resp.GetNodes() {
		if n.GetAckedVersion() != 2 || n.GetSentVersion() != 2 {
			t.Fatalf("node %s: acked %d sent %d, want 2 2", n.GetId(), n.GetAckedVersion(), n.GetSentVersion())
		}
	}
}

func TestStatsReportAndListConns(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	stream, err := sluicev1.NewStatsServiceClient(cp.conn).Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&sluicev1.StatsReport{NodeId: "edge-1", Records: []*sluicev1.ConnRecord{
		{Listener: "public", Cluster: "web", Endpoint: "web1", BytesIn: 10},
		{Listener: "public", Cluster: "web", Endpoint: "web2", BytesIn: 20},
		{Listener: "db", Cluster: "db", Endpoint: "db1", BytesIn: 30,
			CloseReason: sluicev1.CloseReason_CLOSE_REASON_DENIED, Duration: durationpb.New(time.Second)},
	}})
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	resp, err := cp.config.ListConns(ctx, &sluicev1.ListConnsRequest{Cluster: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range resp.GetRecords() {
		if r.GetNodeId() != "edge-1" {
			t.Errorf("record not stamped with its node: %v", r)
		}
		got = append(got, r.GetBytesIn())
	}
	if !slices.Equal(got, []uint64{20, 10}) {
		t.Errorf("ListConns(cluster web) bytes_in = %v, want [20 10]", got)
	}
	resp, _ = cp.config.ListConns(ctx, &sluicev1.ListConnsRequest{Limit: 1})
	if len(resp.GetRecords()) != 1 || resp.GetRecords()[0].GetBytesIn() != 30 {
		t.Errorf("ListConns(limit 1) = %v, want the newest record", resp.GetRecords())
	}
}

// TestNodeDraining: a node's stats reporter says the node drains, and
// ListNodes shows it as soon as Draining returns, though the reporter stops
// right after; once the node's discovery stream ends it is disconnected, and
// a new stream of the node starts afresh.
func TestNodeDraining(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	n := cp.connect(ctx, t, "edge-1", "")
	cp.waitNode(ctx, t, "edge-1", "connected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })

	rep := dpstats.NewReporter(16, slog.New(slog.DiscardHandler))
	rctx, stopReporter := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() { rep.Run(rctx, cp.conn, "edge-1"); close(reported) }()
	defer func() { stopReporter(); <-reported }()
	rep.Record(&conntrack.ConnInfo{Listener: "public"})
	for rep.Sent() == 0 { // the stream is up
		select {
		case <-ctx.Done():
			t.Fatal("the reporter sent nothing")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if st := cp.node(ctx, t, "edge-1"); st.GetDraining() {
		t.Fatalf("draining before the node said so: %v", st)
	}

	rep.Draining()
	stopReporter()
	<-reported
	if st := cp.node(ctx, t, "edge-1"); !st.GetConnected() || !st.GetDraining() {
		t.Errorf("once Draining returned: connected=%v draining=%v, want true true", st.GetConnected(), st.GetDraining())
	}

	n.cancel()
	st := cp.waitNode(ctx, t, "edge-1", "disconnected", func(s *sluicev1.NodeStatus) bool { return !s.GetConnected() })
	if st.GetDraining() {
		t.Errorf("disconnected node still draining: %v", st)
	}
	again := cp.connect(ctx, t, "edge-1", "")
	st = cp.waitNode(ctx, t, "edge-1", "reconnected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	if st.GetDraining() {
		t.Errorf("node connected afresh shows draining: %v", st)
	}

	// A restart under the same id: the old process (instance "old") still
	// drains and says so on its stats stream; the new one must not show it.
	again.cancel()
	cp.waitNode(ctx, t, "edge-1", "disconnected", func(s *sluicev1.NodeStatus) bool { return !s.GetConnected() })
	cp.connectAs(ctx, t, &sluicev1.Node{Id: "edge-1", Instance: "new"}, "")
	cp.waitNode(ctx, t, "edge-1", "connected as instance new", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	old := dpstats.NewReporter(16, slog.New(slog.DiscardHandler))
	old.SetInstance("old")
	octx, stopOld := context.WithCancel(ctx)
	oldDone := make(chan struct{})
	go func() { old.Run(octx, cp.conn, "edge-1"); close(oldDone) }()
	old.Record(&conntrack.ConnInfo{Listener: "public"})
	for old.Sent() == 0 { // the stream is up
		select {
		case <-ctx.Done():
			t.Fatal("the old instance's reporter sent nothing")
		case <-time.After(5 * time.Millisecond):
		}
	}
	old.Draining() // returns once the control plane confirmed the report
	stopOld()
	<-oldDone
	if st := cp.node(ctx, t, "edge-1"); !st.GetConnected() || st.GetDraining() {
		t.Errorf("after the old instance said it drains: connected=%v draining=%v, want true false", st.GetConnected(), st.GetDraining())
	}
}

func TestHealthReflectionAndHTTP(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())

	hc, err := healthpb.NewHealthClient(cp.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "sluice.v1.ConfigService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of ConfigService = %v, %v; want SERVING", hc, err)
	}

	// What `grpcurl -plaintext ADDR list` asks.
	rs, err := reflectionpb.NewServerReflectionClient(cp.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"sluice.v1.ConfigService", "sluice.v1.DiscoveryService", "sluice.v1.StatsService", "sluice.v1.CommandService", "grpc.health.v1.Health"} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection lists %v, missing %s", services, want)
		}
	}
	rs.CloseSend()

	resp, err := http.Get("http://" + cp.HTTPAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

// Stopping ends node streams with UNAVAILABLE, cuts stats streams, and
// returns promptly although neither ends by itself.
func TestServeStopsPromptly(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	cp.apply(ctx, t, snap(t, 1))
	n := cp.connect(ctx, t, "edge-1", "1")
	cp.waitNode(ctx, t, "edge-1", "connected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	stats, err := sluicev1.NewStatsServiceClient(cp.conn).Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stats.Send(&sluicev1.StatsReport{NodeId: "edge-1"})
	cmds := cp.commands(t, "edge-1", func(*sluicev1.Command) *sluicev1.CommandResult { return nil })

	start := time.Now()
	if err := cp.stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	if took := time.Since(start); took >= DefaultShutdownGrace {
		t.Errorf("stop took %v, not less than the grace period %v", took, DefaultShutdownGrace)
	}
	select {
	case err := <-n.done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("node stream ended with %v, want Unavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("node stream still open after stop")
	}
	if _, err := stats.CloseAndRecv(); err == nil {
		t.Error("stats stream still served after stop")
	}
	select {
	case err := <-cmds:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("command stream ended with %v, want Unavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("command stream still open after stop")
	}
}

// gatedRefusals is a store whose writes of refusals wait until gate is
// closed, telling holding when the first one waits.
type gatedRefusals struct {
	store.Store
	gate    chan struct{}
	holding chan struct{}
}

func (s *gatedRefusals) Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error {
	select {
	case s.holding <- struct{}{}:
	default:
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.Refused(ctx, v, r)
}

// TestStopKeepsQueuedRefusals: a stop waits, within its grace, for the
// refusal the store has not written yet, and closes the store after it:
// history lists it once the control plane starts again.
func TestStopKeepsQueuedRefusals(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	bolt, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := &gatedRefusals{Store: bolt, gate: make(chan struct{}), holding: make(chan struct{}, 1)}
	cp := startCPWith(t, Options{Store: st})
	cp.apply(ctx, t, snap(t, 1))
	n := cp.connect(ctx, t, "edge-1", "")
	const why = "listener public: listen tcp 127.0.0.1:8080: bind: address already in use"
	n.nack(n.next(ctx), "", why)
	select {
	case <-st.holding:
	case <-ctx.Done():
		t.Fatal("the refusal did not reach the store")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- cp.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a refusal still waited for the store", err)
	case <-time.After(quietPeriod):
	}
	close(st.gate)
	if err := <-stopped; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	again, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	h, err := again.History(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rs := h[0].GetRefusals(); len(rs) != 1 || rs[0].GetNode() != "edge-1" || rs[0].GetError() != why {
		t.Errorf("after the stop, version %d lists the refusals %v; want edge-1's: %s", h[0].GetVersion(), rs, why)
	}
}

func TestNewFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	cp := startCP(t, dir)
	// The store is locked by the running server.
	if _, err := New(Options{DataDir: dir}); err == nil {
		t.Error("second control plane on the same data directory started")
	}
	// The address is taken.
	if _, err := New(Options{Listen: cp.Addr().String(), DataDir: t.TempDir()}); err == nil {
		t.Error("control plane on a used address started")
	}
	if _, err := New(Options{}); err == nil {
		t.Error("control plane without a data directory started")
	}
}

// commands opens node id's Commands stream and answers each command with
// answer (nil: no answer). It returns once the stream is registered; the
// channel gets the error that ends it.
func (cp *testCP) commands(t *testing.T, id string, answer func(*sluicev1.Command) *sluicev1.CommandResult) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := sluicev1.NewCommandServiceClient(cp.conn).Commands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&sluicev1.CommandReply{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatalf("command stream of %s: %v", id, err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			cmd, err := st.Recv()
			if err != nil {
				ended <- err
				return
			}
			if res := answer(cmd); res != nil {
				res.CommandId = cmd.GetId()
				st.Send(&sluicev1.CommandReply{Result: res})
			}
		}
	}()
	return ended
}

// TestGetStats: each node's last endpoint report, filtered by node and
// cluster, with connected from the fleet; a node that went away stays,
// not connected.
func TestGetStats(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	report := func(id string, eps ...*sluicev1.EndpointStats) {
		t.Helper()
		st, err := sluicev1.NewStatsServiceClient(cp.conn).Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Send(&sluicev1.StatsReport{NodeId: id, Endpoints: &sluicev1.EndpointReport{Endpoints: eps}})
		if _, err := st.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	down := sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN
	up := sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP
	n1 := cp.connect(ctx, t, "edge-1", "")
	cp.connect(ctx, t, "edge-2", "")
	cp.waitNode(ctx, t, "edge-2", "connected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	report("edge-1", &sluicev1.EndpointStats{Cluster: "web", Endpoint: "web1", Health: down, Detail: "connection refused"},
		&sluicev1.EndpointStats{Cluster: "db", Endpoint: "db1", Health: up})
	report("edge-2", &sluicev1.EndpointStats{Cluster: "web", Endpoint: "web1", Health: up, Requests: 9})
	report("stranger", &sluicev1.EndpointStats{Cluster: "web", Endpoint: "web1", Health: up}) // not in the fleet

	show := func(req *sluicev1.GetStatsRequest) []string {
		t.Helper()
		resp, err := cp.config.GetStats(ctx, req)
		if err != nil {
			t.Fatalf("GetStats: %v", err)
		}
		var out []string
		for _, n := range resp.GetNodes() {
			if n.GetReportedAt() == nil {
				t.Errorf("%s: no reported_at", n.GetNodeId())
			}
			for _, ep := range n.GetEndpoints() {
				out = append(out, fmt.Sprintf("%s(%v) %s/%s %s", n.GetNodeId(), n.GetConnected(), ep.GetCluster(), ep.GetEndpoint(),
					strings.TrimPrefix(ep.GetHealth().String(), "ENDPOINT_HEALTH_")))
			}
		}
		return out
	}
	for _, tt := range []struct {
		req  *sluicev1.GetStatsRequest
		want []string
	}{
		{&sluicev1.GetStatsRequest{}, []string{"edge-1(true) web/web1 DOWN", "edge-1(true) db/db1 UP", "edge-2(true) web/web1 UP"}},
		{&sluicev1.GetStatsRequest{NodeId: "edge-2"}, []string{"edge-2(true) web/web1 UP"}},
		{&sluicev1.GetStatsRequest{Cluster: "db"}, []string{"edge-1(true) db/db1 UP"}},
	} {
		if got := show(tt.req); !slices.Equal(got, tt.want) {
			t.Errorf("GetStats(%v) = %v, want %v", tt.req, got, tt.want)
		}
	}
	n1.cancel()
	cp.waitNode(ctx, t, "edge-1", "disconnected", func(s *sluicev1.NodeStatus) bool { return !s.GetConnected() })
	if got, want := show(&sluicev1.GetStatsRequest{NodeId: "edge-1"}), []string{"edge-1(false) web/web1 DOWN", "edge-1(false) db/db1 UP"}; !slices.Equal(got, want) {
		t.Errorf("GetStats of a gone node = %v, want %v", got, want)
	}
}

// TestDisconnectedNodesForgotten: a node disconnected for longer than
// ForgetNodesAfter is no longer listed, nor are its stats; a connected
// one stays, however long ago it connected.
func TestDisconnectedNodesForgotten(t *testing.T) {
	ctx := testContext(t)
	// Long enough that the stats of the node just gone are still there
	// when asked for, on a loaded machine.
	cp := startCPWith(t, Options{DataDir: t.TempDir(), ForgetNodesAfter: time.Second})
	gone := cp.connect(ctx, t, "gone-1", "")
	cp.connect(ctx, t, "stays-1", "")
	cp.waitNode(ctx, t, "stays-1", "connected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	st, err := sluicev1.NewStatsServiceClient(cp.conn).Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&sluicev1.StatsReport{NodeId: "gone-1", Endpoints: &sluicev1.EndpointReport{Endpoints: []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "web1"}}}})
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	gone.cancel()
	cp.waitNode(ctx, t, "gone-1", "disconnected", func(s *sluicev1.NodeStatus) bool { return !s.GetConnected() })
	if resp, err := cp.config.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "gone-1"}); err != nil || len(resp.GetNodes()) != 1 {
		t.Fatalf("stats of the node just gone: %v, %v; want its last view", resp, err)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		resp, err := cp.config.ListNodes(ctx, &sluicev1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, n := range resp.GetNodes() {
			ids = append(ids, n.GetId())
		}
		if slices.Equal(ids, []string{"stays-1"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes listed %v long after gone-1 left; want stays-1 only", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cp.config.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: "gone-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("stats of a forgotten node: %v, want NotFound (a node the fleet does not know)", err)
	}
	if got := cp.stats.Views().List("gone-1", ""); len(got) != 0 {
		t.Errorf("the forgotten node's view is kept: %v", got)
	}
}

// TestShutdownSessions: the endpoint must be in the current snapshot; then
// every node connected for commands gets the command and its result comes
// back, and a connected node without a command stream is a failure.
func TestShutdownSessions(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())
	req := &sluicev1.ShutdownSessionsRequest{Cluster: "web", Endpoint: "web1"}
	if _, err := cp.config.ShutdownSessions(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("before any apply: %v, want FAILED_PRECONDITION", err)
	}
	cp.apply(ctx, t, snap(t, 1))
	for _, tt := range []struct {
		cluster, endpoint, want string
	}{
		{"web", "web9", `cluster "web" has no endpoint "web9" (it has: web1, web2, sorry)`},
		{"wbe", "web1", `cluster "wbe" not found, did you mean "web"?`},
	} {
		_, err := cp.config.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: tt.cluster, Endpoint: tt.endpoint})
		if status.Code(err) != codes.NotFound || status.Convert(err).Message() != tt.want {
			t.Errorf("%s/%s: %v, want NOT_FOUND %q", tt.cluster, tt.endpoint, err, tt.want)
		}
	}
	if _, err := cp.config.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: "web"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no endpoint: %v, want INVALID_ARGUMENT", err)
	}

	var asked []string
	var mu sync.Mutex
	for _, id := range []string{"edge-2", "edge-1"} {
		cp.connect(ctx, t, id, "")
		cp.commands(t, id, func(cmd *sluicev1.Command) *sluicev1.CommandResult {
			sd := cmd.GetShutdownSessions()
			mu.Lock()
			asked = append(asked, id+":"+sd.GetCluster()+"/"+sd.GetEndpoint())
			mu.Unlock()
			if id == "edge-2" {
				return &sluicev1.CommandResult{Error: `cluster "web" has no endpoint "web1"`}
			}
			return &sluicev1.CommandResult{Closed: 37}
		})
	}
	cp.connect(ctx, t, "edge-3", "") // no command stream
	cp.waitNode(ctx, t, "edge-3", "connected", func(s *sluicev1.NodeStatus) bool { return s.GetConnected() })
	resp, err := cp.config.ShutdownSessions(ctx, req)
	if err != nil {
		t.Fatalf("ShutdownSessions: %v", err)
	}
	var got []string
	for _, r := range resp.GetResults() {
		got = append(got, fmt.Sprintf("%s %d %q", r.GetNodeId(), r.GetClosed(), r.GetError()))
	}
	want := []string{`edge-1 37 ""`, `edge-2 0 "cluster \"web\" has no endpoint \"web1\""`, `edge-3 0 "connected, but not for commands"`}
	if !slices.Equal(got, want) {
		t.Errorf("results:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mu.Lock()
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"edge-1:web/web1", "edge-2:web/web1"}) {
		t.Errorf("commands received: %v", asked)
	}
	mu.Unlock()
}

// TestRefusesNonLoopbackWithoutInsecure: with no TLS or authentication, a
// control plane reachable from the network must be asked for explicitly.
func TestRefusesNonLoopbackWithoutInsecure(t *testing.T) {
	for _, tc := range []struct {
		flag string
		opts Options
	}{
		{"--listen", Options{Listen: "0.0.0.0:0", DataDir: t.TempDir()}},
		{"--http", Options{HTTP: "0.0.0.0:0", DataDir: t.TempDir()}},
	} {
		cp, err := New(tc.opts)
		if err == nil {
			cp.Close()
			t.Errorf("%s 0.0.0.0:0 without Insecure: started; want it refused", tc.flag)
			continue
		}
		want := tc.flag + " 0.0.0.0:0 is not a loopback address"
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("%s: %v; want it to say %q and name --insecure", tc.flag, err, want)
		}
		// Refused, it made no store: the next try starts as the first.
		if files, _ := os.ReadDir(tc.opts.DataDir); len(files) != 0 {
			t.Errorf("%s refused, the data directory holds %v; want nothing", tc.flag, files)
		}
	}
}

// TestStopRightAfterStart: a control plane told to stop as soon as it
// starts (a SIGTERM right after its "listening" line) stops cleanly:
// Serve returns nil, not the error gRPC gives a server stopped before it
// served.
func TestStopRightAfterStart(t *testing.T) {
	for i := range 20 {
		cp, err := New(Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := cp.Serve(ctx); err != nil {
			t.Fatalf("start %d: Serve after an immediate stop = %v, want nil", i, err)
		}
	}
}
