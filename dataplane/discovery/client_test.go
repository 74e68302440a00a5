package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const testTimeout = 5 * time.Second

// fakeCP is a discovery server driven by the test through channels: each
// stream's requests come out of reqs, and what is put into resps is sent.
type fakeCP struct {
	sluicev1.UnimplementedDiscoveryServiceServer
	reqs  chan *sluicev1.DiscoveryRequest
	resps chan *sluicev1.DiscoveryResponse
	kill  chan struct{} // closing ends the current stream
}

func (f *fakeCP) StreamSnapshots(st grpc.BidiStreamingServer[sluicev1.DiscoveryRequest, sluicev1.DiscoveryResponse]) error {
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			f.reqs <- req
		}
	}()
	for {
		select {
		case r := <-f.resps:
			if err := st.Send(r); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-f.kill:
			return errors.New("killed by test")
		}
	}
}

// fakeNode applies everything but version "bad".
type fakeNode struct {
	mu      sync.Mutex
	version string
}

func (n *fakeNode) Apply(v string, _ *sluicev1.Snapshot) error {
	if v == "bad" {
		return errors.New("listener l: address already in use")
	}
	n.mu.Lock()
	n.version = v
	n.mu.Unlock()
	return nil
}

func (n *fakeNode) Version() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version
}

func recv(t *testing.T, ch chan *sluicev1.DiscoveryRequest) *sluicev1.DiscoveryRequest {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testTimeout):
		t.Fatal("no request from the client")
		return nil
	}
}

func TestClientAckNackReconnect(t *testing.T) {
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterDiscoveryServiceServer(srv, f)
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	node := &fakeNode{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := &Client{Conn: conn, Node: &sluicev1.Node{Id: "n1"}, Applier: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if r := recv(t, f.reqs); r.GetNode().GetId() != "n1" || r.GetVersionInfo() != "" || r.GetResponseNonce() != "" {
		t.Fatalf("first message = %v, want node n1, no version, no nonce", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "1", Nonce: "a"}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "1" || r.GetResponseNonce() != "a" || r.GetErrorDetail() != "" {
		t.Errorf("ACK = %v, want version 1, nonce a, no error", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "bad", Nonce: "b"}
	r := recv(t, f.reqs)
	if r.GetVersionInfo() != "1" || r.GetResponseNonce() != "b" || r.GetErrorDetail() != "listener l: address already in use" {
		t.Errorf("NACK = %v, want last good version 1, nonce b and the node's reason", r)
	}

	close(f.kill) // the stream breaks; the client comes back with its version
	r = recv(t, f.reqs)
	if r.GetNode().GetId() != "n1" || r.GetVersionInfo() != "1" {
		t.Errorf("after reconnect = %v, want node n1 running version 1", r)
	}
}
