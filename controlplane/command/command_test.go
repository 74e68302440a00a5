package command

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 10 * time.Second

// serve runs r on a loopback gRPC server and returns a connection to it.
func serve(t *testing.T, r *Registry) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterCommandServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// node is a fake node on a Commands stream. answer returns the result of
// each command, or nil to leave it unanswered; ended receives the error
// that ends the stream.
type node struct {
	cancel context.CancelFunc
	ended  chan error
}

func connect(t *testing.T, conn *grpc.ClientConn, id string, answer func(*sluicev1.Command) *sluicev1.CommandResult) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := sluicev1.NewCommandServiceClient(conn).Commands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&sluicev1.CommandReply{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil { // registered
		t.Fatalf("node %s: %v", id, err)
	}
	n := &node{cancel: cancel, ended: make(chan error, 1)}
	go func() {
		for {
			cmd, err := st.Recv()
			if err != nil {
				n.ended <- err
				return
			}
			if res := answer(cmd); res != nil {
				res.CommandId = cmd.GetId()
				st.Send(&sluicev1.CommandReply{Result: res})
			}
		}
	}()
	return n
}

func shutdown(cmd *sluicev1.Command) {
	cmd.Action = &sluicev1.Command_ShutdownSessions{ShutdownSessions: &sluicev1.ShutdownSessionsCommand{Cluster: "web", Endpoint: "a"}}
}

func run(t *testing.T, r *Registry) []*sluicev1.CommandResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	return r.Run(ctx, shutdown)
}

// TestRunReachesEveryNode: every node gets the command once and its result
// comes back under its id, sorted; a node's error is its result.
func TestRunReachesEveryNode(t *testing.T) {
	r := NewRegistry(nil)
	conn := serve(t, r)
	var got atomic.Int32
	connect(t, conn, "node-2", func(cmd *sluicev1.Command) *sluicev1.CommandResult {
		got.Add(1)
		return &sluicev1.CommandResult{Error: `cluster "web" has no endpoint "a"`}
	})
	connect(t, conn, "node-1", func(cmd *sluicev1.Command) *sluicev1.CommandResult {
		got.Add(1)
		if sd := cmd.GetShutdownSessions(); sd.GetCluster() != "web" || sd.GetEndpoint() != "a" {
			return &sluicev1.CommandResult{Error: "unexpected command " + cmd.String()}
		}
		return &sluicev1.CommandResult{Closed: 37}
	})
	if ids := r.Nodes(); strings.Join(ids, ",") != "node-1,node-2" {
		t.Fatalf("Nodes = %v, want node-1, node-2", ids)
	}
	res := run(t, r)
	if len(res) != 2 {
		t.Fatalf("%d results, want 2: %v", len(res), res)
	}
	if res[0].GetNodeId() != "node-1" || res[0].GetClosed() != 37 || res[0].GetError() != "" {
		t.Errorf("node-1: %v, want 37 closed", res[0])
	}
	if res[1].GetNodeId() != "node-2" || res[1].GetError() != `cluster "web" has no endpoint "a"` {
		t.Errorf("node-2: %v, want its error", res[1])
	}
	if res[0].GetCommandId() == "" || res[0].GetCommandId() == res[1].GetCommandId() {
		t.Errorf("command ids %q and %q, want distinct", res[0].GetCommandId(), res[1].GetCommandId())
	}
	if got.Load() != 2 {
		t.Errorf("nodes got %d commands, want 2", got.Load())
	}
}

// TestRunToSomeNodes: a command that names nodes goes to those alone, and
// they get it without the names (nodes are never sent them).
func TestRunToSomeNodes(t *testing.T) {
	r := NewRegistry(nil)
	conn := serve(t, r)
	got := map[string]chan *sluicev1.Command{}
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		got[id] = make(chan *sluicev1.Command, 1)
		connect(t, conn, id, func(cmd *sluicev1.Command) *sluicev1.CommandResult {
			got[id] <- cmd
			return &sluicev1.CommandResult{Closed: 1}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	res := r.Run(ctx, func(cmd *sluicev1.Command) {
		shutdown(cmd)
		cmd.Nodes = []string{"node-3", "node-1", "elsewhere"}
	})
	var ids []string
	for _, x := range res {
		ids = append(ids, x.GetNodeId())
	}
	if strings.Join(ids, ",") != "node-1,node-3" {
		t.Errorf("results of %v, want node-1 and node-3", ids)
	}
	for id, ch := range got {
		select {
		case cmd := <-ch:
			if id == "node-2" || len(cmd.GetNodes()) > 0 || cmd.GetShutdownSessions().GetEndpoint() != "a" {
				t.Errorf("%s got %v", id, cmd)
			}
		default:
			if id != "node-2" {
				t.Errorf("%s got no command", id)
			}
		}
	}
}

// TestRunBounded: a node that never answers gets an error result at the
// timeout, one whose stream breaks gets one at once, and the others their
// results; Run returns either way.
func TestRunBounded(t *testing.T) {
	r := NewRegistry(nil)
	r.timeout = 1500 * time.Millisecond // ok must answer within it, on a busy machine too
	conn := serve(t, r)
	connect(t, conn, "silent", func(*sluicev1.Command) *sluicev1.CommandResult { return nil })
	var breaker *node
	breaker = connect(t, conn, "breaks", func(*sluicev1.Command) *sluicev1.CommandResult {
		breaker.cancel()
		return nil
	})
	connect(t, conn, "ok", func(*sluicev1.Command) *sluicev1.CommandResult { return &sluicev1.CommandResult{Closed: 1} })
	res := run(t, r)
	want := map[string]string{"breaks": "ended before it answered", "ok": "", "silent": "no reply within 1.5s"}
	if len(res) != len(want) {
		t.Fatalf("results %v, want one per node", res)
	}
	for _, x := range res {
		w := want[x.GetNodeId()]
		if w == "" && x.GetError() != "" || !strings.Contains(x.GetError(), w) {
			t.Errorf("%s: error %q, want %q", x.GetNodeId(), x.GetError(), w)
		}
	}
	// The silent node's command is no longer awaited: its late answer, or
	// a later command, finds the registry as it should.
	waitGone(t, r, "breaks")
	if res := run(t, r); len(res) != 2 || res[0].GetClosed() != 1 {
		t.Errorf("next run: %v, want ok and silent", res)
	}
}

func waitGone(t *testing.T, r *Registry, id string) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for strings.Contains(strings.Join(r.Nodes(), ","), id) {
		if time.Now().After(deadline) {
			t.Fatalf("node %s still registered", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNewerStreamReplaces: a node that reconnects gets commands on its new
// stream only; the old one is ended.
func TestNewerStreamReplaces(t *testing.T) {
	r := NewRegistry(nil)
	conn := serve(t, r)
	var oldGot, newGot atomic.Int32
	old := connect(t, conn, "n", func(*sluicev1.Command) *sluicev1.CommandResult {
		oldGot.Add(1)
		return &sluicev1.CommandResult{Closed: 1}
	})
	connect(t, conn, "n", func(*sluicev1.Command) *sluicev1.CommandResult {
		newGot.Add(1)
		return &sluicev1.CommandResult{Closed: 2}
	})
	select {
	case err := <-old.ended:
		if status.Code(err) != codes.Aborted {
			t.Errorf("old stream ended with %v, want ABORTED", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("old stream still open")
	}
	if res := run(t, r); len(res) != 1 || res[0].GetClosed() != 2 || oldGot.Load() != 0 {
		t.Errorf("results %v (old stream got %d commands), want the new stream's only", res, oldGot.Load())
	}
}

// TestCloseEndsStreams: Close ends every stream with UNAVAILABLE, so the
// nodes reconnect elsewhere, and refuses new ones; Run then has nobody.
func TestCloseEndsStreams(t *testing.T) {
	r := NewRegistry(nil)
	conn := serve(t, r)
	n := connect(t, conn, "n", func(*sluicev1.Command) *sluicev1.CommandResult { return nil })
	r.Close()
	select {
	case err := <-n.ended:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stream ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("stream still open after Close")
	}
	waitGone(t, r, "n")
	st, err := sluicev1.NewCommandServiceClient(conn).Commands(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&sluicev1.CommandReply{NodeId: "late"})
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("a stream opened after Close: %v, want UNAVAILABLE", err)
	}
	if res := run(t, r); len(res) != 0 {
		t.Errorf("results after Close: %v", res)
	}
}

// TestFirstMessageNamesTheNode: a stream that does not say which node it is
// is refused.
func TestFirstMessageNamesTheNode(t *testing.T) {
	conn := serve(t, NewRegistry(nil))
	st, err := sluicev1.NewCommandServiceClient(conn).Commands(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&sluicev1.CommandReply{})
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node_id") {
		t.Errorf("stream without node_id: %v, want INVALID_ARGUMENT naming node_id", err)
	}
}
