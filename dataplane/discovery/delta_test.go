package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func cluster(name string, weight uint32) *sluicev1.Cluster {
	return &sluicev1.Cluster{Name: name, Endpoints: []*sluicev1.Endpoint{{Name: "e", Address: "127.0.0.1:1", Weight: proto.Uint32(weight)}}}
}

func listener(name, cluster string) *sluicev1.Listener {
	return &sluicev1.Listener{Name: name, Address: "127.0.0.1:2", DefaultCluster: cluster}
}

func baseSnapshot() *sluicev1.Snapshot {
	return &sluicev1.Snapshot{
		Clusters:  []*sluicev1.Cluster{cluster("a", 1), cluster("b", 1), cluster("c", 1)},
		Listeners: []*sluicev1.Listener{listener("x", "a"), listener("y", "b")},
	}
}

func TestApplyDelta(t *testing.T) {
	for _, tt := range []struct {
		name  string
		delta *sluicev1.SnapshotDelta
		want  *sluicev1.Snapshot
		err   string
	}{
		{
			name:  "nothing",
			delta: &sluicev1.SnapshotDelta{},
			want:  baseSnapshot(),
		},
		{
			name:  "cluster changed in place",
			delta: &sluicev1.SnapshotDelta{Clusters: []*sluicev1.Cluster{cluster("b", 7)}},
			want: &sluicev1.Snapshot{
				Clusters:  []*sluicev1.Cluster{cluster("a", 1), cluster("b", 7), cluster("c", 1)},
				Listeners: baseSnapshot().Listeners,
			},
		},
		{
			name:  "clusters added at the end, in the delta's order",
			delta: &sluicev1.SnapshotDelta{Clusters: []*sluicev1.Cluster{cluster("z", 1), cluster("d", 2)}},
			want: &sluicev1.Snapshot{
				Clusters:  []*sluicev1.Cluster{cluster("a", 1), cluster("b", 1), cluster("c", 1), cluster("z", 1), cluster("d", 2)},
				Listeners: baseSnapshot().Listeners,
			},
		},
		{
			name:  "cluster removed",
			delta: &sluicev1.SnapshotDelta{RemovedClusters: []string{"a"}},
			want: &sluicev1.Snapshot{
				Clusters:  []*sluicev1.Cluster{cluster("b", 1), cluster("c", 1)},
				Listeners: baseSnapshot().Listeners,
			},
		},
		{
			name:  "cluster order given",
			delta: &sluicev1.SnapshotDelta{Clusters: []*sluicev1.Cluster{cluster("0", 3)}, ClusterOrder: []string{"0", "c", "b", "a"}},
			want: &sluicev1.Snapshot{
				Clusters:  []*sluicev1.Cluster{cluster("0", 3), cluster("c", 1), cluster("b", 1), cluster("a", 1)},
				Listeners: baseSnapshot().Listeners,
			},
		},
		{
			name:  "listener added",
			delta: &sluicev1.SnapshotDelta{Listeners: []*sluicev1.Listener{listener("w", "c")}},
			want: &sluicev1.Snapshot{
				Clusters:  baseSnapshot().Clusters,
				Listeners: []*sluicev1.Listener{listener("x", "a"), listener("y", "b"), listener("w", "c")},
			},
		},
		{
			name:  "listener changed",
			delta: &sluicev1.SnapshotDelta{Listeners: []*sluicev1.Listener{listener("x", "c")}},
			want: &sluicev1.Snapshot{
				Clusters:  baseSnapshot().Clusters,
				Listeners: []*sluicev1.Listener{listener("x", "c"), listener("y", "b")},
			},
		},
		{
			name:  "listener removed, the rest reordered",
			delta: &sluicev1.SnapshotDelta{RemovedListeners: []string{"x"}, Listeners: []*sluicev1.Listener{listener("v", "a")}, ListenerOrder: []string{"v", "y"}},
			want: &sluicev1.Snapshot{
				Clusters:  baseSnapshot().Clusters,
				Listeners: []*sluicev1.Listener{listener("v", "a"), listener("y", "b")},
			},
		},
		{
			name:  "everything removed",
			delta: &sluicev1.SnapshotDelta{RemovedClusters: []string{"c", "b", "a"}, RemovedListeners: []string{"x", "y"}},
			want:  &sluicev1.Snapshot{},
		},
		{name: "removes a cluster the base lacks", delta: &sluicev1.SnapshotDelta{RemovedClusters: []string{"q"}}, err: `removes cluster "q", which the base does not have`},
		{name: "removes a listener twice", delta: &sluicev1.SnapshotDelta{RemovedListeners: []string{"x", "x"}}, err: `removes listener "x" twice`},
		{name: "sends a cluster twice", delta: &sluicev1.SnapshotDelta{Clusters: []*sluicev1.Cluster{cluster("d", 1), cluster("d", 2)}}, err: `sends cluster "d" twice`},
		{name: "removes and sends", delta: &sluicev1.SnapshotDelta{Clusters: []*sluicev1.Cluster{cluster("a", 2)}, RemovedClusters: []string{"a"}}, err: `both removes and sends cluster "a"`},
		{name: "order too short", delta: &sluicev1.SnapshotDelta{ClusterOrder: []string{"a", "b"}}, err: "cluster order names 2, the snapshot has 3"},
		{name: "order names a stranger", delta: &sluicev1.SnapshotDelta{ListenerOrder: []string{"x", "q"}}, err: `listener order names "q"`},
		{name: "order repeats", delta: &sluicev1.SnapshotDelta{ClusterOrder: []string{"a", "b", "b"}}, err: `cluster order names "b" twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := baseSnapshot()
			delta := proto.Clone(tt.delta).(*sluicev1.SnapshotDelta)
			got, err := ApplyDelta(base, delta)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got\n%v\nwant\n%v", got, tt.want)
			}
			if !proto.Equal(base, baseSnapshot()) || !proto.Equal(delta, tt.delta) {
				t.Error("ApplyDelta modified its input")
			}
		})
	}
}

// FuzzApplyDelta: whatever a control plane (or an attacker in its place)
// sends, rebuilding never panics, and what it yields keeps names unique
// and holds every resource the delta sent.
func FuzzApplyDelta(f *testing.F) {
	for _, d := range []*sluicev1.SnapshotDelta{
		{},
		{BaseVersion: "1", Clusters: []*sluicev1.Cluster{cluster("b", 7), cluster("d", 1)}, RemovedClusters: []string{"a"}},
		{Listeners: []*sluicev1.Listener{listener("v", "a")}, RemovedListeners: []string{"x"}, ListenerOrder: []string{"v", "y"}},
		{ClusterOrder: []string{"c", "b", "a"}},
		{RemovedClusters: []string{"a", "a"}},
	} {
		base, _ := proto.Marshal(baseSnapshot())
		b, _ := proto.Marshal(d)
		f.Add(base, b)
	}
	f.Fuzz(func(t *testing.T, baseBytes, deltaBytes []byte) {
		var base sluicev1.Snapshot
		var d sluicev1.SnapshotDelta
		if proto.Unmarshal(baseBytes, &base) != nil || proto.Unmarshal(deltaBytes, &d) != nil {
			return
		}
		got, err := ApplyDelta(&base, &d)
		if err != nil {
			return
		}
		check := func(kind string, got, sent []string) {
			seen := map[string]bool{}
			for _, n := range got {
				if seen[n] {
					t.Fatalf("%s %q twice in the result", kind, n)
				}
				seen[n] = true
			}
			for _, n := range sent {
				if !seen[n] {
					t.Fatalf("%s %q sent but not in the result", kind, n)
				}
			}
		}
		check("cluster", names(got.GetClusters()), names(d.GetClusters()))
		check("listener", names(got.GetListeners()), names(d.GetListeners()))
	})
}

func names[T interface{ GetName() string }](rs []T) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetName())
	}
	return out
}

// recordingNode keeps every snapshot it applies; it refuses a snapshot
// with a cluster named "bad", as a node refuses one it cannot bind.
type recordingNode struct {
	mu      sync.Mutex
	version string
	applied []*sluicev1.Snapshot
}

func (n *recordingNode) Apply(v string, s *sluicev1.Snapshot) error {
	if slices.Contains(names(s.GetClusters()), "bad") {
		return errors.New("cluster bad: refused")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.version = v
	n.applied = append(n.applied, s)
	return nil
}

func (n *recordingNode) Version() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version
}

func (n *recordingNode) last() *sluicev1.Snapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied[len(n.applied)-1]
}

// dialCP serves cp on a loopback port until the test ends, and returns
// a connection to it.
func dialCP(t *testing.T, cp sluicev1.DiscoveryServiceServer) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterDiscoveryServiceServer(srv, cp)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func startClient(t *testing.T, node Applier) (*fakeCP, *Client) {
	t.Helper()
	f := &fakeCP{reqs: make(chan *sluicev1.DiscoveryRequest, 8), resps: make(chan *sluicev1.DiscoveryResponse, 8), kill: make(chan struct{})}
	c := &Client{Conn: dialCP(t, f), Node: &sluicev1.Node{Id: "n1"}, Applier: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, c
}

// The client says it takes deltas, hands the node whole snapshots rebuilt
// from them, NACKs one it cannot rebuild keeping the node as it was, and
// counts what it got.
func TestClientRebuildsFromDeltas(t *testing.T) {
	node := &recordingNode{}
	f, c := startClient(t, node)
	if r := recv(t, f.reqs); !r.GetAcceptDeltas() {
		t.Fatalf("first message %v does not accept deltas", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "1", Nonce: "a", Snapshot: baseSnapshot()}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "1" || r.GetErrorDetail() != "" {
		t.Fatalf("answer to 1 = %v, want ACK", r)
	}

	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "2", Nonce: "b", Delta: &sluicev1.SnapshotDelta{
		BaseVersion: "1", Clusters: []*sluicev1.Cluster{cluster("b", 9)}, RemovedListeners: []string{"y"}}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "2" || r.GetResponseNonce() != "b" || r.GetErrorDetail() != "" {
		t.Fatalf("answer to delta 2 = %v, want ACK of 2", r)
	}
	want := &sluicev1.Snapshot{
		Clusters:  []*sluicev1.Cluster{cluster("a", 1), cluster("b", 9), cluster("c", 1)},
		Listeners: []*sluicev1.Listener{listener("x", "a")},
	}
	if got := node.last(); !proto.Equal(got, want) {
		t.Fatalf("node applied\n%v\nwant\n%v", got, want)
	}

	// A delta that does not fit the base: NACK, the node stays on 2.
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "3", Nonce: "c", Delta: &sluicev1.SnapshotDelta{BaseVersion: "2", RemovedClusters: []string{"zz"}}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "2" || !strings.Contains(r.GetErrorDetail(), `removes cluster "zz"`) {
		t.Fatalf("answer to a bad delta = %v, want NACK running 2", r)
	}
	// One the node refuses: NACK, and the next delta from 2 still works.
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "4", Nonce: "d", Delta: &sluicev1.SnapshotDelta{BaseVersion: "2", Clusters: []*sluicev1.Cluster{cluster("bad", 1)}}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "2" || r.GetErrorDetail() != "cluster bad: refused" {
		t.Fatalf("answer to a refused delta = %v, want NACK running 2", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "5", Nonce: "e", Delta: &sluicev1.SnapshotDelta{BaseVersion: "2", RemovedClusters: []string{"c"}}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "5" || r.GetErrorDetail() != "" {
		t.Fatalf("answer to delta 5 from 2 = %v, want ACK", r)
	}
	want.Clusters = want.Clusters[:2]
	if got := node.last(); !proto.Equal(got, want) {
		t.Fatalf("node applied\n%v\nwant\n%v", got, want)
	}

	cs := c.Counters()
	if cs.Snapshots.Load() != 1 || cs.Deltas.Load() != 4 || cs.DeltaErrors.Load() != 1 || cs.DeltaBytes.Load() == 0 || cs.SnapshotBytes.Load() == 0 {
		t.Errorf("counters: %d snapshots (%d B), %d deltas (%d B), %d delta errors; want 1, 4, 1 error",
			cs.Snapshots.Load(), cs.SnapshotBytes.Load(), cs.Deltas.Load(), cs.DeltaBytes.Load(), cs.DeltaErrors.Load())
	}

	// A delta from a version the node does not run: NACK saying what it
	// runs, and the next delta from that is applied.
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "6", Nonce: "f", Delta: &sluicev1.SnapshotDelta{BaseVersion: "4"}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "5" || !strings.Contains(r.GetErrorDetail(), `delta from version "4", node runs "5"`) {
		t.Fatalf("answer to a delta from 4 = %v, want NACK running 5", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "7", Nonce: "g", Delta: &sluicev1.SnapshotDelta{BaseVersion: "5"}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "7" || r.GetErrorDetail() != "" {
		t.Fatalf("answer to delta 7 from 5 = %v, want ACK", r)
	}

	// After a reconnect the client still takes deltas from what it runs.
	close(f.kill)
	if r := recv(t, f.reqs); r.GetNode().GetId() != "n1" || r.GetVersionInfo() != "7" || !r.GetAcceptDeltas() {
		t.Fatalf("after reconnect = %v, want a subscription from 7 with deltas", r)
	}
}

// A client whose node runs a version the client did not apply (nothing to
// base a delta on) does not ask for deltas.
func TestClientWithoutBaseRefusesDeltas(t *testing.T) {
	node := &recordingNode{version: "7"}
	f, _ := startClient(t, node)
	if r := recv(t, f.reqs); r.GetVersionInfo() != "7" || r.GetAcceptDeltas() {
		t.Fatalf("first message %v; want version 7 without deltas", r)
	}
	f.resps <- &sluicev1.DiscoveryResponse{VersionInfo: "8", Nonce: "a", Delta: &sluicev1.SnapshotDelta{BaseVersion: "7"}}
	if r := recv(t, f.reqs); r.GetVersionInfo() != "7" || r.GetErrorDetail() == "" {
		t.Fatalf("answer to an unasked delta = %v, want NACK", r)
	}
}
