// Package fleet is the control plane's registry of dataplane nodes: who is or
// was connected, from where, which version each was sent and applied, the
// last version each refused with the reason it gave, and which are draining.
//
// The discovery server calls Connect when a node's stream subscribes and then
// reports on the returned Session from that stream's goroutine; the stats
// server calls Draining when a node says it began to drain; the config
// API (sluicectl nodes) and the dashboard read Nodes and Count from any
// goroutine. Every method is short and never blocks on I/O.
package fleet

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Registry holds one entry per node id. Entries outlive their streams: a
// disconnected node stays listed with connected false until Forget drops
// it, or the control plane restarts.
type Registry struct {
	now func() time.Time

	mu    sync.Mutex
	nodes map[string]*entry
	// Connected nodes by the version they applied, kept as entries change
	// so a rollout's progress is read without walking 10k entries.
	applied   map[uint64]int
	connected int

	changed func(id string) // see Observe; nil: nobody
}

// entry is what the registry knows of one node, in plain Go types so that
// the reports of 10k streams allocate nothing; Nodes turns it into
// NodeStatus messages.
type entry struct {
	id             string
	labels         map[string]string // replaced on Connect, never modified
	build          string
	connected      bool
	peer           string
	connectedSince time.Time
	lastSeen       time.Time
	acked, sent    uint64
	nacked         uint64
	nackError      string
	nackGroup      string // the group the node was in when it nacked
	nackDraining   bool   // nacked came while draining: see forgetDrainingNack
	draining       bool   // since the node said so on this connection
	instance       string // the process on the stream (Node.instance)
	retired        string // a process replaced while it drained (see retired)
	// displaced is the last process whose open stream another process of
	// the node replaced, and when; contestWarned when a session last
	// reported two processes taking turns (Contested). A process replaced
	// while it drained is refused (retired) rather than take turns.
	displaced     string
	displacedAt   time.Time
	contestWarned time.Time
	group         string // the node group its labels put it in, or ""
	groupProblem  string // why group is "", for operators

	session *Session // the stream that speaks for the node, or nil
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{now: time.Now, nodes: make(map[string]*entry), applied: make(map[uint64]int)}
}

// Observe has fn called with a node's id whenever what the registry says of
// the node changed: it connected or disconnected, was sent a version, ACKed
// or NACKed one, or began to drain; not when it was merely seen. fn runs on
// the goroutine that reported the change, with the registry locked: it must
// not block or call the registry, only take note (and read Node later).
// Call Observe before the registry is used.
func (r *Registry) Observe(fn func(id string)) { r.changed = fn }

func (r *Registry) notify(id string) {
	if r.changed != nil {
		r.changed(id)
	}
}

// Session is one stream's hold on a node's entry. Only the newest session of a
// node id updates the entry: when the node reconnects, the new stream replaces
// the old one, the old session's Superseded channel closes, and whatever it
// reports afterwards is ignored.
type Session struct {
	r          *Registry
	id         string
	superseded chan struct{}
	contested  string // see Contested
}

// contestWindow is how soon a process whose stream another process of
// the node replaced must take it back for the two to count as running
// side by side (Contested): each reconnects within seconds of losing it.
// contestWarnEvery bounds how often a node is reported so.
const (
	contestWindow    = time.Minute
	contestWarnEvery = time.Minute
)

// Contested returns where the other process connected from when this
// session took the node's stream back from a process that had taken it
// from this one within contestWindow: two processes run with one node id
// and take turns, each told its stream was replaced. At most once per
// contestWarnEvery for a node; "" otherwise.
func (s *Session) Contested() string { return s.contested }

// Connect registers a stream of node n, seen from peer, which reports running
// version running (0: none or unknown). It supersedes the node's previous
// session, if any.
func (r *Registry) Connect(n *sluicev1.Node, peer string, running uint64) *Session {
	s, _ := r.connect(n, peer, running, false)
	return s
}

// ConnectUnlessRetired is Connect, but for a process that was draining when
// another process of its node replaced its stream, while that stream is
// still open (a rolling restart): that one is refused, and it returns nil
// and where the replacement connected from. The check and the registration
// are one step, so a replacement that connects in between is not
// superseded by the process it replaced.
func (r *Registry) ConnectUnlessRetired(n *sluicev1.Node, peer string, running uint64) (s *Session, replacement string) {
	return r.connect(n, peer, running, true)
}

func (r *Registry) connect(n *sluicev1.Node, peer string, running uint64, unlessRetired bool) (*Session, string) {
	s := &Session{r: r, id: n.GetId(), superseded: make(chan struct{})}
	labels := maps.Clone(n.GetLabels())
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if unlessRetired {
		if by, retired := r.retired(n); retired {
			return nil, by
		}
	}
	e := r.nodes[s.id]
	if e == nil {
		e = &entry{id: s.id}
		r.nodes[s.id] = e
	}
	if e.session != nil {
		close(e.session.superseded)
		if inst := n.GetInstance(); e.instance != "" && inst != "" && inst != e.instance {
			if inst == e.displaced && now.Sub(e.displacedAt) < contestWindow && now.Sub(e.contestWarned) >= contestWarnEvery {
				s.contested, e.contestWarned = e.peer, now
			}
			e.displaced, e.displacedAt = e.instance, now
		}
	}
	if inst := n.GetInstance(); e.session != nil && e.draining && e.instance != "" && inst != e.instance {
		e.retired = e.instance
	}
	e.session = s
	r.uncount(e)
	defer r.count(e)
	if otherProcess(e, n.GetInstance()) {
		// A new process of the node (it restarted) has refused nothing;
		// the refusal was its predecessor's. Kept, it would read as this
		// process refusing a version it may never be sent (a halted or
		// aborted rollout's), and have apply --wait report the node as
		// refusing the version it is about to apply. A version the new
		// process refuses, it NACKs itself.
		clearNack(e)
	}
	e.labels = labels
	e.build = n.GetBuildVersion()
	e.instance = n.GetInstance()
	e.connected = true
	e.peer = peer
	e.connectedSince = now
	e.lastSeen = now
	e.draining = false // a new stream is a node starting afresh, until it says otherwise
	// What the node says it runs is what it has applied, whatever this
	// registry remembered from an earlier stream.
	e.acked = running
	clearNackIfApplied(e)
	forgetDrainingNack(e)
	r.notify(s.id)
	return s, ""
}

// retired reports whether n is a process of its node that was draining
// when another process of the node replaced its stream, and that other
// process's stream is still open: the two ran side by side in a rolling
// restart, say. Its new stream must be refused rather than replace its
// replacement's. peer is where the replacement connected from. r.mu is
// held.
func (r *Registry) retired(n *sluicev1.Node) (peer string, retired bool) {
	e := r.nodes[n.GetId()]
	if e == nil || e.session == nil || e.retired == "" || n.GetInstance() != e.retired || e.instance == e.retired {
		return "", false
	}
	return e.peer, true
}

// ID returns the node id the session speaks for.
func (s *Session) ID() string { return s.id }

// Superseded is closed when a newer stream of the same node id connected. The
// stream holding this session should end.
func (s *Session) Superseded() <-chan struct{} { return s.superseded }

// Successor returns the process (Node.instance) on the node's newest stream
// and where it connected from: once Superseded is closed, the stream that
// replaced this one, or a later one.
func (s *Session) Successor() (instance, peer string) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	e := s.r.nodes[s.id]
	return e.instance, e.peer
}

// update applies fn to the node's entry if s is still its session; nil fn
// only marks the node seen.
func (s *Session) update(fn func(e *entry)) {
	now := s.r.now()
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	e := s.r.nodes[s.id]
	if e == nil || e.session != s {
		return
	}
	e.lastSeen = now
	if fn == nil {
		return
	}
	s.r.uncount(e)
	fn(e)
	s.r.count(e)
	s.r.notify(s.id)
}

// count and uncount add e to and remove it from the tallies; callers hold mu.
func (r *Registry) count(e *entry) {
	if e.connected {
		r.connected++
		r.applied[e.acked]++
	}
}

func (r *Registry) uncount(e *entry) {
	if e.connected {
		r.connected--
		if r.applied[e.acked]--; r.applied[e.acked] == 0 {
			delete(r.applied, e.acked)
		}
	}
}

// Forget drops the nodes that are disconnected and were last seen before
// before, and returns their ids: a fleet whose nodes come and go (an
// autoscaled one, whose new nodes take new ids) would otherwise list
// every node it ever had.
func (r *Registry) Forget(before time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []string
	for id, e := range r.nodes {
		if !e.connected && e.lastSeen.Before(before) {
			delete(r.nodes, id)
			gone = append(gone, id)
			r.notify(id)
		}
	}
	slices.Sort(gone)
	return gone
}

// Seen records that the node sent something (a stale ACK, say) without
// changing its versions.
func (s *Session) Seen() { s.update(nil) }

// Sent records that version v was sent to the node.
func (s *Session) Sent(v uint64) {
	s.update(func(e *entry) { e.sent = v })
}

// Acked records that the node applied version v. A NACK of an older or the
// same version is cleared: the node has moved past it.
func (s *Session) Acked(v uint64) {
	s.update(func(e *entry) {
		e.acked = v
		clearNackIfApplied(e)
	})
}

// Placed records the node group the node's labels put it in, or, when
// group is empty, why none does. A node that moved from one group to
// another forgets its refusal: it was of the old group's version, and says
// nothing of the new group's, whose versions may be numbered below it
// (one it would then show as refusing until it applied a later one, and
// apply --wait of the new group would count as refused).
func (s *Session) Placed(group, problem string) {
	s.update(func(e *entry) {
		if group != "" && group != e.nackGroup {
			clearNack(e)
		}
		e.group, e.groupProblem = group, problem
	})
}

// Nacked records that the node refused version v, saying why. It reports
// whether the refusal speaks of the snapshot: not when the node was
// draining (it refuses whatever it is sent then), nor when a newer session
// replaced this one.
func (s *Session) Nacked(v uint64, detail string) (ofSnapshot bool) {
	s.update(func(e *entry) {
		e.nacked = v
		e.nackError = detail
		e.nackGroup = e.group
		e.nackDraining = e.draining
		ofSnapshot = !e.draining
	})
	return ofSnapshot
}

// Disconnect records that the session's stream ended. It does nothing when a
// newer session already replaced this one.
func (s *Session) Disconnect() {
	s.update(func(e *entry) {
		e.connected = false
		e.draining = false // gone: the node is no longer draining but disconnected
		e.session = nil
		forgetDrainingNack(e)
	})
}

// Draining records that node id reported, on its stats stream, that it began
// to drain: it accepts no new connections and goes away once its work is
// done. Only a connected node is marked, and the mark lasts until its
// discovery stream ends or a new one connects; a node that still drains says
// so again on its next report. Draining reports whether it marked a node
// that was not marked yet.
//
// instance is the process that said so: when the node's stream names
// another one, the report comes from an old process of the node that is
// still draining while its replacement already runs, and it is ignored.
// Either left empty (older nodes) matches.
func (r *Registry) Draining(id, instance string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[id]
	if e == nil || !e.connected || e.draining {
		return false
	}
	if otherProcess(e, instance) {
		return false
	}
	e.draining = true
	r.notify(id)
	return true
}

// Seen records that node id, as process instance, was heard from now (its
// stats stream reports, NodeStatus.last_seen). Only a connected node's
// current process is marked; no observer is told, as the mark is not worth
// a write of the node's record.
func (r *Registry) Seen(id, instance string) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nodes[id]; e != nil && e.connected && !otherProcess(e, instance) {
		e.lastSeen = now
	}
}

// Replaced reports whether instance is a process of node id that another
// process replaced: the node's newest stream names another instance. Its
// reports of the node's endpoints are then an old process's (draining
// beside its replacement), and must not be taken for the node's. Either
// empty (an older node) is never replaced.
func (r *Registry) Replaced(id, instance string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[id]
	return e != nil && otherProcess(e, instance)
}

// Group is the node group node id is in now ("" when none, or it is not
// known here).
func (r *Registry) Group(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nodes[id]; e != nil {
		return e.group
	}
	return ""
}

// otherProcess reports whether instance is not the process on e's newest
// stream; either empty (an older node) matches.
func otherProcess(e *entry, instance string) bool {
	return instance != "" && e.instance != "" && instance != e.instance
}

func clearNackIfApplied(e *entry) {
	if e.nacked != 0 && e.acked >= e.nacked {
		clearNack(e)
	}
}

// clearNack forgets the node's last refusal.
func clearNack(e *entry) { e.nacked, e.nackError, e.nackGroup, e.nackDraining = 0, "", "", false }

// forgetDrainingNack drops a refusal made while the node drained ("node is
// shutting down"), when its stream ends or a new one starts: it said
// nothing about the version, and must not read as a refusal of it (to a
// staged rollout or apply --wait) once the node no longer shows as
// draining. A restarted node is sent the version again.
func forgetDrainingNack(e *entry) {
	if e.nackDraining {
		clearNack(e)
	}
}

// Count returns how many connected nodes have applied version, and how many
// nodes are connected: a rollout's progress, without copying the fleet.
func (r *Registry) Count(version uint64) (applied, connected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied[version], r.connected
}

// Nodes returns every node's status, sorted by id. The label maps are shared
// with the registry (which replaces them, never modifies them): treat them as
// read-only.
func (r *Registry) Nodes() []*sluicev1.NodeStatus {
	r.mu.Lock()
	out := make([]*sluicev1.NodeStatus, 0, len(r.nodes))
	for _, e := range r.nodes {
		out = append(out, e.status())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *sluicev1.NodeStatus) int { return cmp.Compare(a.Id, b.Id) })
	return out
}

// Node returns one node's status, with the label map shared as in Nodes.
func (r *Registry) Node(id string) (*sluicev1.NodeStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[id]
	if e == nil {
		return nil, false
	}
	return e.status(), true
}

func (e *entry) status() *sluicev1.NodeStatus {
	return &sluicev1.NodeStatus{
		Id:             e.id,
		Labels:         e.labels,
		BuildVersion:   e.build,
		Connected:      e.connected,
		Peer:           e.peer,
		ConnectedSince: timestamppb.New(e.connectedSince),
		LastSeen:       timestamppb.New(e.lastSeen),
		AckedVersion:   e.acked,
		SentVersion:    e.sent,
		NackedVersion:  e.nacked,
		NackError:      e.nackError,
		Draining:       e.draining,
		Group:          e.group,
		GroupProblem:   e.groupProblem,
	}
}
