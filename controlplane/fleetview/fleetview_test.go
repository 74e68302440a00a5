package fleetview

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

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
