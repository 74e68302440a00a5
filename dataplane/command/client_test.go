package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 10 * time.Second

// fakeCP is a control plane's CommandService: each stream it accepts is
// handed to the test, which sends commands and reads replies on it.
type fakeCP struct {
	sluicev1.UnimplementedCommandServiceServer
	streams chan *cpStream
}

type cpStream struct {
	node    string
	st      grpc.BidiStreamingServer[sluicev1.CommandReply, sluicev1.Command]
	replies chan *sluicev1.CommandReply
	end     chan error // the test ends the stream with this error
}

func (f *fakeCP) Commands(st grpc.BidiStreamingServer[sluicev1.CommandReply, sluicev1.Command]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if err := st.SendHeader(nil); err != nil {
		return err
	}
	s := &cpStream{node: first.GetNodeId(), st: st, replies: make(chan *sluicev1.CommandReply, 16), end: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			s.replies <- r
		}
	}()
	f.streams <- s
	select {
	case err := <-s.end:
		return err
	case <-st.Context().Done():
		return nil
	}
}

// nextStream waits for the node to open a stream.
func (f *fakeCP) nextStream(t *testing.T) *cpStream {
	t.Helper()
	select {
	case s := <-f.streams:
		return s
	case <-time.After(defaultTestTimeout):
		t.Fatal("the node opened no command stream")
		return nil
	}
}

// do sends a shutdown command and returns the node's result.
func (s *cpStream) do(t *testing.T, id, cluster, endpoint string) *sluicev1.CommandResult {
	t.Helper()
	cmd := &sluicev1.Command{Id: id, Action: &sluicev1.Command_ShutdownSessions{
		ShutdownSessions: &sluicev1.ShutdownSessionsCommand{Cluster: cluster, Endpoint: endpoint}}}
	if err := s.st.Send(cmd); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-s.replies:
		return r.GetResult()
	case <-time.After(defaultTestTimeout):
		t.Fatal("no reply")
		return nil
	}
}

// fakeNode has one endpoint, web/a, with open connections.
type fakeNode struct {
	mu    sync.Mutex
	calls []string
}

func (n *fakeNode) ShutdownSessions(cluster, endpoint string) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, cluster+"/"+endpoint)
	if cluster != "web" || endpoint != "a" {
		return 0, fmt.Errorf("node: cluster %q has no endpoint %q", cluster, endpoint)
	}
	return 3, nil
}

// serve serves what reg registers on loopback and returns a connection
// to it; both end with the test.
func serve(t *testing.T, reg func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	reg(srv)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func start(t *testing.T) (*fakeCP, *fakeNode) {
	t.Helper()
	cp := &fakeCP{streams: make(chan *cpStream, 4)}
	conn := serve(t, func(s *grpc.Server) { sluicev1.RegisterCommandServiceServer(s, cp) })
	n := &fakeNode{}
	c := &Client{Conn: conn, NodeID: "node-1", Node: n, Logger: slog.New(slog.DiscardHandler),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Error("Run did not return")
		}
	})
	return cp, n
}

// TestCommandsRunOnTheNode: the stream names the node, each command runs
// on it once and its result, success or error, comes back under its id.
func TestCommandsRunOnTheNode(t *testing.T) {
	cp, n := start(t)
	s := cp.nextStream(t)
	if s.node != "node-1" {
		t.Errorf("stream names node %q, want node-1", s.node)
	}
	if r := s.do(t, "1", "web", "a"); r.GetCommandId() != "1" || r.GetClosed() != 3 || r.GetError() != "" {
		t.Errorf("result %v, want id 1, 3 closed", r)
	}
	if r := s.do(t, "2", "web", "x"); r.GetCommandId() != "2" || r.GetError() != `node: cluster "web" has no endpoint "x"` {
		t.Errorf("result %v, want id 2 and the node's error", r)
	}
	// A command this node does not know is an error, not a crash.
	if err := s.st.Send(&sluicev1.Command{Id: "3"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-s.replies:
		if r.GetResult().GetCommandId() != "3" || !strings.Contains(r.GetResult().GetError(), "does not know the command") {
			t.Errorf("unknown command: %v", r)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("no reply to an unknown command")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if strings.Join(n.calls, ",") != "web/a,web/x" {
		t.Errorf("node ran %v, want web/a, web/x", n.calls)
	}
}

// TestCommandsReconnect: a stream the control plane ends is opened again,
// and commands work on the new one.
func TestCommandsReconnect(t *testing.T) {
	cp, _ := start(t)
	s := cp.nextStream(t)
	s.end <- status.Error(codes.Unavailable, "control plane restarting")
	s = cp.nextStream(t)
	if r := s.do(t, "1", "web", "a"); r.GetClosed() != 3 {
		t.Errorf("result on the new stream %v, want 3 closed", r)
	}
}

func TestFailedTruncatesLongErrors(t *testing.T) {
	long := strings.Repeat("é", maxError) // 2 bytes each
	r := failed(errors.New(long))
	if len(r.GetError()) > maxError || !strings.HasPrefix(long, r.GetError()) || r.Validate() != nil {
		t.Errorf("error of %d bytes kept as %d bytes, valid %v", len(long), len(r.GetError()), r.Validate())
	}
	// Invalid bytes before the cut: replaced, and the text still ends at
	// the cut, not at the first of them.
	bad := "x\xff" + long
	r = failed(errors.New(bad))
	if got := r.GetError(); len(got) < maxError-1 || !strings.HasPrefix(got, "x\uFFFDéé") || r.Validate() != nil || proto.Size(r) == 0 {
		t.Errorf("error with an invalid byte kept as %d bytes %.20q, valid %v", len(got), got, r.Validate())
	}
	if _, err := proto.Marshal(failed(errors.New("short \xff"))); err != nil {
		t.Errorf("a short error with an invalid byte cannot be sent: %v", err)
	}
}

// TestStreamEndedBeforeRegisteringIsNoProgress: a control plane that ends
// the stream before registering it (one that predates the command
// service, or one shutting down) did not answer, whatever its status: the
// reconnect backoff must grow rather than restart from its minimum, or the
// node retries every few hundred milliseconds for as long as it lasts.
func TestStreamEndedBeforeRegisteringIsNoProgress(t *testing.T) {
	for _, tt := range []struct {
		name string
		reg  func(*grpc.Server)
		code codes.Code
	}{
		{"no command service", func(*grpc.Server) {}, codes.Unimplemented},
		{"shutting down", func(s *grpc.Server) {
			sluicev1.RegisterCommandServiceServer(s, refusingCP{err: status.Error(codes.Unavailable, "command: control plane shutting down")})
		}, codes.Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := serve(t, tt.reg)
			c := &Client{Conn: conn, NodeID: "node-1", Node: &fakeNode{}, Logger: slog.New(slog.DiscardHandler)}
			ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
			defer cancel()
			progressed, err := c.stream(ctx)
			if status.Code(err) != tt.code {
				t.Fatalf("stream ended with %v, want %v", err, tt.code)
			}
			if progressed {
				t.Error("a stream the control plane never registered reset the reconnect backoff")
			}
		})
	}
}

// refusingCP ends every command stream with err before sending headers.
type refusingCP struct {
	sluicev1.UnimplementedCommandServiceServer
	err error
}

func (r refusingCP) Commands(st grpc.BidiStreamingServer[sluicev1.CommandReply, sluicev1.Command]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	return r.err
}
