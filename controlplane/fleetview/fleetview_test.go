package fleetview

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/internal/etcdtest"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 20 * time.Second

type replica struct {
	reg    *fleet.Registry
	view   *View
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func start(t *testing.T, srv *etcdtest.Server, name string) *replica {
	t.Helper()
	reg := fleet.NewRegistry()
	view, err := New(srv.Client(t), reg, Options{Prefix: "/t/", Replica: name, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{reg: reg, view: view, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- view.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *replica) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(defaultTestTimeout):
			t.Error("View.Run did not return")
		}
	})
}

// waitNode waits until view lists node id as cond wants it.
func waitNode(t *testing.T, v *View, what, id string, cond func(n *sluicev1.NodeStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		for _, n := range v.Nodes() {
			if n.GetId() == id && cond(n) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; nodes: %v", what, v.Nodes())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(ns []*sluicev1.NodeStatus) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.GetId())
	}
	return out
}

// TestSharedFleet: replicas list each other's nodes with what they ACKed
// and NACKed; a node that moves is listed once, as where it is now; the
// nodes of a replica that stops vanish from the others' lists.
func TestSharedFleet(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := start(t, srv, "a"), start(t, srv, "b")

	n1 := a.reg.Connect(&sluicev1.Node{Id: "n1", Labels: map[string]string{"zone": "x"}}, "peer1", 0)
	b.reg.Connect(&sluicev1.Node{Id: "n2"}, "peer2", 0)
	n1.Sent(3)
	n1.Acked(3)
	n1.Sent(4)
	n1.Nacked(4, "port taken")
	waitNode(t, b.view, "n1's NACK on b", "n1", func(n *sluicev1.NodeStatus) bool {
		return n.GetConnected() && n.GetAckedVersion() == 3 && n.GetNackedVersion() == 4 &&
			n.GetNackError() == "port taken" && n.GetLabels()["zone"] == "x" && n.GetSentVersion() == 4 && n.GetReplica() == "a"
	})
	// b's node reaches a through etcd in its own time: b seeing n1's
	// NACK says nothing of when a sees n2.
	waitNode(t, a.view, "n2 on a", "n2", func(n *sluicev1.NodeStatus) bool { return n.GetConnected() && n.GetReplica() == "b" })
	if got := a.view.Nodes(); len(got) != 2 || got[0].GetId() != "n1" || got[0].GetReplica() != "a" || got[1].GetId() != "n2" {
		t.Errorf("a lists %v, want n1 on a, n2", got)
	}

	// n1 moves to b; a has not seen its stream end yet.
	time.Sleep(10 * time.Millisecond) // a later connected_since
	b.reg.Connect(&sluicev1.Node{Id: "n1"}, "peer1b", 4)
	for name, r := range map[string]*replica{"a": a, "b": b} {
		waitNode(t, r.view, "n1 on b, as "+name+" sees it", "n1", func(n *sluicev1.NodeStatus) bool {
			return n.GetConnected() && n.GetPeer() == "peer1b" && n.GetAckedVersion() == 4 && n.GetReplica() == "b"
		})
	}
	n1.Disconnect()
	time.Sleep(100 * time.Millisecond)
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if got := r.view.Nodes(); len(got) != 2 || !got[0].GetConnected() || got[0].GetPeer() != "peer1b" {
			t.Errorf("%s lists %v after a saw n1 leave; want n1 connected through b", name, got)
		}
	}

	// b stops: its records go with its lease; a keeps its own memory of n1
	// (disconnected), as a lone control plane does.
	b.stop(t)
	waitNode(t, a.view, "n1 as a remembers it", "n1", func(n *sluicev1.NodeStatus) bool {
		return !n.GetConnected() && n.GetPeer() == "peer1"
	})
	if got := ids(a.view.Nodes()); !slices.Equal(got, []string{"n1"}) {
		t.Errorf("a lists %v after b stopped, want [n1]", got)
	}
}

// TestForgottenNodesRecordGoes: a node its replica forgot
// (fleet.Registry.Forget) leaves the other replicas' lists too.
func TestForgottenNodesRecordGoes(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := start(t, srv, "a"), start(t, srv, "b")
	a.reg.Connect(&sluicev1.Node{Id: "n1"}, "peer1", 0).Disconnect()
	a.reg.Connect(&sluicev1.Node{Id: "n2"}, "peer2", 0)
	waitNode(t, b.view, "n1 gone, on b", "n1", func(n *sluicev1.NodeStatus) bool { return !n.GetConnected() })
	waitNode(t, b.view, "n2 on b", "n2", func(n *sluicev1.NodeStatus) bool { return n.GetConnected() })
	if gone := a.reg.Forget(time.Now().Add(time.Minute)); !slices.Equal(gone, []string{"n1"}) {
		t.Fatalf("a forgot %v, want n1", gone)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for !slices.Equal(ids(b.view.Nodes()), []string{"n2"}) {
		if time.Now().After(deadline) {
			t.Fatalf("b lists %v after a forgot n1, want [n2]", ids(b.view.Nodes()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMoveOrderedByStoreNotClock: of two replicas that record one node
// connected, the one whose record of the connection etcd took later wins,
// whatever the replicas' clocks say. Replica b is gone (killed; its lease
// has not expired yet), and its clock ran an hour ahead.
func TestMoveOrderedByStoreNotClock(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a, c := start(t, srv, "a"), start(t, srv, "c") // c only looks
	putB := func(st *sluicev1.NodeStatus) int64 {
		t.Helper()
		raw, err := protojson.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Put(context.Background(), "/t/nodes/b/n1", string(raw))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.GetRevision()
	}
	ahead := &sluicev1.NodeStatus{Id: "n1", Connected: true, Peer: "peer-b", ConnectedSince: timestamppb.New(time.Now().Add(time.Hour))}
	rev := putB(ahead)
	onA := func(what string, cond func(n *sluicev1.NodeStatus) bool) {
		t.Helper()
		for name, r := range map[string]*replica{"a": a, "c": c} {
			waitNode(t, r.view, what+", as "+name+" sees it", "n1", func(n *sluicev1.NodeStatus) bool {
				return n.GetConnected() && n.GetReplica() == "a" && n.GetPeer() == "peer-a" && cond(n)
			})
		}
	}
	s := a.reg.Connect(&sluicev1.Node{Id: "n1"}, "peer-a", 0)
	onA("n1 on a", func(n *sluicev1.NodeStatus) bool { return n.GetConnectedRevision() > rev })
	var first int64
	for _, n := range c.view.Nodes() {
		first = n.GetConnectedRevision()
	}
	// a writes n1's record again: the connection keeps its revision.
	s.Acked(5)
	onA("n1's ACK", func(n *sluicev1.NodeStatus) bool {
		return n.GetAckedVersion() == 5 && n.GetConnectedRevision() == first
	})
	// b, had it lived on unaware, would write its record again, carrying
	// the revision of its own connection: a's stays on top.
	ahead.SentVersion, ahead.ConnectedRevision = 6, rev
	putB(ahead)
	time.Sleep(50 * time.Millisecond)
	for name, r := range map[string]*replica{"a": a, "c": c} {
		if got := r.view.Nodes(); len(got) != 1 || got[0].GetReplica() != "a" {
			t.Errorf("%s lists %v after b wrote its record again; want n1 on a", name, got)
		}
	}
}

// TestManyNodesBatched: a fleet-wide change is written in batches, and
// every node's record arrives.
func TestManyNodesBatched(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := start(t, srv, "a"), start(t, srv, "b")
	const n = 1000
	for i := range n {
		s := a.reg.Connect(&sluicev1.Node{Id: fmt.Sprintf("n%04d", i)}, "p", 0)
		s.Acked(7)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		acked := 0
		for _, st := range b.view.Nodes() {
			if st.GetAckedVersion() == 7 {
				acked++
			}
		}
		if acked == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b sees %d of %d nodes ACK", acked, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFleetNodesSaysWhenPartial: when etcd cannot be read, FleetNodes
// lists this replica's nodes and says that the others' are missing, which
// a command for the whole fleet needs to know; Nodes lists the same.
func TestFleetNodesSaysWhenPartial(t *testing.T) {
	srv := etcdtest.Start(t)
	b := start(t, srv, "b")
	b.reg.Connect(&sluicev1.Node{Id: "there"}, "peer2", 0)

	cli := srv.Client(t)
	reg := fleet.NewRegistry()
	a, err := New(cli, reg, Options{Prefix: "/t/", Replica: "a", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg.Connect(&sluicev1.Node{Id: "here"}, "peer1", 0)
	waitNode(t, a, "b's node on a", "there", func(n *sluicev1.NodeStatus) bool { return n.GetConnected() })
	if got, err := a.FleetNodes(); err != nil || !slices.Equal(ids(got), []string{"here", "there"}) {
		t.Fatalf("with etcd: FleetNodes = %v, %v; want [here there], no error", ids(got), err)
	}

	cli.Close() // etcd can no longer be read through a's client
	got, err := a.FleetNodes()
	if err == nil {
		t.Errorf("without etcd: FleetNodes = %v and no error, want an error", ids(got))
	}
	if !slices.Equal(ids(got), []string{"here"}) {
		t.Errorf("without etcd: FleetNodes lists %v, want [here]", ids(got))
	}
	if got := ids(a.Nodes()); !slices.Equal(got, []string{"here"}) {
		t.Errorf("without etcd: Nodes lists %v, want [here]", got)
	}
}

// TestReplicaNameClaimed: a replica's name is its own while it runs. A
// second replica of that name, which would take the first one's records
// for its own and list none of its nodes, is refused with the holder
// named, once it has seen the holder keep its lease alive, not after
// waiting the lease out. The name is free at once when its holder stops,
// and once the lease expires when its holder dies.
func TestReplicaNameClaimed(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	claim := func(holder string, ttl time.Duration) (*View, time.Duration, error) {
		t.Helper()
		// Each in a seat of its own: see TestSeatTakesDeadHoldersName.
		v, err := New(srv.Client(t), fleet.NewRegistry(), Options{Prefix: "/t/", Replica: "r", TTL: ttl, Holder: holder, Seat: holder})
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		err = v.Claim(ctx)
		return v, time.Since(begin), err
	}

	// A lease renewed every 3 s, long enough that a refusal before it
	// could expire tells the renewal seen from the wait for expiry.
	const longTTL = 9 * time.Second
	first, _, err := claim("the first", longTTL)
	if err != nil {
		t.Fatalf("claim of a free name: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()

	_, took, err := claim("the second", time.Second)
	want := `another replica named "r" uses this etcd and prefix (the first)`
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), want) {
		t.Fatalf("claim of a running replica's name: %v; want ErrNameTaken saying %q", err, want)
	}
	if took > longTTL*2/3 {
		t.Errorf("refused after %v; want once the holder renews its lease, every %v, not after its TTL (%v)", took, longTTL/3, longTTL)
	}
	t.Logf("refused after %v (the holder's lease TTL %v)", took.Round(time.Millisecond), longTTL)

	stop()
	<-done
	const ttl = time.Second
	third, took, err := claim("the third", ttl)
	if err != nil {
		t.Fatalf("claim after the holder's Run returned: %v", err)
	}
	if took > time.Second {
		t.Errorf("claimed %v after the holder stopped, want at once", took)
	}

	// The third dies without a word: its lease is neither revoked nor
	// kept alive any longer.
	third.claimed.Orphan()
	fourth, took, err := claim("the fourth", ttl)
	if err != nil {
		t.Fatalf("claim of a dead replica's name: %v", err)
	}
	if took > ttl+2*time.Second {
		t.Errorf("claimed a dead replica's name after %v, want within its lease TTL (%v) and a second", took, ttl)
	}
	t.Logf("a dead replica's name claimed after %v", took.Round(time.Millisecond))

	fourth.Close() // gives up a name Run never held
	if _, took, err := claim("the fifth", ttl); err != nil || took > time.Second {
		t.Errorf("claim after Close: %v after %v, want at once", err, took)
	}
}

// lease is the lease of the name v claimed.
func (v *View) lease(t *testing.T) clientv3.LeaseID {
	t.Helper()
	resp, err := v.client.Get(context.Background(), v.name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the name's key: %v, %v", resp, err)
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// TestSeatTakesDeadHoldersName: a replica that claims a name held in its
// own seat (the same boot, network namespace and listening address, so
// the holder cannot be alive) takes it at once rather than wait for the
// holder's lease, and the holder's node records go with that lease.
func TestSeatTakesDeadHoldersName(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	newView := func(cli *clientv3.Client, reg *fleet.Registry, holder string) *View {
		// A lease long enough to outlast a busy machine's pauses between
		// the holder's death and the checks; the claim must not wait
		// for it.
		v, err := New(cli, reg, Options{Prefix: "/t/", Replica: "r", TTL: 10 * time.Second, Holder: holder, Seat: "boot netns 127.0.0.1:7070"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	reg := fleet.NewRegistry()
	deadCli, relay := srv.RelayedClient(t)
	dead := newView(deadCli, reg, "the dead one")
	if err := dead.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dead.Run(runCtx) }()
	reg.Connect(&sluicev1.Node{Id: "left-behind"}, "peer", 0)
	cli := srv.Client(t)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(defaultTestTimeout); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	records := func() int64 {
		resp, err := cli.Get(ctx, "/t/nodes/r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	waitFor("the node's record", func() bool { return records() == 1 })

	// Dies without a word: etcd hears nothing more from it, so its lease
	// is neither kept alive nor revoked. (Closing its client would not
	// do: Run, seeing its lease lost, may revoke it before the client's
	// connection is gone.)
	lease := dead.lease(t)
	relay.Silence()
	defer func() {
		stop()
		<-done
	}()
	if resp, err := cli.TimeToLive(ctx, lease); err != nil || resp.TTL <= 0 {
		t.Fatalf("the dead one's lease: %v, %v; want it still granted", resp, err)
	}

	begin := time.Now()
	if err := newView(cli, fleet.NewRegistry(), "its restart").Claim(ctx); err != nil {
		t.Fatalf("claim in the dead holder's seat: %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("claimed in the dead holder's seat after %v, want at once, not after its 10 s lease", took)
	}
	if n := records(); n != 0 {
		t.Errorf("%d node records of the dead holder left, want none", n)
	}
}

// TestDisagreements: each replica's settings go in its name's key, and a
// replica finds those another live one has otherwise than it, by replica
// and setting; a setting a replica does not state (it is older) is not
// compared, nor is its own key.
func TestDisagreements(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	claim := func(name string, settings map[string]string) *View {
		t.Helper()
		v, err := New(srv.Client(t), fleet.NewRegistry(), Options{Prefix: "/t/", Replica: name, TTL: 10 * time.Second, Holder: "holder " + name, Settings: settings})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Claim(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v
	}
	a := claim("a", map[string]string{"TLS": "on", "token key": "1f2e"})
	b := claim("b", map[string]string{"TLS": "on", "token key": "1f2e"})
	claim("c", map[string]string{"TLS": "off", "token key": "off"})
	claim("d", nil)
	claim("e", map[string]string{"token key": "1f2e"}) // older than "TLS"
	got, err := a.Disagreements(ctx)
	want := []Disagreement{
		{Replica: "c", Holder: "holder c", Setting: "TLS", Theirs: "off", Ours: "on"},
		{Replica: "c", Holder: "holder c", Setting: "token key", Theirs: "off", Ours: "1f2e"},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("a's disagreements: %+v, %v\nwant %+v", got, err, want)
	}
	if got, _ := b.Disagreements(ctx); len(got) != 2 || got[0].Replica != "c" {
		t.Errorf("b's disagreements: %+v, want c's two", got)
	}
}
