package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-lb/sluice/internal/poll"
	"github.com/sluice-lb/sluice/internal/syncbuf"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	conn := dialCP(t, f)

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

// endingCP takes a subscription (sends headers, as the control plane does
// once it has registered the node) or not, sends nothing, as to a node
// that runs the current version, and ends the stream with err.
type endingCP struct {
	sluicev1.UnimplementedDiscoveryServiceServer
	accept bool
	err    error
}

func (e endingCP) StreamSnapshots(st grpc.BidiStreamingServer[sluicev1.DiscoveryRequest, sluicev1.DiscoveryResponse]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	if e.accept {
		if err := st.SendHeader(nil); err != nil {
			return err
		}
	}
	return e.err
}

// TestAcceptedSubscriptionIsProgress: a node that runs the current version
// gets no response on its stream, which may last for days. When the control
// plane then restarts, the stream counts as progress, so that the node
// reconnects within the shortest backoff rather than after a ceiling grown
// by some outage long before (up to MaxBackoff without its config). A
// subscription refused at once does not count.
func TestAcceptedSubscriptionIsProgress(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cp     endingCP
		want   bool
		wantIs string
	}{
		{"accepted, then the control plane restarts", endingCP{accept: true, err: status.Error(codes.Unavailable, "shutting down")}, true, "shutting down"},
		{"refused", endingCP{err: status.Error(codes.InvalidArgument, "bad node")}, false, "bad node"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{Conn: dialCP(t, tt.cp), Node: &sluicev1.Node{Id: "n1"}, Applier: &fakeNode{version: "3"}, Logger: slog.New(slog.DiscardHandler)}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			progressed, err := c.stream(ctx)
			if status.Convert(err).Message() != tt.wantIs {
				t.Fatalf("stream ended with %v, want %q", err, tt.wantIs)
			}
			if progressed != tt.want {
				t.Errorf("progressed = %v, want %v", progressed, tt.want)
			}
		})
	}
}

// heldNode refuses the version refuse while it is held, as a node
// refuses a listener whose port another process still holds, and counts
// the tries of that version.
type heldNode struct {
	fakeNode
	refuse atomic.Pointer[string]
	held   atomic.Bool
	tries  atomic.Int32
}

func (n *heldNode) Apply(v string, s *sluicev1.Snapshot) error {
	if v == *n.refuse.Load() {
		n.tries.Add(1)
		if n.held.Load() {
			return errors.New("listener l: address already in use")
		}
	}
	return n.fakeNode.Apply(v, s)
}

// TestRefusedSnapshotTriedAgain: a snapshot the node refused is tried
// again, with a growing wait, until it applies; then the node subscribes
// again saying the version it runs, which is how the control plane, that
// took the NACK, learns of it. A newer snapshot ends the tries.
func TestRefusedSnapshotTriedAgain(t *testing.T) {
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	node := &heldNode{}
	node.refuse.Store(ptr("2"))
	node.held.Store(true)
	c := &Client{Conn: dialCP(t, f), Node: &sluicev1.Node{Id: "n1"}, Applier: node, Logger: slog.New(slog.DiscardHandler),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	recv(t, f.reqs) // the subscription
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "1", Nonce: "a"}
	recv(t, f.reqs)
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "2", Nonce: "b"}
	if r := recv(t, f.reqs); r.GetErrorDetail() == "" || r.GetVersionInfo() != "1" {
		t.Fatalf("answer to version 2 = %v, want a NACK running version 1", r)
	}
	deadline := time.Now().Add(testTimeout)
	for node.tries.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := node.tries.Load(); n < 4 {
		t.Fatalf("version 2 tried %d times, want it tried again", n)
	}
	node.held.Store(false) // the port is free
	if r := recv(t, f.reqs); r.GetNode().GetId() != "n1" || r.GetVersionInfo() != "2" || r.GetResponseNonce() != "" {
		t.Fatalf("after version 2 applied = %v, want a new subscription of n1 running version 2", r)
	}
	if v := node.Version(); v != "2" {
		t.Errorf("node runs %q, want 2", v)
	}

	// Refused, then replaced by a newer snapshot: no more tries.
	node.refuse.Store(ptr("3"))
	node.held.Store(true)
	node.tries.Store(0)
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "3", Nonce: "c"}
	if r := recv(t, f.reqs); r.GetErrorDetail() == "" || r.GetVersionInfo() != "2" {
		t.Fatalf("answer to version 3 = %v, want a NACK running version 2", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "4", Nonce: "d"}
	if r := recv(t, f.reqs); r.GetErrorDetail() != "" || r.GetVersionInfo() != "4" {
		t.Fatalf("answer to version 4 = %v, want an ACK", r)
	}
	tries := node.tries.Load()
	time.Sleep(200 * time.Millisecond) // five times RetryMax
	if n := node.tries.Load(); n != tries {
		t.Errorf("version 3 tried %d more times after version 4 applied", n-tries)
	}
}

func ptr[T any](v T) *T { return &v }

// drainingNode refuses every snapshot, as a node does while it shuts down.
type drainingNode struct {
	fakeNode
	tries atomic.Int32
}

func (n *drainingNode) Apply(string, *sluicev1.Snapshot) error {
	n.tries.Add(1)
	return errors.New("node is shutting down")
}

func (n *drainingNode) Draining() bool { return true }

// TestDrainingRefusalIsNoError: a draining node NACKs what it is sent, but
// logs it as the expected step of a shutdown it is (not an ERROR a rolling
// restart would raise on every node), and does not try it again.
func TestDrainingRefusalIsNoError(t *testing.T) {
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	node := &drainingNode{}
	var logged syncbuf.Buffer
	c := &Client{Conn: dialCP(t, f), Node: &sluicev1.Node{Id: "n1"}, Applier: node, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	recv(t, f.reqs)
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "7", Nonce: "a"}
	if r := recv(t, f.reqs); r.GetErrorDetail() != "node is shutting down" {
		t.Fatalf("answer to version 7 = %v, want a NACK saying the node shuts down", r)
	}
	time.Sleep(200 * time.Millisecond) // five times RetryMax
	if n := node.tries.Load(); n != 1 {
		t.Errorf("version 7 tried %d times, want once", n)
	}
	out := logged.String()
	if !strings.Contains(out, `level=INFO msg="snapshot refused while draining" version=7`) || strings.Contains(out, "level=ERROR") || strings.Contains(out, "try the refused snapshot again") {
		t.Errorf("log:\n%s\nwant one INFO line for the refusal, no ERROR, no retry", out)
	}
}

// TestStatus: the status says whether the control plane holds the
// subscription, since when, and why not; and which version the node
// refused, why and since when, until one applies; /metrics counts the
// refusal and shows the subscription.
func TestStatus(t *testing.T) {
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	conn := dialCP(t, f)
	c := &Client{Conn: conn, Node: &sluicev1.Node{Id: "n1"}, Applier: &fakeNode{}, Logger: slog.New(slog.DiscardHandler), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := time.Now()
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitStatus := func(what string, cond func(Status) bool) Status {
		t.Helper()
		var s Status
		poll.Until(t, testTimeout, time.Millisecond, what, func() bool { s = c.Status(); return cond(s) })
		return s
	}
	recv(t, f.reqs)
	if s := c.Status(); s.Connected || s.Since.Before(started) {
		t.Errorf("before the control plane's first answer: %+v, want not connected, since the start", s)
	}
	// fakeCP sends its headers, which take the subscription, with its
	// first response.
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "1", Nonce: "a"}
	recv(t, f.reqs)
	s := waitStatus("the subscription to be taken", func(s Status) bool { return s.Connected })
	if s.Since.Before(started) || s.Error != "" || s.Refused != "" {
		t.Errorf("subscribed: %+v, want connected since the start, no error, nothing refused", s)
	}
	beforeBad := time.Now()
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "bad", Nonce: "b"}
	recv(t, f.reqs)
	s = c.Status()
	if s.Refused != "bad" || s.RefusedError != "listener l: address already in use" || s.RefusedAt.Before(beforeBad) || !s.Connected {
		t.Errorf("after the NACK: %+v, want version bad refused since then, with the node's reason, still connected", s)
	}
	if got := metricValue(t, c, "sluice_discovery_refused_total"); got != 1 {
		t.Errorf("sluice_discovery_refused_total = %v, want 1", got)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "2", Nonce: "c"}
	recv(t, f.reqs)
	if s = c.Status(); s.Refused != "" || s.RefusedError != "" || !s.RefusedAt.IsZero() {
		t.Errorf("after version 2 applied: %+v, want no refusal", s)
	}
	if got := metricValue(t, c, "sluice_discovery_connected"); got != 1 {
		t.Errorf("sluice_discovery_connected = %v while subscribed, want 1", got)
	}

	// The stream breaks and the control plane is gone: the status says
	// why, from when, until the client is back.
	beforeKill := time.Now()
	f.kill <- struct{}{}
	s = waitStatus("the end of the subscription", func(s Status) bool { return !s.Connected })
	if !strings.Contains(s.Error, "killed by test") || s.Since.Before(beforeKill) {
		t.Errorf("after the stream ended: %+v, want not connected since then, with the control plane's error", s)
	}
	recv(t, f.reqs)
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "3", Nonce: "d"}
	recv(t, f.reqs)
	waitStatus("the subscription to be taken again", func(s Status) bool { return s.Connected && s.Error == "" })
}

// metricValue is the value of the one sample of name that c's collector
// gives.
func metricValue(t *testing.T, c *Client, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s among the collector's metrics", name)
	return 0
}

// TestPlacement: the client asks for placements, records and logs each one
// it is told, and answers none of them; snapshots around them are answered
// as ever.
func TestPlacement(t *testing.T) {
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	conn := dialCP(t, f)
	log := &syncbuf.Buffer{}
	c := &Client{Conn: conn, Node: &sluicev1.Node{Id: "n1", Labels: map[string]string{"role": "web"}}, Applier: &fakeNode{},
		Logger: slog.New(slog.NewTextHandler(log, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	defer stop()

	if r := recv(t, f.reqs); !r.GetAcceptPlacement() {
		t.Errorf("first message = %v, want accept_placement", r)
	}
	const problem = "no group's selector matches its labels; the groups are edge (role=edge)"
	f.resps <- &sluicev1.DiscoveryResponse{Placement: &sluicev1.Placement{Problem: problem}}
	poll.Until(t, testTimeout, time.Millisecond, "the node to be in no group", func() bool { return c.Status().Unplaced == problem })
	// Answered: the snapshot, not the placement before it.
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "1", Nonce: "a"}
	if r := recv(t, f.reqs); r.GetResponseNonce() != "a" || r.GetVersionInfo() != "1" {
		t.Errorf("the answer after a placement and a snapshot = %v, want the ACK of nonce a", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{Placement: &sluicev1.Placement{Group: "edge"}}
	s := Status{}
	poll.Until(t, testTimeout, time.Millisecond, "the node to be in group edge", func() bool { s = c.Status(); return s.Group == "edge" })
	if s.Unplaced != "" {
		t.Errorf("placed in edge, status still says why it is in none: %q", s.Unplaced)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "2", Nonce: "b"}
	if r := recv(t, f.reqs); r.GetResponseNonce() != "b" {
		t.Errorf("the answer after the second placement = %v, want the ACK of nonce b", r)
	}
	stop()
	for _, want := range []string{
		`level=WARN msg="the control plane puts this node in no group, and sends it no snapshot until its labels or the groups change; the node serves the version it runs" node=n1 labels="role=web" problem="` + problem + `" version=none`,
		`level=INFO msg="the control plane puts this node in a group again" node=n1 group=edge was="no group's selector`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, log.String())
		}
	}
}
