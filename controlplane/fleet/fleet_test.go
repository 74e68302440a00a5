package fleet

import (
	"slices"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func node(id string) *sluicev1.Node {
	return &sluicev1.Node{Id: id, Labels: map[string]string{"zone": "a"}, BuildVersion: "dev"}
}

func mustNode(t *testing.T, r *Registry, id string) *sluicev1.NodeStatus {
	t.Helper()
	st, ok := r.Node(id)
	if !ok {
		t.Fatalf("node %s not registered", id)
	}
	return st
}

func TestAckNackLifecycle(t *testing.T) {
	r := NewRegistry()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }

	s := r.Connect(node("n1"), "10.0.0.1:5555", 0)
	st := mustNode(t, r, "n1")
	if !st.Connected || st.Peer != "10.0.0.1:5555" || st.Labels["zone"] != "a" || st.BuildVersion != "dev" {
		t.Errorf("after Connect: %v", st)
	}
	if !st.ConnectedSince.AsTime().Equal(clock) {
		t.Errorf("connected_since = %v, want %v", st.ConnectedSince.AsTime(), clock)
	}

	clock = clock.Add(time.Second)
	s.Sent(1)
	s.Acked(1)
	s.Sent(2)
	s.Nacked(2, "listener public: bind: address in use")
	st = mustNode(t, r, "n1")
	if st.SentVersion != 2 || st.AckedVersion != 1 || st.NackedVersion != 2 || st.NackError != "listener public: bind: address in use" {
		t.Errorf("after NACK: sent=%d acked=%d nacked=%d err=%q", st.SentVersion, st.AckedVersion, st.NackedVersion, st.NackError)
	}
	if !st.LastSeen.AsTime().Equal(clock) {
		t.Errorf("last_seen = %v, want %v", st.LastSeen.AsTime(), clock)
	}

	// An ACK of an older version does not clear the NACK...
	s.Acked(1)
	if st = mustNode(t, r, "n1"); st.NackedVersion != 2 {
		t.Errorf("NACK cleared by an older ACK: %v", st)
	}
	// ...a newer one does.
	s.Sent(3)
	s.Acked(3)
	if st = mustNode(t, r, "n1"); st.NackedVersion != 0 || st.NackError != "" || st.AckedVersion != 3 {
		t.Errorf("after newer ACK: nacked=%d err=%q acked=%d", st.NackedVersion, st.NackError, st.AckedVersion)
	}

	s.Disconnect()
	if st = mustNode(t, r, "n1"); st.Connected {
		t.Error("still connected after Disconnect")
	}
	if st.AckedVersion != 3 {
		t.Errorf("disconnected node lost its acked version: %d", st.AckedVersion)
	}
}

// last_seen follows what the stats stream of the node's current process
// says it heard, while the node is connected.
func TestSeen(t *testing.T) {
	r := NewRegistry()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	s := r.Connect(&sluicev1.Node{Id: "n1", Instance: "new"}, "10.0.0.1:5555", 0)
	lastSeen := func() time.Time { return mustNode(t, r, "n1").GetLastSeen().AsTime() }

	clock = clock.Add(time.Minute)
	r.Seen("n1", "new")
	if got := lastSeen(); !got.Equal(clock) {
		t.Errorf("last_seen = %v after Seen, want %v", got, clock)
	}
	heard := clock
	clock = clock.Add(time.Minute)
	r.Seen("n1", "old") // a draining process the new one replaced
	r.Seen("n2", "")    // not registered
	if got := lastSeen(); !got.Equal(heard) {
		t.Errorf("last_seen = %v after another process's Seen, want %v", got, heard)
	}
	s.Disconnect()
	gone := clock
	clock = clock.Add(time.Minute)
	r.Seen("n1", "new")
	if got := lastSeen(); !got.Equal(gone) {
		t.Errorf("last_seen = %v after Seen of a disconnected node, want %v, when it disconnected", got, gone)
	}
}

// A rolling restart that starts the new process while the old one drains,
// both with the node's id: once the new one took the stream, the old one
// must not take it back, or the node would show as draining again and the
// two would swap the stream to and fro.
func TestDrainingProcessReplacedIsRetired(t *testing.T) {
	r := NewRegistry()
	oldProc := &sluicev1.Node{Id: "n1", Instance: "old"}
	newProc := &sluicev1.Node{Id: "n1", Instance: "new"}
	connect := func(n *sluicev1.Node, peer string) *Session {
		t.Helper()
		s, by := r.ConnectUnlessRetired(n, peer, 2)
		if s == nil {
			t.Fatalf("process %s from %s refused (replaced by %s)", n.GetInstance(), peer, by)
		}
		return s
	}
	old := connect(oldProc, "10.0.0.1:1")
	// Not draining yet: the newer process replaces it, and it may come back
	// (two processes with one id, or a restart the registry missed).
	connect(newProc, "10.0.0.1:2")
	old = connect(oldProc, "10.0.0.1:3")
	if !r.Draining("n1", "old") {
		t.Fatal("old process's draining not recorded")
	}
	fresh := connect(newProc, "10.0.0.1:4")
	if inst, peer := old.Successor(); inst != "new" || peer != "10.0.0.1:4" {
		t.Errorf("Successor = %q, %q; want new, 10.0.0.1:4", inst, peer)
	}
	s, by := r.ConnectUnlessRetired(oldProc, "10.0.0.1:5", 2)
	if s != nil || by != "10.0.0.1:4" {
		t.Fatalf("ConnectUnlessRetired(old) = %v, %q; want nil, 10.0.0.1:4", s, by)
	}
	if st := mustNode(t, r, "n1"); st.Draining || st.Peer != "10.0.0.1:4" {
		t.Errorf("after the refusal: draining %v, peer %s; want the new process's stream from 10.0.0.1:4", st.Draining, st.Peer)
	}
	select {
	case <-fresh.Superseded():
		t.Fatal("the refused process superseded its replacement")
	default:
	}
	// The replacement may reconnect; it is not refused.
	fresh = connect(newProc, "10.0.0.1:6")

	// Once the replacement's stream is gone, the old process may hold the
	// node again (the new one failed), and reconnect as often as it must.
	fresh.Disconnect()
	connect(oldProc, "10.0.0.1:7")
	connect(oldProc, "10.0.0.1:8")
}

func TestReconnectSupersedes(t *testing.T) {
	r := NewRegistry()
	old := r.Connect(node("n1"), "peer-a", 0)
	old.Sent(4)
	old.Nacked(4, "bad")
	fresh := r.Connect(&sluicev1.Node{Id: "n1", BuildVersion: "v2"}, "peer-b", 3)

	select {
	case <-old.Superseded():
	default:
		t.Fatal("old session not superseded by the new stream")
	}
	select {
	case <-fresh.Superseded():
		t.Fatal("new session superseded")
	default:
	}

	st := mustNode(t, r, "n1")
	if st.Peer != "peer-b" || st.BuildVersion != "v2" || len(st.Labels) != 0 || st.AckedVersion != 3 {
		t.Errorf("after reconnect: %v", st)
	}
	if st.NackedVersion != 4 {
		t.Errorf("reconnect running an older version cleared the NACK of 4: %v", st)
	}

	// The old stream's late reports and its end do not touch the new one.
	old.Acked(9)
	old.Disconnect()
	st = mustNode(t, r, "n1")
	if !st.Connected || st.AckedVersion != 3 {
		t.Errorf("old session changed the entry: connected=%v acked=%d", st.Connected, st.AckedVersion)
	}
	fresh.Acked(5)
	if st = mustNode(t, r, "n1"); st.AckedVersion != 5 || st.NackedVersion != 0 {
		t.Errorf("new session's ACK: %v", st)
	}
}

// A node's refusal is its process's: the same process reconnecting keeps
// it, a new process of the node (a restart) starts without one, so that
// sluicectl nodes and apply --wait do not take it for a refusal of the
// version the new process is sent (its group's, after a rollout halted on
// the refusal).
func TestNewProcessStartsWithoutNack(t *testing.T) {
	r := NewRegistry()
	proc := func(instance string) *sluicev1.Node { return &sluicev1.Node{Id: "n1", Instance: instance} }
	s := r.Connect(proc("a"), "p", 6)
	s.Sent(7)
	s.Nacked(7, "listener taken: bind: address already in use")
	s.Sent(6) // the rollout halted: back to the group's version
	s.Acked(6)
	if st := mustNode(t, r, "n1"); st.NackedVersion != 7 || st.AckedVersion != 6 {
		t.Fatalf("after the canary's refusal and the halt: nacked=%d acked=%d, want 7 6", st.NackedVersion, st.AckedVersion)
	}
	s.Disconnect()
	s = r.Connect(proc("a"), "p", 6) // the same process, a new stream
	if st := mustNode(t, r, "n1"); st.NackedVersion != 7 || st.NackError == "" {
		t.Errorf("the same process reconnected and its refusal was forgotten: %v", st)
	}
	s.Disconnect()
	r.Connect(proc("b"), "p", 0) // the node restarted
	if st := mustNode(t, r, "n1"); st.NackedVersion != 0 || st.NackError != "" {
		t.Errorf("a new process of the node shows its predecessor's refusal: nacked=%d err=%q", st.NackedVersion, st.NackError)
	}

	// A new process that replaces a live stream (a rolling restart) too.
	s = r.Connect(proc("c"), "p", 6)
	s.Sent(8)
	s.Nacked(8, "bad")
	r.Connect(proc("d"), "p", 0)
	if st := mustNode(t, r, "n1"); st.NackedVersion != 0 {
		t.Errorf("the replacement shows the replaced process's refusal: %v", st)
	}
}

// A refusal is of a version of the node's group: a node that moves to
// another group, whose versions may be numbered below it, forgets it.
func TestMovedNodeForgetsOldGroupsNack(t *testing.T) {
	r := NewRegistry()
	s := r.Connect(&sluicev1.Node{Id: "n1", Instance: "a"}, "p", 10)
	s.Placed("edge", "")
	s.Sent(11)
	s.Nacked(11, "listener taken: bind: address already in use")
	s.Placed("edge", "") // placed again, in the same group: kept
	if st := mustNode(t, r, "n1"); st.NackedVersion != 11 {
		t.Fatalf("re-placed in its group: nacked=%d, want 11", st.NackedVersion)
	}
	s.Placed("", "no group's selector matches its labels") // in no group: kept
	if st := mustNode(t, r, "n1"); st.NackedVersion != 11 {
		t.Fatalf("in no group: nacked=%d, want 11", st.NackedVersion)
	}
	s.Placed("default", "") // moved, by way of no group: default's version 10 is next
	if st := mustNode(t, r, "n1"); st.NackedVersion != 0 || st.NackError != "" || st.Group != "default" {
		t.Errorf("moved to default: group=%q nacked=%d err=%q; want default, no refusal", st.Group, st.NackedVersion, st.NackError)
	}
}

func TestNodesSortedAndCopied(t *testing.T) {
	r := NewRegistry()
	for _, id := range []string{"c", "a", "b"} {
		r.Connect(node(id), "p", 0)
	}
	r.Connect(node("a"), "p", 0).Disconnect()
	nodes := r.Nodes()
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.Id)
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("ids = %v, want [a b c]", ids)
	}
	if nodes[0].Connected || !nodes[1].Connected {
		t.Errorf("connected = %v %v, want false true", nodes[0].Connected, nodes[1].Connected)
	}
	nodes[1].AckedVersion = 42
	if st := mustNode(t, r, "b"); st.AckedVersion == 42 {
		t.Error("Nodes returned the registry's own message")
	}
}

func TestCount(t *testing.T) {
	r := NewRegistry()
	r.Connect(node("a"), "p", 0).Acked(2)
	r.Connect(node("b"), "p", 0).Acked(1)
	gone := r.Connect(node("c"), "p", 0)
	gone.Acked(2)
	gone.Disconnect()
	if applied, connected := r.Count(2); applied != 1 || connected != 2 {
		t.Errorf("Count(2) = %d, %d; want 1, 2", applied, connected)
	}
}

// Count's tallies agree with a walk over the statuses through every kind of
// change.
func TestCountMatchesStatuses(t *testing.T) {
	r := NewRegistry()
	check := func(step string) {
		t.Helper()
		for v := uint64(0); v <= 3; v++ {
			wantApplied, wantConnected := 0, 0
			for _, st := range r.Nodes() {
				if st.Connected {
					wantConnected++
					if st.AckedVersion == v {
						wantApplied++
					}
				}
			}
			if applied, connected := r.Count(v); applied != wantApplied || connected != wantConnected {
				t.Errorf("%s: Count(%d) = %d, %d; want %d, %d", step, v, applied, connected, wantApplied, wantConnected)
			}
		}
	}
	a := r.Connect(node("a"), "p", 1)
	b := r.Connect(node("b"), "p", 0)
	check("connect")
	a.Acked(2)
	b.Nacked(2, "x")
	check("ack")
	a2 := r.Connect(node("a"), "p", 3) // reconnect while the old stream is open
	check("reconnect")
	a.Disconnect() // the superseded stream ends: no change
	a.Acked(1)
	check("stale session")
	a2.Disconnect()
	check("disconnect")
	r.Connect(node("a"), "p", 2)
	check("connect again")
}

// TestDraining: a connected node that says it drains shows draining until
// its stream ends (then it is just disconnected) or a new stream connects.
func TestDraining(t *testing.T) {
	r := NewRegistry()
	if r.Draining("ghost", "") {
		t.Error("Draining marked a node that never connected")
	}
	if _, ok := r.Node("ghost"); ok {
		t.Error("Draining registered a node that never connected")
	}

	s := r.Connect(node("n1"), "p", 0)
	if st := mustNode(t, r, "n1"); st.Draining {
		t.Fatalf("draining before the node said so: %v", st)
	}
	if !r.Draining("n1", "") {
		t.Error("Draining(n1) = false for a connected node, want true")
	}
	if r.Draining("n1", "") {
		t.Error("second Draining(n1) = true, want false: already marked")
	}
	s.Sent(2)
	s.Acked(2)
	if st := mustNode(t, r, "n1"); !st.Connected || !st.Draining || st.AckedVersion != 2 {
		t.Errorf("after Draining and an ACK: connected=%v draining=%v acked=%d, want true true 2", st.Connected, st.Draining, st.AckedVersion)
	}

	s.Disconnect()
	if st := mustNode(t, r, "n1"); st.Connected || st.Draining {
		t.Errorf("after Disconnect: connected=%v draining=%v, want false false", st.Connected, st.Draining)
	}
	// A late report of the gone node does not mark it.
	if r.Draining("n1", "") || mustNode(t, r, "n1").Draining {
		t.Error("Draining marked a disconnected node")
	}

	s = r.Connect(node("n1"), "p", 2)
	r.Draining("n1", "")
	// The node restarts: its new stream supersedes the old before the old ended.
	r.Connect(node("n1"), "p", 0)
	if st := mustNode(t, r, "n1"); !st.Connected || st.Draining {
		t.Errorf("after a new stream: connected=%v draining=%v, want true false", st.Connected, st.Draining)
	}
	s.Disconnect() // the superseded stream's end changes nothing
	if st := mustNode(t, r, "n1"); !st.Connected || st.Draining {
		t.Errorf("after the old stream ended: connected=%v draining=%v, want true false", st.Connected, st.Draining)
	}
}

// TestDrainingOfAnotherInstance: a node restarted under the same id is a new
// process; the old one, still draining, keeps reporting so, and must not
// mark the new one.
func TestDrainingOfAnotherInstance(t *testing.T) {
	r := NewRegistry()
	n := node("n1")
	n.Instance = "new"
	r.Connect(n, "p", 0)
	if r.Draining("n1", "old") {
		t.Error("Draining(n1, old) = true while instance new runs, want false")
	}
	if st := mustNode(t, r, "n1"); st.Draining {
		t.Errorf("new instance shows draining after the old one's report: %v", st)
	}
	if !r.Draining("n1", "new") {
		t.Error("Draining(n1, new) = false, want true")
	}
}

// TestForget: only the nodes disconnected and last seen before the time
// are forgotten, and each is told to the observer.
func TestForget(t *testing.T) {
	r := NewRegistry()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	var told []string
	r.Observe(func(id string) { told = append(told, id) })
	old := r.Connect(node("old"), "p", 0)
	old.Disconnect()
	clock = clock.Add(time.Hour)
	recent := r.Connect(node("recent"), "p", 0)
	recent.Disconnect()
	r.Connect(node("live"), "p", 0) // connected an hour after old left
	told = nil
	if gone := r.Forget(clock.Add(-time.Minute)); !slices.Equal(gone, []string{"old"}) || !slices.Equal(told, []string{"old"}) {
		t.Errorf("Forget: %v, told %v; want old", gone, told)
	}
	if _, ok := r.Node("old"); ok {
		t.Error("old is still listed")
	}
	for _, id := range []string{"recent", "live"} {
		if _, ok := r.Node(id); !ok {
			t.Errorf("%s was forgotten", id)
		}
	}
	gone := r.Forget(clock.Add(time.Hour))
	if _, connected := r.Count(0); !slices.Equal(gone, []string{"recent"}) || connected != 1 {
		t.Errorf("Forget later: %v, %d connected; want recent, 1", gone, connected)
	}
}

// Two processes run with one node id, neither draining: each takes the
// stream back from the other within seconds. The session that takes it
// back names the other's peer, once a minute at most; a process that
// replaced another only once (a restart, a rolling one whose old process
// drains) is not reported.
func TestTwoProcessesContestTheNode(t *testing.T) {
	r := NewRegistry()
	clock := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return clock }
	a := &sluicev1.Node{Id: "n1", Instance: "a"}
	b := &sluicev1.Node{Id: "n1", Instance: "b"}
	contested := func(n *sluicev1.Node, peer, want string) {
		t.Helper()
		clock = clock.Add(3 * time.Second)
		if got := r.Connect(n, peer, 1).Contested(); got != want {
			t.Errorf("process %s from %s: Contested() = %q, want %q", n.GetInstance(), peer, got, want)
		}
	}
	contested(a, "10.0.0.1:1", "")
	contested(a, "10.0.0.1:2", "") // the same process reconnects
	contested(b, "10.0.0.2:1", "") // another one replaces it: a restart, maybe
	contested(a, "10.0.0.1:3", "10.0.0.2:1")
	contested(b, "10.0.0.2:2", "") // reported a moment ago
	clock = clock.Add(time.Minute)
	contested(a, "10.0.0.1:4", "") // b took it from a a minute ago: not taking turns
	contested(b, "10.0.0.2:3", "10.0.0.1:4")

	// A rolling restart: the old process drains, the new one takes over,
	// and the old one's later stream is refused; nothing is contested.
	r = NewRegistry()
	r.now = func() time.Time { return clock }
	contested(a, "10.0.0.1:1", "")
	r.Draining("n1", "a")
	contested(b, "10.0.0.2:1", "")
	if s, _ := r.ConnectUnlessRetired(a, "10.0.0.1:2", 1); s != nil {
		t.Errorf("the drained process took the node back; Contested() = %q", s.Contested())
	}
}
