package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A generated client decodes the pre-encoded responses into exactly what was
// published.
func TestWireFormatDecodesWithGeneratedClient(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	for i, snap := range []*sluicev1.Snapshot{
		testSnapshot(3, 4, 1),
		{}, // the empty snapshot is still a present snapshot field
		testSnapshot(200, 50, 7),
	} {
		version := uint64(i + 1)
		if err := ts.disc.Publish(version, snap); err != nil {
			t.Fatal(err)
		}
		n := connect(ctx, t, ts.conn, fmt.Sprintf("node-%d", i), "")
		r := n.next(ctx)
		if r.GetVersionInfo() != fmt.Sprint(version) || r.GetNonce() != "1" {
			t.Errorf("version_info, nonce = %q, %q; want %q, %q", r.GetVersionInfo(), r.GetNonce(), fmt.Sprint(version), "1")
		}
		if r.Snapshot == nil {
			t.Errorf("version %d: snapshot field absent", version)
		}
		if !proto.Equal(r.GetSnapshot(), snap) {
			t.Errorf("version %d: decoded snapshot differs from the published one", version)
		}
		// The bytes are those the standard codec would produce.
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&sluicev1.DiscoveryResponse{VersionInfo: fmt.Sprint(version), Nonce: "1", Snapshot: snap})
		got := append(encodeEnvelope(fmt.Sprint(version), "1"), ts.disc.latest.Load().byGroup["default"].body...)
		if string(got) != string(want) {
			t.Errorf("version %d: wire bytes differ from proto.Marshal's", version)
		}
	}
}

func TestFirstMessageMustNameAValidNode(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	for _, tt := range []struct {
		name string
		req  *sluicev1.DiscoveryRequest
	}{
		{"no node", &sluicev1.DiscoveryRequest{VersionInfo: "1"}},
		{"empty id", &sluicev1.DiscoveryRequest{Node: &sluicev1.Node{}}},
		{"bad id", &sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "has space"}}},
		{"bad label", &sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "n1", Labels: map[string]string{"-x": "y"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := openStream(ctx, t, ts.conn, "x")
			n.send(tt.req)
			if err := n.ended(ctx); status.Code(err) != codes.InvalidArgument {
				t.Errorf("stream ended with %v, want InvalidArgument", err)
			}
		})
	}
	if nodes := ts.fleet.Nodes(); len(nodes) != 0 {
		t.Errorf("invalid subscriptions registered nodes: %v", nodes)
	}
}

func TestStateMachine(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	n := connect(ctx, t, ts.conn, "n1", "")
	n.expectNothing() // nothing published yet

	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	r1 := n.next(ctx)
	if r1.GetVersionInfo() != "1" {
		t.Fatalf("first response version %q, want 1", r1.GetVersionInfo())
	}
	n.ack(r1)
	waitNode(ctx, t, ts.fleet, "n1", "ACK of 1", func(st *sluicev1.NodeStatus) bool { return st.AckedVersion == 1 && st.SentVersion == 1 })

	ts.disc.Publish(2, testSnapshot(1, 1, 2))
	r2 := n.next(ctx)
	n.nack(r2, "1", "bind 127.0.0.1:10000: address already in use")
	st := waitNode(ctx, t, ts.fleet, "n1", "NACK of 2", func(st *sluicev1.NodeStatus) bool { return st.NackedVersion == 2 })
	if st.NackError != "bind 127.0.0.1:10000: address already in use" || st.AckedVersion != 1 || st.SentVersion != 2 {
		t.Errorf("after NACK: %v", st)
	}
	n.expectNothing() // the refused version is not sent again

	// A stale answer (to the first response) changes nothing and does not
	// end the subscription.
	n.nack(r1, "1", "stale complaint")
	ts.disc.Publish(3, testSnapshot(1, 1, 3))
	r3 := n.next(ctx)
	if r3.GetVersionInfo() != "3" || r3.GetNonce() == r2.GetNonce() {
		t.Fatalf("after NACK, got version %q nonce %q; want version 3 with a new nonce", r3.GetVersionInfo(), r3.GetNonce())
	}
	if st, _ := ts.fleet.Node("n1"); st.NackError != "bind 127.0.0.1:10000: address already in use" {
		t.Errorf("stale NACK was recorded: %q", st.NackError)
	}
	n.ack(r3)
	st = waitNode(ctx, t, ts.fleet, "n1", "ACK of 3", func(st *sluicev1.NodeStatus) bool { return st.AckedVersion == 3 })
	if st.NackedVersion != 0 || st.NackError != "" {
		t.Errorf("NACK not cleared by a newer ACK: %v", st)
	}
}

func TestReconnectRunningCurrentGetsNothing(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(5, testSnapshot(1, 1, 5))

	n := connect(ctx, t, ts.conn, "n1", "5")
	n.expectNothing()
	st := waitNode(ctx, t, ts.fleet, "n1", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })
	if st.AckedVersion != 5 {
		t.Errorf("acked version = %d, want 5 (the version the node runs)", st.AckedVersion)
	}
	// It holds the version it is to run from a control plane (this one
	// before a restart, or another replica): sluicectl nodes shows it as
	// sent, not "-" beside APPLIED 5.
	if st.SentVersion != 5 {
		t.Errorf("sent version = %d, want 5 (what the node holds and is to run)", st.SentVersion)
	}
	ts.disc.Publish(6, testSnapshot(1, 1, 6))
	if r := n.next(ctx); r.GetVersionInfo() != "6" {
		t.Errorf("got version %q, want 6", r.GetVersionInfo())
	}

	// A node running an older version gets the current one at once.
	old := connect(ctx, t, ts.conn, "n2", "4")
	if r := old.next(ctx); r.GetVersionInfo() != "6" {
		t.Errorf("node running 4 got %q, want 6", r.GetVersionInfo())
	}
}

// headStore is a store whose current version (History) the test sets, or
// fails; the server publishes only what the test gives it, as a replica
// whose watch lags or that lost etcd.
type headStore struct {
	store.Store
	version atomic.Uint64
	fail    atomic.Bool
	reads   atomic.Int32
}

func (h *headStore) History(context.Context, int) ([]*sluicev1.VersionInfo, error) {
	h.reads.Add(1)
	if h.fail.Load() {
		return nil, errors.New("etcdserver: request timed out")
	}
	return []*sluicev1.VersionInfo{{Version: h.version.Load()}}, nil
}

// A node that fails over to a replica whose watch of the store lags runs a
// newer version than that replica has published. The replica does not send
// it its older version, whether the store has the node's version or cannot
// be read, but waits until it has caught up. When the store's own version is
// older than the node's (numbered afresh), it sends what it has. A lone
// control plane, which does not hold, sends at once.
func TestLaggingReplicaHoldsOlderVersion(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	hs := &headStore{}
	hs.version.Store(7)
	ts.disc.HoldWhenBehind(20*time.Millisecond, hs)
	ts.disc.Publish(5, testSnapshot(1, 1, 5))

	n := connect(ctx, t, ts.conn, "n1", "7")
	n.expectNothing() // the store has 7
	if hs.reads.Load() == 0 {
		t.Error("the hold never asked the store for its version")
	}
	hs.fail.Store(true)
	time.Sleep(headEvery) // the last good read expires
	n.expectNothing()     // the store cannot say
	ts.disc.Publish(8, testSnapshot(1, 1, 8))
	if r := n.next(ctx); r.GetVersionInfo() != "8" {
		t.Errorf("node running 7 on a replica at 5 got version %q first, want 8 once the replica has it", r.GetVersionInfo())
	}

	// Numbered afresh: the store's 8 is older than the node's 57.
	hs.fail.Store(false)
	hs.version.Store(8)
	time.Sleep(headEvery)
	n2 := connect(ctx, t, ts.conn, "n2", "57")
	if r := n2.next(ctx); r.GetVersionInfo() != "8" {
		t.Errorf("node running 57 on a store at 8: got %q, want 8", r.GetVersionInfo())
	}

	lone := startServer(t)
	lone.disc.Publish(3, testSnapshot(1, 1, 3))
	n3 := connect(ctx, t, lone.conn, "n3", "57")
	if r := n3.next(ctx); r.GetVersionInfo() != "3" {
		t.Errorf("node running 57 on a lone control plane at 3: got %q, want 3", r.GetVersionInfo())
	}
}

// A node that runs the current version gets no response, but is told at
// once that its subscription was taken: headers. Its discovery client counts
// such a stream as progress, so that the node comes back at once when this
// control plane restarts, however long ago its last outage was.
func TestSubscriptionTakenSendsHeaders(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(5, testSnapshot(1, 1, 5))

	n := connect(ctx, t, ts.conn, "n1", "5")
	headers := make(chan metadata.MD, 1)
	go func() {
		md, _ := n.stream.Header()
		headers <- md
	}()
	select {
	case md := <-headers:
		if md == nil {
			t.Error("the stream ended without headers")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no headers for a subscription taken: the node cannot tell it from one not yet answered")
	}
	n.expectNothing()
}

func TestNewStreamSupersedesOld(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	first := connect(ctx, t, ts.conn, "n1", "1")
	waitNode(ctx, t, ts.fleet, "n1", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })
	second := connect(ctx, t, ts.conn, "n1", "1")
	if err := first.ended(ctx); status.Code(err) != codes.Aborted {
		t.Errorf("old stream ended with %v, want Aborted", err)
	}
	// The old stream's end does not mark the node disconnected.
	second.expectNothing()
	if st, _ := ts.fleet.Node("n1"); !st.Connected {
		t.Error("node shown disconnected while its new stream is open")
	}
	second.cancel()
	waitNode(ctx, t, ts.fleet, "n1", "disconnected", func(st *sluicev1.NodeStatus) bool { return !st.Connected })
}

// In a rolling restart that runs the new process beside the draining old
// one under the node's id, the old one's reconnect is refused once the new
// one holds the stream; it says where the replacement is.
func TestDrainingProcessCannotTakeBackItsNode(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	process := func(instance string) *testNode {
		n := openStream(ctx, t, ts.conn, "n1")
		n.send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "n1", Instance: instance}, VersionInfo: "1"})
		return n
	}
	old := process("old")
	waitNode(ctx, t, ts.fleet, "n1", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })
	if !ts.fleet.Draining("n1", "old") {
		t.Fatal("draining not recorded")
	}
	fresh := process("new")
	err := old.ended(ctx)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "opened a newer stream, from 127.0.0.1:") || !strings.Contains(err.Error(), "(instance new)") {
		t.Errorf("old stream ended with %v, want Aborted naming the new stream's peer and instance", err)
	}
	again := process("old")
	err = again.ended(ctx)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "this process was draining when another process of the node, from 127.0.0.1:") {
		t.Errorf("draining process's reconnect ended with %v, want Aborted", err)
	}
	fresh.expectNothing()
	if st, _ := ts.fleet.Node("n1"); !st.Connected || st.Draining {
		t.Errorf("node connected=%v draining=%v; want its new process connected, not draining", st.Connected, st.Draining)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	n := connect(ctx, t, ts.conn, "n1", "")
	waitNode(ctx, t, ts.fleet, "n1", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })
	ts.disc.Close()
	if err := n.ended(ctx); status.Code(err) != codes.Unavailable {
		t.Errorf("stream ended with %v, want Unavailable", err)
	}
	// The server may end the stream before the node's first message is
	// sent (Send then returns io.EOF): the status comes from Recv either way.
	late := openStream(ctx, t, ts.conn, "n2")
	late.stream.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "n2"}})
	if err := late.ended(ctx); status.Code(err) != codes.Unavailable {
		t.Errorf("stream after Close ended with %v, want Unavailable", err)
	}
}

// A node that stops reading holds up only its own stream.
func TestSlowNodeDoesNotStallOthers(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)

	// The stuck node reads nothing: its connection's flow-control window
	// (64 KiB to a few MiB) fills on the first big snapshot and the
	// server's send to it blocks.
	stuckConn := dial(t, ts.addr)
	stuck, err := sluicev1.NewDiscoveryServiceClient(stuckConn).StreamSnapshots(ctx, grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := stuck.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "stuck"}}); err != nil {
		t.Fatal(err)
	}
	waitNode(ctx, t, ts.fleet, "stuck", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })

	healthy := connect(ctx, t, ts.conn, "healthy", "")
	big := testSnapshot(1000, 20, 0) // about 1 MiB
	for v := uint64(1); v <= 5; v++ {
		big.Clusters[0].Endpoints[0].Weight = proto.Uint32(uint32(v))
		snap := proto.Clone(big).(*sluicev1.Snapshot)
		if err := ts.disc.Publish(v, snap); err != nil {
			t.Fatal(err)
		}
		r := healthy.next(ctx)
		if r.GetVersionInfo() != fmt.Sprint(v) {
			t.Fatalf("healthy node got version %q, want %d", r.GetVersionInfo(), v)
		}
		healthy.ack(r)
	}
	waitNode(ctx, t, ts.fleet, "healthy", "ACK of 5", func(st *sluicev1.NodeStatus) bool { return st.AckedVersion == 5 })
	if st, _ := ts.fleet.Node("stuck"); st.AckedVersion != 0 {
		t.Errorf("stuck node acked %d", st.AckedVersion)
	}
}

// A node has one response in flight: what is published before it answers
// waits, and versions published meanwhile coalesce into the newest.
func TestOneResponseInFlight(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	n := connect(ctx, t, ts.conn, "n1", "")
	r1 := n.next(ctx)
	for v := uint64(2); v <= 50; v++ {
		ts.disc.Publish(v, testSnapshot(2, 2, uint32(v)))
	}
	ts.disc.Publish(10, testSnapshot(1, 1, 0)) // older than published: ignored
	n.expectNothing()
	n.ack(r1)
	r := n.next(ctx)
	if r.GetVersionInfo() != "50" {
		t.Errorf("after answering 1, got version %s, want 50", r.GetVersionInfo())
	}
	n.ack(r)
	n.expectNothing()
	waitNode(ctx, t, ts.fleet, "n1", "ACK of 50", func(st *sluicev1.NodeStatus) bool { return st.AckedVersion == 50 })
}

func TestErrorDetailIsBounded(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	n := connect(ctx, t, ts.conn, "n1", "")
	r := n.next(ctx)
	n.nack(r, "", strings.Repeat("é", 5000))
	st := waitNode(ctx, t, ts.fleet, "n1", "NACK", func(st *sluicev1.NodeStatus) bool { return st.NackedVersion == 1 })
	if got := len([]rune(st.NackError)); got != maxErrorDetail {
		t.Errorf("NACK text kept %d runes, want %d", got, maxErrorDetail)
	}
}

// Publish of a version gives every stream the same bytes, encoded once.
func TestPublishSharesOneEncoding(t *testing.T) {
	ts := startServer(t)
	snap := testSnapshot(10, 10, 1)
	ts.disc.Publish(1, snap)
	p := ts.disc.latest.Load().byGroup["default"]
	a := &wireResponse{head: encodeEnvelope(p.label, "1"), body: p.body}
	b := &wireResponse{head: encodeEnvelope(p.label, "2"), body: p.body}
	ca, _ := codec{}.Marshal(a)
	cb, _ := codec{}.Marshal(b)
	if &ca[1].ReadOnlyData()[0] != &cb[1].ReadOnlyData()[0] {
		t.Error("two streams' messages do not share the snapshot bytes")
	}
}

// slowRefusals is a RefusalStore whose writes say they started, then wait
// for gate (or their context's end) before handing the test the refusal.
type slowRefusals struct {
	started chan struct{}
	gate    chan struct{}
	kept    chan refusal
}

func newSlowRefusals() slowRefusals {
	return slowRefusals{started: make(chan struct{}, 8), gate: make(chan struct{}), kept: make(chan refusal, 8)}
}

func (l slowRefusals) Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error {
	l.started <- struct{}{}
	select {
	case <-l.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.kept <- refusal{v, r}
	return nil
}

// nackAll has nodes ids each refuse version 1, and returns once one
// refusal is being written to st and the others wait in the queue.
func nackAll(ctx context.Context, t *testing.T, ts *testServer, st slowRefusals, ids ...string) {
	t.Helper()
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	for _, id := range ids {
		n := connect(ctx, t, ts.conn, id, "")
		n.nack(n.next(ctx), "", "listen tcp 127.0.0.1:80: bind: address already in use")
	}
	select {
	case <-st.started:
	case <-ctx.Done():
		t.Fatal("no refusal reached the store")
	}
	for len(ts.disc.refusals.q) < len(ids)-1 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d refusals queued, want %d", len(ts.disc.refusals.q), len(ids)-1)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestRefusalsFlushedOnStop: the refusals still waiting for a slow store
// when the server stops are all written by FlushRefusals, which returns
// once they are; a refusal that comes after it is not queued.
func TestRefusalsFlushedOnStop(t *testing.T) {
	ctx := testContext(t)
	st := newSlowRefusals()
	ts := startServer(t, func(s *Server) { s.KeepRefusals(st) })
	nackAll(ctx, t, ts, st, "n1", "n2", "n3")
	ts.disc.Close()
	time.AfterFunc(50*time.Millisecond, func() { close(st.gate) })
	ts.disc.FlushRefusals(ctx)
	ts.disc.refused("n4", 1, "too late")
	close(st.kept) // the writer has stopped: nothing sends on it any more
	var nodes []string
	for r := range st.kept {
		if r.version != 1 || !strings.Contains(r.r.GetError(), "address already in use") {
			t.Errorf("kept %v of version %d; want version 1's bind error", r.r, r.version)
		}
		nodes = append(nodes, r.r.GetNode())
	}
	slices.Sort(nodes)
	if !slices.Equal(nodes, []string{"n1", "n2", "n3"}) {
		t.Errorf("the store kept the refusals of %v; want n1, n2 and n3, and not n4's after the flush", nodes)
	}
}

// TestRefusalsFlushGivesUp: a flush whose context ends before a store that
// does not answer returns then, the write in progress ended and the queued
// refusals dropped.
func TestRefusalsFlushGivesUp(t *testing.T) {
	ctx := testContext(t)
	st := newSlowRefusals() // its gate never opens
	ts := startServer(t, func(s *Server) { s.KeepRefusals(st) })
	nackAll(ctx, t, ts, st, "n1", "n2")
	ts.disc.Close()
	flush, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	ts.disc.FlushRefusals(flush)
	if ctx.Err() != nil {
		t.Fatal("FlushRefusals did not return when its context ended")
	}
	if n := len(st.started); n != 0 {
		t.Errorf("%d more writes started after the flush gave up; want the queued refusal dropped", n)
	}
	if n := len(st.kept); n != 0 {
		t.Errorf("the store kept %d refusals; want none", n)
	}
}

// refusalLog is a RefusalStore that hands the test each refusal.
type refusalLog chan refusal

func (l refusalLog) Refused(_ context.Context, v uint64, r *sluicev1.Refusal) error {
	l <- refusal{v, r}
	return nil
}

// TestRefusalsKept: a node's refusal reaches the store with the node, the
// version and the reason; a draining node's does not, as it says nothing
// of the snapshot.
func TestRefusalsKept(t *testing.T) {
	ctx := testContext(t)
	kept := make(refusalLog, 8)
	ts := startServer(t, func(s *Server) { s.KeepRefusals(kept) })
	ts.disc.Publish(1, testSnapshot(1, 1, 1))
	expect := func(version uint64, node, why string, after time.Time) {
		t.Helper()
		select {
		case r := <-kept:
			if r.version != version || r.r.GetNode() != node || r.r.GetError() != why || r.r.GetAt().AsTime().Before(after) {
				t.Errorf("kept refusal of version %d: %v; want node %s, %q, at %v or later", r.version, r.r, node, why, after)
			}
		case <-ctx.Done():
			t.Fatalf("the refusal of version %d by %s was not kept", version, node)
		}
	}

	n1 := connect(ctx, t, ts.conn, "n1", "")
	before := time.Now().Truncate(time.Microsecond)
	n1.nack(n1.next(ctx), "", "listen tcp 127.0.0.1:80: bind: address already in use")
	expect(1, "n1", "listen tcp 127.0.0.1:80: bind: address already in use", before)

	n2 := connect(ctx, t, ts.conn, "n2", "")
	r := n2.next(ctx)
	if !ts.fleet.Draining("n2", "") {
		t.Fatal("draining not recorded")
	}
	n2.nack(r, "", "node is shutting down")
	waitNode(ctx, t, ts.fleet, "n2", "NACK of 1", func(st *sluicev1.NodeStatus) bool { return st.NackedVersion == 1 })
	ts.disc.Publish(2, testSnapshot(1, 1, 2))
	n1.nack(n1.next(ctx), "", "no such certificate")
	expect(2, "n1", "no such certificate", before)
	select {
	case r := <-kept:
		t.Errorf("kept %v of version %d; a draining node's refusal should not be", r.r, r.version)
	case <-time.After(100 * time.Millisecond):
	}
}
