package discovery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// connectDeltas opens a stream for a node that accepts deltas and runs
// running.
func connectDeltas(ctx context.Context, t testing.TB, ts *testServer, id, running string) *testNode {
	t.Helper()
	n := openStream(ctx, t, ts.conn, id)
	n.send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id}, VersionInfo: running, AcceptDeltas: true})
	return n
}

// deltaBase is the snapshot the delta tests change: big enough that one
// change is far smaller than the whole.
func deltaBase() *sluicev1.Snapshot { return testSnapshot(50, 4, 1) }

func names[T interface{ GetName() string }](rs []T) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetName())
	}
	return out
}

// Every kind of change to every kind of resource reaches a node running
// the base as a delta holding exactly that change.
func TestDeltaHoldsWhatChanged(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(s *sluicev1.Snapshot)
		// what the delta must hold
		clusters, removedClusters, clusterOrder    []string
		listeners, removedListeners, listenerOrder []string
	}{
		{
			name:     "cluster added",
			change:   func(s *sluicev1.Snapshot) { s.Clusters = append(s.Clusters, testSnapshot(51, 1, 9).Clusters[50]) },
			clusters: []string{"cluster-50"},
		},
		{
			name:     "endpoint weight changed",
			change:   func(s *sluicev1.Snapshot) { s.Clusters[7].Endpoints[2].Weight = proto.Uint32(200) },
			clusters: []string{"cluster-7"},
		},
		{
			name: "clusters removed",
			change: func(s *sluicev1.Snapshot) {
				s.Clusters = slices.Delete(s.Clusters, 10, 12)
			},
			removedClusters: []string{"cluster-10", "cluster-11"},
		},
		{
			name: "cluster added in the middle: order sent",
			change: func(s *sluicev1.Snapshot) {
				s.Clusters = slices.Insert(s.Clusters, 1, &sluicev1.Cluster{Name: "aaa"})
			},
			clusters:     []string{"aaa"},
			clusterOrder: slices.Insert(names(deltaBase().Clusters), 1, "aaa"),
		},
		{
			name: "listener added",
			change: func(s *sluicev1.Snapshot) {
				s.Listeners = append(s.Listeners, &sluicev1.Listener{Name: "new", Address: "127.0.0.1:9999", DefaultCluster: "cluster-0"})
			},
			listeners: []string{"new"},
		},
		{
			name:      "listener changed",
			change:    func(s *sluicev1.Snapshot) { s.Listeners[3].Address = "127.0.0.1:7777" },
			listeners: []string{"l-3"},
		},
		{
			name:             "listener removed",
			change:           func(s *sluicev1.Snapshot) { s.Listeners = s.Listeners[:49] },
			removedListeners: []string{"l-49"},
		},
		{
			name: "listeners swapped: order sent, nothing else",
			change: func(s *sluicev1.Snapshot) {
				s.Listeners[0], s.Listeners[1] = s.Listeners[1], s.Listeners[0]
			},
			listenerOrder: func() []string {
				n := names(deltaBase().Listeners)
				n[0], n[1] = n[1], n[0]
				return n
			}(),
		},
		{
			name: "a bit of everything",
			change: func(s *sluicev1.Snapshot) {
				s.Clusters[0].LbPolicy = sluicev1.LbPolicy_LB_POLICY_LEAST_CONN
				s.Clusters = slices.Delete(s.Clusters, 5, 6)
				s.Listeners[5].DefaultCluster = "cluster-0"
				s.Listeners = slices.Delete(s.Listeners, 6, 7)
			},
			clusters:         []string{"cluster-0"},
			removedClusters:  []string{"cluster-5"},
			listeners:        []string{"l-5"},
			removedListeners: []string{"l-6"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			ts := startServer(t)
			ts.disc.Publish(1, deltaBase())
			n := connectDeltas(ctx, t, ts, "n1", "")
			r1 := n.next(ctx)
			if r1.GetSnapshot() == nil || r1.GetDelta() != nil {
				t.Fatal("a node that runs nothing got no whole snapshot")
			}
			n.ack(r1)

			next := deltaBase()
			tt.change(next)
			ts.disc.Publish(2, proto.Clone(next).(*sluicev1.Snapshot))
			r2 := n.next(ctx)
			d := r2.GetDelta()
			if r2.GetVersionInfo() != "2" || d == nil || r2.Snapshot != nil {
				t.Fatalf("got version %q, delta %v, snapshot %v; want version 2 as a delta only", r2.GetVersionInfo(), d != nil, r2.Snapshot != nil)
			}
			if d.GetBaseVersion() != "1" {
				t.Errorf("base_version %q, want 1", d.GetBaseVersion())
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"clusters", names(d.GetClusters()), tt.clusters},
				{"removed_clusters", d.GetRemovedClusters(), tt.removedClusters},
				{"cluster_order", d.GetClusterOrder(), tt.clusterOrder},
				{"listeners", names(d.GetListeners()), tt.listeners},
				{"removed_listeners", d.GetRemovedListeners(), tt.removedListeners},
				{"listener_order", d.GetListenerOrder(), tt.listenerOrder},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			// What is sent is the new version's resource, whole.
			for _, got := range d.GetClusters() {
				want := next.Clusters[slices.IndexFunc(next.Clusters, func(c *sluicev1.Cluster) bool { return c.GetName() == got.GetName() })]
				if !proto.Equal(got, want) {
					t.Errorf("cluster %s sent differs from version 2's", got.GetName())
				}
			}
			for _, got := range d.GetListeners() {
				want := next.Listeners[slices.IndexFunc(next.Listeners, func(l *sluicev1.Listener) bool { return l.GetName() == got.GetName() })]
				if !proto.Equal(got, want) {
					t.Errorf("listener %s sent differs from version 2's", got.GetName())
				}
			}
			if proto.Size(r2) >= proto.Size(&sluicev1.DiscoveryResponse{Snapshot: next}) {
				t.Errorf("delta response of %d bytes is not smaller than the snapshot", proto.Size(r2))
			}
			n.ack(r2)
			waitNode(ctx, t, ts.fleet, "n1", "ACK of 2", func(st *sluicev1.NodeStatus) bool { return st.AckedVersion == 2 })
		})
	}
}

// The hand-made encoding is what proto.Marshal makes of the same delta, so
// every client reads it as the typed API says.
func TestDeltaWireFormat(t *testing.T) {
	base, next := deltaBase(), deltaBase()
	next.Clusters[3].Endpoints[0].Weight = proto.Uint32(9)
	next.Clusters = slices.Insert(next.Clusters, 0, &sluicev1.Cluster{Name: "first"})
	next.Listeners = next.Listeners[1:]
	b1, _ := encodeSnapshotField(base)
	b2, _ := encodeSnapshotField(next)
	body := encodeDelta(indexResources(1, "1", b1), indexResources(2, "2", b2))

	var r sluicev1.DiscoveryResponse
	if err := proto.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&sluicev1.DiscoveryResponse{Delta: r.GetDelta()})
	if string(body) != string(want) {
		t.Error("delta bytes differ from proto.Marshal's")
	}
	if len(r.GetDelta().GetClusterOrder()) != 51 || len(r.GetDelta().GetListenerOrder()) != 0 {
		t.Errorf("orders: %d clusters, %d listeners; want 51 (one inserted first) and none (one removed)",
			len(r.GetDelta().GetClusterOrder()), len(r.GetDelta().GetListenerOrder()))
	}
}

// Every repeated resource of Snapshot has its kind, so a resource type added
// to Snapshot cannot silently be left out of deltas.
func TestDeltaKindsCoverSnapshot(t *testing.T) {
	snap := (&sluicev1.Snapshot{}).ProtoReflect().Descriptor()
	delta := (&sluicev1.SnapshotDelta{}).ProtoReflect().Descriptor()
	if snap.Fields().Len() != len(kinds) {
		t.Errorf("Snapshot has %d fields, deltas know %d kinds", snap.Fields().Len(), len(kinds))
	}
	for _, k := range kinds {
		f := snap.Fields().ByNumber(k.snapshot)
		if f == nil || !f.IsList() || f.Message() == nil {
			t.Errorf("kind %s: Snapshot field %d is not a repeated message", k.name, k.snapshot)
			continue
		}
		if name := f.Message().Fields().ByNumber(1); name == nil || name.Name() != "name" || name.Kind() != protoreflect.StringKind {
			t.Errorf("kind %s: %s's field 1 is not its name", k.name, f.Message().FullName())
		}
		up, rm, ord := delta.Fields().ByNumber(k.upserted), delta.Fields().ByNumber(k.removed), delta.Fields().ByNumber(k.order)
		if up == nil || up.Name() != f.Name() || up.Message() != f.Message() || !up.IsList() {
			t.Errorf("kind %s: SnapshotDelta field %d is not %s", k.name, k.upserted, f.Name())
		}
		if rm == nil || rm.Name() != protoreflect.Name("removed_"+string(f.Name())) || rm.Kind() != protoreflect.StringKind || !rm.IsList() {
			t.Errorf("kind %s: SnapshotDelta field %d is not removed_%s", k.name, k.removed, f.Name())
		}
		if ord == nil || ord.Name() != protoreflect.Name(k.name+"_order") || ord.Kind() != protoreflect.StringKind || !ord.IsList() {
			t.Errorf("kind %s: SnapshotDelta field %d is not %s_order", k.name, k.order, k.name)
		}
	}
	if f := delta.Fields().ByNumber(deltaBaseVersionField); f == nil || f.Name() != "base_version" {
		t.Errorf("SnapshotDelta field %d is not base_version", deltaBaseVersionField)
	}
}

// A node whose version the server no longer keeps, or never had, gets the
// whole snapshot.
func TestDeltaFallsBackWhenBaseUnknown(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	last := uint64(deltaBases + 2)
	for v := uint64(1); v <= last; v++ {
		s := deltaBase()
		s.Clusters[0].Endpoints[0].Weight = proto.Uint32(uint32(v))
		ts.disc.Publish(v, s)
	}
	for _, tt := range []struct {
		running string
		delta   bool
	}{
		{"1", false},                          // too old: forgotten
		{fmt.Sprint(last - deltaBases), true}, // the oldest kept
		{fmt.Sprint(last - 1), true},
		{"999", false},  // never published here (another replica's, say)
		{"junk", false}, // not a version
	} {
		n := connectDeltas(ctx, t, ts, "n-"+tt.running, tt.running)
		r := n.next(ctx)
		if r.GetVersionInfo() != fmt.Sprint(last) {
			t.Fatalf("node running %s got version %q, want %d", tt.running, r.GetVersionInfo(), last)
		}
		if got := r.GetDelta() != nil; got != tt.delta || (r.GetSnapshot() != nil) == tt.delta {
			t.Errorf("node running %s: delta %v, snapshot %v; want delta %v", tt.running, got, r.GetSnapshot() != nil, tt.delta)
		}
		if tt.delta && r.GetDelta().GetBaseVersion() != tt.running {
			t.Errorf("node running %s got a delta from %s", tt.running, r.GetDelta().GetBaseVersion())
		}
	}
}

// A change that rewrites most of the snapshot goes whole: its delta would
// not be smaller.
func TestDeltaNotSmallerSendsSnapshot(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, testSnapshot(50, 4, 1))
	n := connectDeltas(ctx, t, ts, "n1", "1")
	v2 := testSnapshot(50, 4, 2) // every weight changes
	for i, l := range v2.Listeners {
		l.Address = fmt.Sprintf("127.0.0.1:%d", 20000+i) // and every listener
	}
	ts.disc.Publish(2, proto.Clone(v2).(*sluicev1.Snapshot))
	r := n.next(ctx)
	if r.GetDelta() != nil || !proto.Equal(r.GetSnapshot(), v2) {
		t.Errorf("delta %v, snapshot equal %v; want the whole version 2", r.GetDelta() != nil, proto.Equal(r.GetSnapshot(), v2))
	}
}

// A node that NACKed a delta still runs the base: the next version's delta
// starts from there, so it holds the changes of the refused one too.
func TestDeltaAfterNackStartsFromWhatTheNodeRuns(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, deltaBase())
	n := connectDeltas(ctx, t, ts, "n1", "1")

	v2 := deltaBase()
	v2.Clusters[1].Endpoints[0].Weight = proto.Uint32(100)
	ts.disc.Publish(2, v2)
	r2 := n.next(ctx)
	if r2.GetDelta().GetBaseVersion() != "1" {
		t.Fatalf("version 2: want a delta from 1, got %v", r2)
	}
	n.nack(r2, "1", "listener l-1: address already in use")
	waitNode(ctx, t, ts.fleet, "n1", "NACK of 2", func(st *sluicev1.NodeStatus) bool { return st.NackedVersion == 2 })
	n.expectNothing()

	v3 := proto.Clone(v2).(*sluicev1.Snapshot)
	v3.Clusters[2].Endpoints[0].Weight = proto.Uint32(100)
	ts.disc.Publish(3, v3)
	r3 := n.next(ctx)
	d := r3.GetDelta()
	if d.GetBaseVersion() != "1" || !slices.Equal(names(d.GetClusters()), []string{"cluster-1", "cluster-2"}) {
		t.Errorf("version 3 after NACK of 2: base %q, clusters %q; want base 1 with cluster-1 and cluster-2", d.GetBaseVersion(), names(d.GetClusters()))
	}
	n.ack(r3)

	// A NACK that names no version it runs (a node that lost its
	// snapshot) gets the whole next one.
	v4 := proto.Clone(v3).(*sluicev1.Snapshot)
	v4.Clusters[3].Endpoints[0].Weight = proto.Uint32(100)
	ts.disc.Publish(4, v4)
	r4 := n.next(ctx)
	if r4.GetDelta().GetBaseVersion() != "3" {
		t.Fatalf("version 4: want a delta from 3, got %v", r4.GetDelta())
	}
	n.nack(r4, "", "lost it")
	v5 := proto.Clone(v4).(*sluicev1.Snapshot)
	v5.Clusters[4].Endpoints[0].Weight = proto.Uint32(100)
	ts.disc.Publish(5, v5)
	if r5 := n.next(ctx); r5.GetSnapshot() == nil || r5.GetDelta() != nil {
		t.Errorf("after a NACK running nothing: delta %v, want the whole snapshot", r5.GetDelta() != nil)
	}
}

// A node that does not say it accepts deltas (one built before them) gets
// whole snapshots only.
func TestDeltaNotSentToOldNodes(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	ts.disc.Publish(1, deltaBase())
	n := connect(ctx, t, ts.conn, "old", "")
	n.ack(n.next(ctx))
	for v := uint64(2); v <= 4; v++ {
		s := deltaBase()
		s.Clusters[0].Endpoints[0].Weight = proto.Uint32(uint32(v))
		ts.disc.Publish(v, s)
		r := n.next(ctx)
		if r.GetDelta() != nil || !proto.Equal(r.GetSnapshot(), s) {
			t.Fatalf("version %d to an old node: delta %v; want the whole snapshot", v, r.GetDelta() != nil)
		}
		n.ack(r)
	}
}

type sizeObserver struct {
	nopObserver
	mu     sync.Mutex
	deltas int
	bytes  [2]int // snapshot, delta
}

func (o *sizeObserver) PushedBytes(delta bool, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if delta {
		o.deltas++
		o.bytes[1] += n
	} else {
		o.bytes[0] += n
	}
}

// Nodes on the same base share one encoding of the delta, and the observer
// sees deltas and their size.
func TestDeltaEncodedOncePerBase(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	obs := &sizeObserver{}
	ts.disc.obs, ts.disc.sizes = obs, obs
	ts.disc.Publish(1, deltaBase())
	a := connectDeltas(ctx, t, ts, "a", "1")
	b := connectDeltas(ctx, t, ts, "b", "1")
	waitNode(ctx, t, ts.fleet, "b", "connected", func(st *sluicev1.NodeStatus) bool { return st.Connected })
	next := deltaBase()
	next.Clusters[0].Endpoints[0].Weight = proto.Uint32(77)
	ts.disc.Publish(2, next)
	ra, rb := a.next(ctx), b.next(ctx)
	if ra.GetDelta() == nil || !proto.Equal(ra.GetDelta(), rb.GetDelta()) {
		t.Fatal("two nodes on one base did not get the same delta")
	}
	p := ts.disc.latest.Load().byGroup["default"]
	x, _ := p.payload(1, true)
	y, _ := p.payload(1, true)
	if &x[0] != &y[0] || len(p.deltas.byBase) != 1 {
		t.Errorf("the delta from 1 is not encoded once and shared (%d cached)", len(p.deltas.byBase))
	}
	// A push is observed once its send returned, which may be after the
	// node has it.
	deltas := func() int {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.deltas
	}
	for wait := time.Now().Add(5 * time.Second); deltas() < 2 && time.Now().Before(wait); {
		time.Sleep(5 * time.Millisecond)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.deltas != 2 || obs.bytes[1] != 2*len(x) {
		t.Errorf("observer saw %d deltas of %d bytes, want 2 of %d", obs.deltas, obs.bytes[1], 2*len(x))
	}
}

// Computing the delta of a 10k-cluster snapshot is far cheaper than a
// rollout, and what it yields is small.
func BenchmarkEncodeDelta(b *testing.B) {
	base := testSnapshot(10000, 10, 1)
	next := proto.Clone(base).(*sluicev1.Snapshot)
	next.Clusters[5000].Endpoints[3].Weight = proto.Uint32(1)
	b1, _ := encodeSnapshotField(base)
	b2, _ := encodeSnapshotField(next)
	start := time.Now()
	r1, r2 := indexResources(1, "1", b1), indexResources(2, "2", b2)
	b.Logf("index of %d bytes: %v", len(b2), time.Since(start)/2)
	b.ReportAllocs()
	b.ResetTimer()
	var d []byte
	for range b.N {
		d = encodeDelta(r1, r2)
	}
	b.ReportMetric(float64(len(d)), "delta-bytes")
	b.ReportMetric(float64(len(b2)), "snapshot-bytes")
}
