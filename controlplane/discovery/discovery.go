// Package discovery serves snapshots to dataplane nodes over
// sluice.v1.DiscoveryService, in the manner of xDS state of the world.
//
// A node opens StreamSnapshots and sends a first message naming itself (Node)
// and the version it already runs. Its labels put it in one node group
// (package groups); it is sent that group's snapshot, labelled with the
// version at which the group's snapshot last changed. The server sends the
// group's snapshot when the node does not run it; after that, whenever the
// node has answered the last response and the group's version differs from
// what the node runs, it sends that one. A node in no group (or in two) is
// sent nothing and keeps what it runs. Only
// changes are sent: a stream is sent a version at most once, so a version the
// node NACKed is not sent again on that stream, and the next new one is sent
// normally. Each response carries the version as a decimal string and a
// per-stream nonce; the node answers with that nonce, an empty error_detail
// meaning ACK and a non-empty one NACK. Answers with another nonce are stale
// and ignored. ACKs and NACKs land in the fleet registry.
//
// Goroutines: Run (one, started by the owner) follows the store and Publishes
// each new version; gRPC runs each stream's handler, which is the stream's
// only goroutine. Publish wakes all streams by closing one channel and never
// waits for them; each stream sends from its own goroutine, so a slow node
// holds up only its own stream. A group's snapshot is marshalled once per
// change and its bytes are shared by all the group's streams (see wire.go).
//
// On a replica that shares its store with others (HoldWhenBehind), a node
// that announces a version newer than the newest this server has published
// was sent it by another replica, and this one lags the store (its watch is
// behind, or it cannot read the store): what it would send is older than
// what the node runs. It sends nothing until it has caught up. Every
// LagWait it asks the store itself, and sends what it has only when the
// store's current version is older than the node's: the versions were
// numbered afresh (a new etcd, an etcd restored from a backup).
//
// A node that sets accept_placement is sent its group when the stream
// starts and whenever that changes, or, in no group, why, in a response of
// its own that it does not answer.
//
// A node that sets accept_deltas is sent, when it is smaller, a delta from
// the version it runs (the one it announced, ACKed, or said it still runs in
// a NACK) instead of the whole snapshot; each delta is encoded once per
// (base, version) pair and shared too (see delta.go).
package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/controlplane/store"
	nodelabels "github.com/sluice-lb/sluice/internal/labels"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// maxErrorDetail is the longest NACK text kept, in runes (the API's limit).
const maxErrorDetail = 4096

// LagWait is how long a stream holds back an older version from a node that
// runs a newer one than this server has published before it asks the store
// whether its versions were numbered afresh, and then again between asks
// (see the package comment). A replica's watch of etcd is normally
// milliseconds behind.
const LagWait = 10 * time.Second

// headEvery is how long a read of the store's current version serves every
// stream that asks (storeVersion): a store numbered afresh holds every node
// of the fleet, and they should not each read it.
const headEvery = time.Second

// Server implements sluicev1.DiscoveryServiceServer. It must be registered on
// a grpc.Server built with ServerOption.
type Server struct {
	sluicev1.UnimplementedDiscoveryServiceServer

	fleet *fleet.Registry
	obs   Observer
	sizes SizeObserver // obs, when it wants sizes; nil otherwise
	log   *slog.Logger

	publishMu sync.Mutex            // serialises Publish
	latest    atomic.Pointer[state] // never nil

	closeOnce sync.Once
	closed    chan struct{}

	lagWait time.Duration // HoldWhenBehind's; 0: no hold
	head    storeHead

	refusals *refusalWriter // KeepRefusals'; nil: not kept
}

// storeHead is the store's current version as storeVersion last read it.
type storeHead struct {
	mu      sync.Mutex
	st      store.Store // HoldWhenBehind's
	at      time.Time   // of the last read
	version uint64
	ok      bool // the last read succeeded
}

// state is one version of the configuration as streams send it. It is
// immutable except for next, which Publish closes when a newer version
// replaces it.
type state struct {
	version uint64                // of the whole configuration; 0: nothing published yet
	config  *sluicev1.FleetConfig // as published (Config); nil: nothing yet
	set     *groups.Set
	placing bool                  // set places the nodes: false until the groups are known
	byGroup map[string]*published // groups with a snapshot to send
	canary  map[string]*canary    // groups with a rollout in its canary phase
	// backFrom is the version published before, when the store went
	// back to this one: a node that runs one up to it runs what the store
	// lost, and has no newer version for this server to catch up with
	// (see serve's lag). 0 otherwise.
	backFrom uint64
	next     chan struct{}
}

// canary is a group's rollout: the nodes that are sent its snapshot
// instead of the group's.
type canary struct {
	nodes map[string]bool
	p     *published
}

// published is one group's snapshot as its streams send it; immutable.
type published struct {
	version uint64 // at which the group's snapshot last changed
	label   string // version as sent in version_info
	body    []byte // field 3 of the response, shared by every stream

	// For deltas; deltas is filled as streams need them.
	res    *resources   // body by resource; nil: no delta to or from it
	bases  []*resources // the group's versions before, newest first
	deltas deltaCache
}

// Observer is told of every push and of the node's answer to it (the
// control plane's metrics). Its methods are called from stream goroutines
// and must not block.
type Observer interface {
	// Pushed: a version was sent to a node.
	Pushed()
	// Answered: the node ACKed (nack false) or NACKed the version it was
	// sent, took after it was sent.
	Answered(nack bool, took time.Duration)
}

// SizeObserver is what an Observer also implements to be told the form and
// size of each push (see Observer for when it is called).
type SizeObserver interface {
	// PushedBytes: a push of n bytes of snapshot, or of delta, was sent.
	PushedBytes(delta bool, n int)
}

type nopObserver struct{}

func (nopObserver) Pushed()                      {}
func (nopObserver) Answered(bool, time.Duration) {}

// New returns a server that records nodes in reg, tells obs (nil: nobody)
// of pushes and answers, and logs connects, ACKs, NACKs and disconnects to
// log (nil: no logging). Until the first Publish it has nothing to send.
func New(reg *fleet.Registry, obs Observer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	s := &Server{fleet: reg, obs: obs, log: log, closed: make(chan struct{})}
	s.sizes, _ = obs.(SizeObserver)
	set, _ := groups.Compile(nil) // no groups: nobody is placed yet
	s.latest.Store(&state{set: set, next: make(chan struct{})})
	return s
}

var _ sluicev1.DiscoveryServiceServer = (*Server)(nil)

// HoldWhenBehind makes s hold back its version from a node that runs a
// newer one, as a replica sharing st with others must (see the package
// comment), asking st every wait whether it was numbered afresh. A lone
// control plane does not hold: a node ahead of it can only come from a
// store numbered afresh. It returns s; call it before serving.
func (s *Server) HoldWhenBehind(wait time.Duration, st store.Store) *Server {
	s.lagWait, s.head.st = wait, st
	return s
}

// storeVersion returns the store's current version, read at most once per
// headEvery; ok is false when the read failed.
func (s *Server) storeVersion(ctx context.Context) (version uint64, ok bool) {
	h := &s.head
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < headEvery {
		return h.version, h.ok
	}
	rctx, cancel := context.WithTimeout(ctx, headEvery)
	infos, err := h.st.History(rctx, 1)
	cancel()
	h.at, h.ok, h.version = time.Now(), err == nil, 0
	if err == nil && len(infos) > 0 {
		h.version = infos[0].GetVersion()
	}
	return h.version, h.ok
}

// Publish makes snap, as version, what every stream sends: a configuration
// of one catch-all group. It is PublishConfig for callers without groups.
func (s *Server) Publish(version uint64, snap *sluicev1.Snapshot) error {
	return s.PublishConfig(version, &sluicev1.FleetConfig{Groups: []*sluicev1.Group{
		{Name: groups.Default, Snapshot: snap, Version: version},
	}})
}

// PublishConfig makes cfg, as version, what streams send: each stream the
// snapshot of its node's group. A version not above the published one is
// ignored (versions only rise). A group whose snapshot did not change since
// the last PublishConfig keeps its encoding; a changed one is marshalled
// once. Then all streams wake, without waiting for any of them. cfg must not
// be modified afterwards.
func (s *Server) PublishConfig(version uint64, cfg *sluicev1.FleetConfig) error {
	return s.publishConfig(version, cfg, false)
}

// publishConfig is PublishConfig; back publishes a version below the
// published one too, as Run does when the store went back.
func (s *Server) publishConfig(version uint64, cfg *sluicev1.FleetConfig, back bool) error {
	set, err := groups.Compile(cfg)
	if err != nil {
		return fmt.Errorf("discovery: version %d: %w", version, err)
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	old := s.latest.Load()
	if version == old.version || version < old.version && !back {
		return nil
	}
	next := &state{version: version, config: cfg, set: set, placing: true, byGroup: make(map[string]*published, len(cfg.GetGroups())),
		canary: map[string]*canary{}, next: make(chan struct{})}
	if version < old.version {
		next.backFrom = max(old.version, old.backFrom)
	}
	for _, g := range cfg.GetGroups() {
		if r := g.GetRollout(); r.GetState() == sluicev1.RolloutState_ROLLOUT_STATE_CANARY {
			c := &canary{nodes: make(map[string]bool, len(r.GetCanaries()))}
			for _, id := range r.GetCanaries() {
				c.nodes[id] = true
			}
			// Canaries run the group's version: deltas start from there.
			prev := old.byGroup[g.GetName()]
			if was := old.canary[g.GetName()]; was != nil && was.p.version == r.GetVersion() {
				c.p = was.p
			} else if c.p, err = encodePublished(r.GetVersion(), r.GetSnapshot(), prev); err != nil {
				return fmt.Errorf("discovery: encode canary version %d of group %s: %w", r.GetVersion(), g.GetName(), err)
			}
			next.canary[g.GetName()] = c
		}
		if g.GetVersion() == 0 {
			continue // nothing applied to the group yet
		}
		if p := old.byGroup[g.GetName()]; p != nil && p.version == g.GetVersion() {
			next.byGroup[g.GetName()] = p
			continue
		}
		p, err := encodePublished(g.GetVersion(), g.GetSnapshot(), old.byGroup[g.GetName()])
		if err != nil {
			return fmt.Errorf("discovery: encode version %d of group %s: %w", g.GetVersion(), g.GetName(), err)
		}
		next.byGroup[g.GetName()] = p
	}
	s.latest.Store(next)
	close(old.next)
	return nil
}

// placeBy has the groups of cfg, the configuration of a store that holds
// no version yet, place the nodes, which are sent nothing: so that before
// the first apply, nodes show in the default group as groups counts them.
// It does nothing once a version is published.
func (s *Server) placeBy(cfg *sluicev1.FleetConfig) error {
	set, err := groups.Compile(cfg)
	if err != nil {
		return fmt.Errorf("discovery: the initial groups: %w", err)
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	old := s.latest.Load()
	if old.version != 0 || old.placing {
		return nil
	}
	s.latest.Store(&state{set: set, placing: true, next: make(chan struct{})})
	close(old.next)
	return nil
}

func encodePublished(version uint64, snap *sluicev1.Snapshot, prev *published) (*published, error) {
	body, err := encodeSnapshotField(snap)
	if err != nil {
		return nil, err
	}
	label := strconv.FormatUint(version, 10)
	return &published{
		version: version,
		label:   label,
		body:    body,
		res:     indexResources(version, label, body),
		bases:   basesAfter(prev),
		deltas:  deltaCache{byBase: make(map[uint64]*cachedDelta)},
	}, nil
}

// Version returns the published version (0 before the first Publish).
func (s *Server) Version() uint64 { return s.latest.Load().version }

// Config returns the published version and configuration (0 and nil
// before the first Publish): what nodes are sent, which the store may no
// longer be able to say while it cannot be reached. It must not be
// modified.
func (s *Server) Config() (uint64, *sluicev1.FleetConfig) {
	st := s.latest.Load()
	return st.version, st.config
}

// GroupVersions returns the version each group's nodes are sent, for the
// groups that have one, and that of each rollout's canaries.
func (s *Server) GroupVersions() []uint64 {
	st := s.latest.Load()
	out := make([]uint64, 0, len(st.byGroup)+len(st.canary))
	for _, p := range st.byGroup {
		out = append(out, p.version)
	}
	for _, c := range st.canary {
		out = append(out, c.p.version) // run by the canaries alone
	}
	return out
}

// Backoff of Run between failed reads of an announced version.
const (
	minLoadBackoff = 100 * time.Millisecond
	maxLoadBackoff = 5 * time.Second
)

// Run publishes every version st announces until ctx ends or st is closed.
// The owner starts it on its own goroutine, once.
//
// A version that cannot be read (etcd lost its quorum, say) is not fatal:
// streams keep sending the last published version, as nodes keep running
// theirs while the control plane is away, and Run reads again with growing
// waits (minLoadBackoff to maxLoadBackoff), moving on to a newer version as
// soon as one is announced. Only a version that reads fine but cannot be
// published ends Run with an error.
func (s *Server) Run(ctx context.Context, st store.Store) error {
	watch := st.Watch(ctx)
	// A store with nothing applied announces no version; its groups (the
	// catch-all default) place the nodes all the same.
	if cur, err := st.Current(ctx); err == nil && cur.Info.GetVersion() == 0 {
		if err := s.placeBy(cur.Config); err != nil {
			return err
		}
	}
	backoff := minLoadBackoff
	for {
		v, ok := <-watch
		if !ok {
			return ctx.Err()
		}
		for {
			err := s.load(ctx, st, v)
			if err == nil || ctx.Err() != nil {
				break
			}
			var perr publishError
			if errors.As(err, &perr) {
				return err
			}
			s.log.Warn("cannot read the new version; nodes keep the last published one; retrying",
				"version", v, "published", s.Version(), "retry_in", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			case newer, ok := <-watch:
				if !ok {
					return ctx.Err()
				}
				v = newer
			}
			backoff = min(2*backoff, maxLoadBackoff)
		}
		backoff = minLoadBackoff
	}
}

// publishError is an announced version that was read but cannot be
// published: reading it again would not help.
type publishError struct{ error }

func (e publishError) Unwrap() error { return e.error }

// load reads version v from st and publishes it. A version pruned
// meanwhile is skipped: a newer one follows.
func (s *Server) load(ctx context.Context, st store.Store, v uint64) error {
	ver, err := st.Get(ctx, v)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("discovery: load version %d: %w", v, err)
	}
	// The store announces rising versions, except when it went back (its
	// etcd was replaced or restored from a backup): then this is where it
	// is now, and nodes follow it there.
	published := s.Version()
	if err := s.publishConfig(v, ver.Config, v < published); err != nil {
		return publishError{err}
	}
	if v < published {
		s.log.Warn("the store went back: publishing its version, older than the one published; nodes that run a newer one are taken back to it",
			"version", v, "published_before", published)
		return nil
	}
	s.log.Info("publishing version", "version", v)
	return nil
}

// Close ends every stream with UNAVAILABLE, so nodes reconnect (to another
// replica, or to this one after its restart), and refuses new ones. A stream
// waiting for its node's answer to a response ends once the answer comes (or
// when grpc.Server.Stop cuts it). Call Close before grpc.Server.GracefulStop,
// which otherwise waits for streams that never end by themselves.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closed) }) }

// StreamSnapshots implements sluicev1.DiscoveryServiceServer.
//
// The handler's goroutine is the stream's only one: it waits for a version
// the node does not run, sends it, reads the node's answer, and waits again.
// A node answers every response, so reading only while an answer is due
// loses nothing (the transport buffers what arrives meanwhile), and each node
// has one response in flight at a time: versions published while it applies
// one coalesce into the newest. One goroutine per stream rather than two
// matters at 10k nodes.
func (s *Server) StreamSnapshots(ss grpc.BidiStreamingServer[sluicev1.DiscoveryRequest, sluicev1.DiscoveryResponse]) error {
	select {
	case <-s.closed:
		return errShuttingDown
	default:
	}
	first, err := ss.Recv()
	if err != nil {
		return err
	}
	if first.GetNode() == nil {
		return status.Error(codes.InvalidArgument, "discovery: the first message must carry node")
	}
	if err := first.Validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "discovery: %v", err)
	}
	ctx := ss.Context()
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	id := first.GetNode().GetId()
	running, _ := strconv.ParseUint(first.GetVersionInfo(), 10, 64)
	sess, by := s.fleet.ConnectUnlessRetired(first.GetNode(), addr, running)
	if sess == nil {
		// Aborted, as for a superseded stream: the node backs off and
		// stays with this replica.
		s.log.Info("refused a draining process of a node that another one replaced", "node", id, "peer", addr, "replacement", by)
		return status.Errorf(codes.Aborted, "discovery: node %s: this process was draining when another process of the node, from %s, replaced it", id, by)
	}
	s.log.Info("node connected", "node", id, "peer", addr, "running", running, "build", first.GetNode().GetBuildVersion())
	if other := sess.Contested(); other != "" {
		// Each process logs it too, but no one reads every node's log.
		s.log.Warn("two processes run with one node id and take its stream from each other; node ids must be unique (sluice-dp --node-id)",
			"node", id, "peer", addr, "other_peer", other)
	}

	// Headers tell the node its subscription was taken, even when it runs
	// the current version and gets no response: its stream made progress,
	// and after this one ends it reconnects without a grown backoff.
	if err := ss.SendHeader(nil); err != nil {
		sess.Disconnect()
		return err
	}
	err = s.serve(ctx, ss, sess, first.GetNode().GetLabels(), running, first.GetAcceptDeltas(), first.GetAcceptPlacement())
	sess.Disconnect()
	if err != nil {
		s.log.Info("node disconnected", "node", id, "reason", err)
	} else {
		s.log.Info("node disconnected", "node", id)
	}
	return err
}

// maxListedGroups bounds the groups a placement names to a node in none.
const maxListedGroups = 10

// placementOf is what a node is told of its group, or of why it is in
// none, with the groups there are.
func placementOf(set *groups.Set, group, problem string) *sluicev1.Placement {
	if group != "" {
		return &sluicev1.Placement{Group: group}
	}
	return &sluicev1.Placement{Problem: problem + "; " + set.Listed(maxListedGroups)}
}

var errShuttingDown = status.Error(codes.Unavailable, "discovery: control plane is shutting down")

// serve runs the stream of sess, whose node has labels, runs version
// running, and accepts deltas and placements or not.
func (s *Server) serve(ctx context.Context, ss grpc.ServerStream, sess *fleet.Session, labels map[string]string, running uint64, deltas, placement bool) error {
	var nonce uint64
	// sent is the version the node was last given: to begin with, the one
	// it runs, which it holds from a control plane (this one before a
	// restart, or another replica). told: the registry knows it.
	sent, told := running, false
	group, problem := "", "unplaced"
	var placedBy *state          // the state group was read from
	var said *sluicev1.Placement // what the node was told of it, if it asked
	// lag times the hold on a node that runs a newer version than this
	// server has published (lagWait); nil before it. lagOver: the store
	// was found numbered afresh, and the node is sent what this server has.
	var lag *time.Timer
	var lagC <-chan time.Time
	lagOver, lagWarned := false, false
	for {
		st := s.latest.Load()
		if st != placedBy && st.placing {
			placedBy = st
			if g, prob := st.set.Of(labels); g != group || prob != problem {
				group, problem = g, prob
				sess.Placed(group, problem)
				if group == "" {
					s.log.Warn("node in no group; sending it nothing", "node", sess.ID(), "labels", nodelabels.Text(labels), "problem", problem)
				}
			}
			// A node placed in the group it was told of needs nothing
			// new; one in no group may: the groups it was told of may
			// change while its problem stays.
			if placement && (said == nil || group != said.GetGroup() || group == "") {
				if p := placementOf(st.set, group, problem); p.GetGroup() != said.GetGroup() || p.GetProblem() != said.GetProblem() {
					said = p
					if err := ss.SendMsg(&sluicev1.DiscoveryResponse{Placement: p}); err != nil {
						return err
					}
				}
			}
		}
		p := st.byGroup[group]
		if c := st.canary[group]; c != nil && c.nodes[sess.ID()] {
			p = c.p
		}
		if p != nil && p.version == sent && !told {
			// The node already runs what it is to run: it is sent
			// nothing, and shows as holding that version, as it would
			// had this server sent it (sluicectl nodes' SENT).
			told = true
			sess.Sent(sent)
		}
		if p != nil && p.version != sent && running > st.version && s.lagWait > 0 && !lagOver && running > st.backFrom {
			// This replica lags the store: hold back its older version.
			if lag == nil {
				lag = time.NewTimer(s.lagWait)
				defer lag.Stop()
				lagC = lag.C
				s.log.Info("node runs a newer version than this replica has published; waiting for the store",
					"node", sess.ID(), "running", running, "published", st.version)
			}
		} else if p != nil && p.version != sent {
			nonce++
			sent, told = p.version, true
			sess.Sent(sent)
			label := strconv.FormatUint(nonce, 10)
			body, delta := p.payload(running, deltas)
			if err := ss.SendMsg(&wireResponse{head: encodeEnvelope(p.label, label), body: body}); err != nil {
				return err
			}
			s.obs.Pushed()
			if s.sizes != nil {
				s.sizes.PushedBytes(delta, len(body))
			}
			var closed bool
			var err error
			if running, closed, err = s.awaitAnswer(ss, sess, label, sent, running); closed || err != nil {
				return err
			}
			continue // a newer version may have come meanwhile
		}
		select {
		case <-st.next:
		case <-lagC:
			published := s.latest.Load().version
			if running <= published {
				lag, lagC = nil, nil // caught up: the hold is over
				break
			}
			head, ok := s.storeVersion(ctx)
			switch {
			case ok && head < running:
				lagC, lagOver = nil, true
				s.log.Warn("node runs a newer version than the store has: its versions were numbered afresh; sending this replica's",
					"node", sess.ID(), "running", running, "store", head, "published", published)
			case !lagWarned:
				lagWarned = true
				why := "this replica cannot read the store"
				if ok {
					why = "this replica has not read the store's newer versions"
				}
				s.log.Warn("still holding back an older version from a node: "+why,
					"node", sess.ID(), "running", running, "store", head, "published", published)
				fallthrough
			default:
				lag.Reset(s.lagWait)
			}
		case <-sess.Superseded():
			inst, from := sess.Successor()
			if inst != "" {
				from += " (instance " + inst + ")"
			}
			return status.Errorf(codes.Aborted, "discovery: node %s opened a newer stream, from %s", sess.ID(), from)
		case <-s.closed:
			return errShuttingDown
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// awaitAnswer reads until the node answers the response with nonce, which
// carried version, and records the ACK or NACK. Answers to older responses
// are stale: skipped, the subscription stands. It returns the version the
// node runs after its answer: version on an ACK, the one its NACK names
// otherwise (0 if that does not parse). running is what it ran before.
// closed reports that the node closed its side (or the stream broke, with
// err).
func (s *Server) awaitAnswer(ss grpc.ServerStream, sess *fleet.Session, nonce string, version, running uint64) (now uint64, closed bool, err error) {
	sent := time.Now()
	for {
		req := new(sluicev1.DiscoveryRequest)
		if err := ss.RecvMsg(req); err != nil {
			if err == io.EOF {
				return running, true, nil
			}
			return running, true, err
		}
		if req.GetResponseNonce() != nonce {
			sess.Seen()
			continue
		}
		if detail := req.GetErrorDetail(); detail != "" {
			detail = truncate(detail, maxErrorDetail)
			// Counted before the registry shows it, so that whoever sees
			// the NACK there finds it counted.
			s.obs.Answered(true, time.Since(sent))
			if sess.Nacked(version, detail) {
				s.refused(sess.ID(), version, detail)
			}
			s.log.Warn("node NACK", "node", sess.ID(), "version", version, "running", req.GetVersionInfo(), "error", detail)
			// What it runs, if it says so; 0 (nothing we can base a delta
			// on) if not.
			running, _ = strconv.ParseUint(req.GetVersionInfo(), 10, 64)
			return running, false, nil
		}
		s.obs.Answered(false, time.Since(sent))
		sess.Acked(version)
		s.log.Info("node ACK", "node", sess.ID(), "version", version)
		return version, false, nil
	}
}

func truncate(s string, runes int) string {
	if utf8.RuneCountInString(s) <= runes {
		return s
	}
	for i := range s {
		if runes == 0 {
			return s[:i]
		}
		runes--
	}
	return s
}
