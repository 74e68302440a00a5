package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 20 * time.Second

// quietPeriod is how long a test waits to see that nothing more arrives.
const quietPeriod = 300 * time.Millisecond

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testServer is a discovery server on a real gRPC server on loopback.
type testServer struct {
	disc  *Server
	fleet *fleet.Registry
	conn  *grpc.ClientConn
	addr  string
}

// startServer starts a server, after setup (KeepRefusals, say).
func startServer(t testing.TB, setup ...func(*Server)) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := fleet.NewRegistry()
	var log *slog.Logger // SLUICE_TEST_LOG=1 prints warnings (NACKs)
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	disc := New(reg, nil, log)
	for _, fn := range setup {
		fn(disc)
	}
	gs := grpc.NewServer(ServerOption())
	sluicev1.RegisterDiscoveryServiceServer(gs, disc)
	go gs.Serve(lis)
	t.Cleanup(func() {
		disc.Close()
		gs.Stop()
		disc.FlushRefusals(context.Background())
	})
	ts := &testServer{disc: disc, fleet: reg, addr: lis.Addr().String()}
	ts.conn = dial(t, ts.addr)
	return ts
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testNode is a dataplane node's stream driven by a test: responses arrive on
// a channel, the stream's end on another.
type testNode struct {
	t      testing.TB
	id     string
	stream grpc.BidiStreamingClient[sluicev1.DiscoveryRequest, sluicev1.DiscoveryResponse]
	resps  chan *sluicev1.DiscoveryResponse
	done   chan error
	cancel context.CancelFunc
}

// connect opens a stream for node id on conn, announcing running.
func connect(ctx context.Context, t testing.TB, conn *grpc.ClientConn, id, running string) *testNode {
	t.Helper()
	n := openStream(ctx, t, conn, id)
	n.send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id, BuildVersion: "test"}, VersionInfo: running})
	return n
}

func openStream(ctx context.Context, t testing.TB, conn *grpc.ClientConn, id string) *testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	stream, err := sluicev1.NewDiscoveryServiceClient(conn).StreamSnapshots(ctx)
	if err != nil {
		cancel()
		t.Fatalf("StreamSnapshots: %v", err)
	}
	n := &testNode{t: t, id: id, stream: stream, resps: make(chan *sluicev1.DiscoveryResponse, 16), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
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
	return n
}

func (n *testNode) send(req *sluicev1.DiscoveryRequest) {
	n.t.Helper()
	if err := n.stream.Send(req); err != nil {
		n.t.Fatalf("node %s: Send: %v", n.id, err)
	}
}

// next waits for the next response.
func (n *testNode) next(ctx context.Context) *sluicev1.DiscoveryResponse {
	n.t.Helper()
	select {
	case r := <-n.resps:
		return r
	case err := <-n.done:
		n.t.Fatalf("node %s: stream ended while waiting for a response: %v", n.id, err)
	case <-ctx.Done():
		n.t.Fatalf("node %s: no response: %v", n.id, ctx.Err())
	}
	return nil
}

// expectNothing asserts that no response arrives for quietPeriod.
func (n *testNode) expectNothing() {
	n.t.Helper()
	select {
	case r := <-n.resps:
		n.t.Fatalf("node %s: unexpected response version %s nonce %s", n.id, r.GetVersionInfo(), r.GetNonce())
	case err := <-n.done:
		n.t.Fatalf("node %s: stream ended: %v", n.id, err)
	case <-time.After(quietPeriod):
	}
}

// ended waits for the stream's end and returns its error.
func (n *testNode) ended(ctx context.Context) error {
	n.t.Helper()
	select {
	case err := <-n.done:
		return err
	case <-ctx.Done():
		n.t.Fatalf("node %s: stream did not end: %v", n.id, ctx.Err())
	}
	return nil
}

func (n *testNode) ack(r *sluicev1.DiscoveryResponse) {
	n.send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
}

func (n *testNode) nack(r *sluicev1.DiscoveryResponse, running, detail string) {
	n.send(&sluicev1.DiscoveryRequest{VersionInfo: running, ResponseNonce: r.GetNonce(), ErrorDetail: detail})
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// waitNode waits until node id's status satisfies cond.
func waitNode(ctx context.Context, t testing.TB, reg *fleet.Registry, id string, what string, cond func(*sluicev1.NodeStatus) bool) *sluicev1.NodeStatus {
	t.Helper()
	var st *sluicev1.NodeStatus
	waitFor(ctx, t, fmt.Sprintf("node %s: %s", id, what), func() bool {
		var ok bool
		st, ok = reg.Node(id)
		return ok && cond(st)
	})
	return st
}

// testSnapshot returns a snapshot of n clusters of endpoints endpoints each,
// one listener per cluster; seed varies the weights.
func testSnapshot(clusters, endpoints int, seed uint32) *sluicev1.Snapshot {
	s := &sluicev1.Snapshot{}
	for c := range clusters {
		cl := &sluicev1.Cluster{Name: fmt.Sprintf("cluster-%d", c), LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN}
		for e := range endpoints {
			cl.Endpoints = append(cl.Endpoints, &sluicev1.Endpoint{
				Name:    fmt.Sprintf("ep-%d", e),
				Address: fmt.Sprintf("10.%d.%d.%d:8080", c/256, c%256, e%256),
				Weight:  proto.Uint32((seed+uint32(e))%256 + 1),
			})
		}
		s.Clusters = append(s.Clusters, cl)
		s.Listeners = append(s.Listeners, &sluicev1.Listener{
			Name:           fmt.Sprintf("l-%d", c),
			Address:        fmt.Sprintf("127.0.0.1:%d", 10000+c),
			Protocol:       sluicev1.Protocol_PROTOCOL_HTTP,
			DefaultCluster: cl.Name,
		})
	}
	return s
}
