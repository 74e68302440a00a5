package configapi

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/internal/units"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// Defaults of a canary that leaves them unset.
const (
	DefaultCanaryWindow       = 30 * time.Second
	DefaultCanaryMaxErrorRate = 0.05
	// DefaultProgressDeadline is Kubernetes' progressDeadlineSeconds and
	// Flagger's: long enough for a node that restarts to come back, short
	// enough that a canary that died does not hold its group for a night.
	DefaultProgressDeadline = 10 * time.Minute
)

// A staged rollout lives in the stored configuration, as the group's
// Rollout: every control-plane replica serves the canaries the new snapshot
// and the rest of the group the old one. Its progress is watched by
// RunRollouts (one goroutine, on one replica), which stores the outcome as
// a new version: the promotion, which makes the snapshot the group's, or
// the halt, which sends the canaries back. What RunRollouts measured is
// kept here for GetRollout.

// checkCanary refuses a canary that names no share of the group.
func checkCanary(c *sluicev1.Canary) error {
	if c == nil {
		return nil
	}
	var msg string
	switch {
	case c.GetPercent() == 0 && c.GetNodes() == 0:
		msg = "give a share of the group's nodes, 1% to 100%, or a count of nodes (1 or more)"
	case c.GetPercent() != 0 && c.GetNodes() != 0:
		msg = "give a percent or a count of nodes, not both"
	case c.GetPercent() > 100:
		msg = fmt.Sprintf("%d%% is more than the whole group: give 1%% to 100%%", c.GetPercent())
	case c.GetMaxErrorRate() < 0 || c.GetMaxErrorRate() > 1 || math.IsNaN(c.GetMaxErrorRate()):
		msg = fmt.Sprintf("max_error_rate %v is not a share: give 0 to 1 (0.05 is 5%%)", c.GetMaxErrorRate())
	case c.GetWindow().AsDuration() < 0 || c.GetWindow().AsDuration() > 24*time.Hour:
		msg = "the window must be 0 (the default, 30s) to 24h"
	case c.GetProgressDeadline().AsDuration() < 0 || c.GetProgressDeadline().AsDuration() > 24*time.Hour:
		msg = "the progress deadline must be 0 (the default, 10m) to 24h"
	default:
		return nil
	}
	return badRequest(snapshot.Errors{{Path: "canary", Message: msg}})
}

// startRollout makes snap the group's rollout, as version next, to the
// canaries the request's share picks among the group's connected nodes;
// diff is what snap changes from the group's snapshot.
// Draining nodes are left out: they refuse every snapshot while they shut
// down, and are about to leave anyway.
func (s *Server) startRollout(g *sluicev1.Group, snap *sluicev1.Snapshot, diff []snapshot.Change, w write, next uint64) ([]snapshot.Change, error) {
	if g.GetVersion() == 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"group %s has no snapshot yet, so there is nothing to roll out against; apply without --canary first", g.GetName())
	}
	var ids []string
	for _, n := range s.nodes.Nodes() {
		if n.GetConnected() && !n.GetDraining() && n.GetGroup() == g.GetName() {
			ids = append(ids, n.GetId())
		}
	}
	if len(ids) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "group %s has no connected node (that is not draining) to be a canary; nothing stored", g.GetName())
	}
	c := w.canary
	count := int(c.GetNodes())
	if c.GetPercent() != 0 {
		count = (len(ids)*int(c.GetPercent()) + 99) / 100
	}
	if count > len(ids) {
		return nil, status.Errorf(codes.FailedPrecondition, "a canary of %d nodes, but group %s has %d connected; nothing stored", count, g.GetName(), len(ids))
	}
	slices.Sort(ids) // deterministic: the same fleet picks the same canaries
	window := c.GetWindow()
	if window.AsDuration() == 0 {
		window = durationpb.New(DefaultCanaryWindow)
	}
	maxRate := c.GetMaxErrorRate()
	if maxRate == 0 {
		maxRate = DefaultCanaryMaxErrorRate
	}
	deadline := c.GetProgressDeadline()
	if deadline.AsDuration() == 0 {
		deadline = durationpb.New(DefaultProgressDeadline)
	}
	g.Rollout = &sluicev1.Rollout{
		Version:          next,
		Snapshot:         snap,
		Canaries:         ids[:count],
		State:            sluicev1.RolloutState_ROLLOUT_STATE_CANARY,
		Started:          timestamppb.Now(),
		Window:           window,
		MaxErrorRate:     maxRate,
		Author:           w.author,
		Comment:          w.comment,
		Changes:          changeLines(diff),
		MinRequests:      c.GetMinRequests(),
		ProgressDeadline: deadline,
	}
	head := snapshot.Change{Op: '+', Kind: "rollout", Name: g.GetName(), Fields: []string{
		fmt.Sprintf("canary to %s of %d nodes", strings.Join(ids[:count], ", "), len(ids)),
		fmt.Sprintf("for %v under %s errors%s", window.AsDuration(), units.Percent(maxRate), overRequests(c.GetMinRequests())),
	}}
	return append([]snapshot.Change{head}, diff...), nil
}

// editRollout makes the endpoint edit req, which gw made to the group's
// snapshot with the outcome resp, to the group's rollout's snapshot as
// well, as a version of its own, and returns the outcome of both.
//
// A version names one content, as in xDS: canaries are sent the rollout's
// snapshot under the rollout's version, the rest of the group the group's
// snapshot under the group's. Were both edits one version, a canary sent
// back to the group's snapshot (a halt, an abort) would already run that
// version by number and be sent nothing, and deltas based on it would
// start from a snapshot it does not hold. The group's edit is stored first
// so that the rollout's version is the newer, as it is from the start of a
// rollout: --wait counts a canary that applied it as having applied the
// group's, and a rollout is not promoted while its group's snapshot is the
// newer (checkRollouts), which would lose the edit.
func (s *Server) editRollout(ctx context.Context, gw write, req *sluicev1.UpdateEndpointRequest, resp *sluicev1.ApplyResponse) (*sluicev1.ApplyResponse, error) {
	w := write{
		op: "update endpoint in rollout", done: "rollout endpoint updated", group: gw.group, author: gw.author,
		comment: gw.comment + " (the rollout's snapshot)", dryRun: gw.dryRun,
		alter: func(g *sluicev1.Group, next uint64) ([]snapshot.Change, error) {
			r := g.GetRollout()
			if r == nil {
				return nil, nil
			}
			snap, err := updatedSnapshot(r.GetSnapshot(), req)
			if err != nil || len(snapshot.Diff(r.GetSnapshot(), snap)) == 0 {
				// Not in the rollout's snapshot (or the edit makes it
				// invalid there), or already so there: nothing to edit.
				return nil, nil
			}
			r.Snapshot, r.Version = snap, next
			return []snapshot.Change{{Op: '~', Kind: "rollout", Name: g.GetName(),
				Fields: []string{fmt.Sprintf("the same edit to the canaries' snapshot, as version %d", next)}}}, nil
		},
	}
	if w.dryRun && resp.GetChanged() {
		w.after = 1
	}
	rresp, err := s.put(ctx, w)
	if err != nil {
		if resp.GetChanged() && !w.dryRun {
			st := status.Convert(err)
			return nil, status.Errorf(st.Code(), "stored version %d%s, but not the same edit to its rollout's snapshot: %s; run the command again to make it there",
				resp.GetVersion(), ofGroup(gw.group), st.Message())
		}
		return nil, err
	}
	if !rresp.GetChanged() {
		return resp, nil
	}
	resp.Version, resp.Changed = rresp.GetVersion(), true
	resp.Changes = append(resp.Changes, rresp.GetChanges()...)
	resp.ResourceChanges = append(resp.ResourceChanges, rresp.GetResourceChanges()...)
	return resp, nil
}

func rolloutStateText(st sluicev1.RolloutState) string {
	switch st {
	case sluicev1.RolloutState_ROLLOUT_STATE_CANARY:
		return "canary"
	case sluicev1.RolloutState_ROLLOUT_STATE_HALTED:
		return "halted"
	}
	return "unknown"
}

// rolloutWatch is what RunRollouts measured of each group's rollout.
type rolloutWatch struct {
	mu      sync.Mutex
	byGroup map[string]*watch
	// storeFailed: the last check could not read the store, or the other
	// replicas' nodes from it. Until a check can, and at that check, every
	// progress deadline starts again: the canaries on other replicas are
	// not known, and their records may take a lease renewal to come back.
	storeFailed bool
}

// watch follows one rollout's canary phase.
type watch struct {
	version uint64
	started time.Time
	// appliedAt is when every connected canary ran the version. base
	// holds each canary's counters from its first view at the version
	// (see countFrom); the window starts at windowFrom, once every canary
	// whose views reach this replica has its base.
	appliedAt  time.Time
	windowFrom time.Time
	base       map[string]counts
	// last is each canary's latest view counted, and carried what the
	// earlier processes of canaries that restarted counted in the window.
	last    map[string]counts
	carried struct{ requests, errors uint64 }
	// resume is each canary's last view counted before the window started
	// again (a canary away, or not at the version); see resumed.
	resume map[string]counts
	// What the last check saw.
	requests uint64
	rate     float64
	phase    string
	// since is when the rollout last made progress, as far as this
	// replica knows: when it began to watch it, or the last check that
	// found its window running (or its store back after an outage). The
	// progress deadline counts from there (stalled).
	since time.Time
}

// counts is what a canary's latest view of its endpoints says.
type counts struct {
	requests, errors uint64
	// version is the configuration the canary ran when it read the
	// counters ("" from nodes older than EndpointReport.version); seen is
	// false when no view of the canary reached this replica.
	version string
	seen    bool
}

// viewWait bounds how long a rollout waits for a canary's first view at
// its version, once the canary ACKed it. A node sends one within a quarter
// second of an apply; a view that stays older comes from a stats stream
// that went to another replica, and counts nothing new.
const viewWait = 5 * time.Second

func (rw *rolloutWatch) get(group string) (watch, bool) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	w, ok := rw.byGroup[group]
	if !ok {
		return watch{}, false
	}
	return *w, true
}

// canaryCounts sums each canary's endpoint counters from its latest report.
func (s *Server) canaryCounts(ids []string) map[string]counts {
	out := make(map[string]counts, len(ids))
	if s.views == nil {
		return out
	}
	for _, id := range ids {
		var c counts
		for _, v := range s.views.List(id, "") {
			c.version, c.seen = v.Version, true
			for _, ep := range v.Endpoints {
				c.requests += ep.GetRequests()
				c.errors += ep.GetResponses_5Xx() + ep.GetConnectErrors()
			}
		}
		out[id] = c
	}
	return out
}

// RunRollouts watches every group's rollout until ctx ends, checking every
// interval: a canary that refuses the version, or canaries whose error rate
// over the window passes the rollout's limit, halt it; canaries that all
// ran the version for the window under the limit promote it, when promote
// says this replica may. The error rate is that of the canaries whose
// reports reach this replica, so with several replicas each runs
// RunRollouts (any may halt) and the elected one promotes.
func (s *Server) RunRollouts(ctx context.Context, interval time.Duration, promote func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.checkRollouts(ctx, promote(), time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("rollout check failed", "err", err)
		}
	}
}

// checkRollouts is one check of RunRollouts, at time now.
func (s *Server) checkRollouts(ctx context.Context, mayPromote bool, now time.Time) error {
	cur, err := s.store.Current(ctx)
	if err != nil {
		s.rollouts.mu.Lock()
		s.rollouts.storeFailed = true
		s.rollouts.mu.Unlock()
		return err
	}
	list, incomplete := s.fleet() // this replica's nodes alone when incomplete
	nodes := map[string]*sluicev1.NodeStatus{}
	for _, n := range list {
		nodes[n.GetId()] = n
	}
	s.rollouts.mu.Lock()
	if s.rollouts.byGroup == nil {
		s.rollouts.byGroup = map[string]*watch{}
	}
	if s.rollouts.storeFailed || incomplete != "" {
		for _, w := range s.rollouts.byGroup {
			w.since = now
		}
	}
	s.rollouts.storeFailed = incomplete != ""
	live := map[string]bool{}
	type outcome struct {
		group, halt string
		promote     bool
		version     uint64
		requests    uint64 // the window's, when it halts
		rate        float64
	}
	var todo []outcome
	for _, g := range cur.Config.GetGroups() {
		r := g.GetRollout()
		if r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY {
			continue
		}
		live[g.GetName()] = true
		w := s.rollouts.byGroup[g.GetName()]
		if w == nil || w.version != r.GetVersion() || !w.started.Equal(r.GetStarted().AsTime()) {
			w = &watch{version: r.GetVersion(), started: r.GetStarted().AsTime()}
			s.rollouts.byGroup[g.GetName()] = w
		}
		o, halt := s.step(w, r, nodes, now)
		if o && g.GetVersion() > r.GetVersion() {
			// An endpoint edit reached the group's snapshot and is on
			// its way to the rollout's (editRollout): a promotion now
			// would lose it.
			o = false
			w.phase = "the canaries passed; waiting for an endpoint edit of the group to reach the rollout's snapshot (if this lasts, make the edit again)"
		}
		if halt != "" || (o && mayPromote) {
			todo = append(todo, outcome{group: g.GetName(), halt: halt, promote: o, version: r.GetVersion(), requests: w.requests, rate: w.rate})
		}
	}
	for name := range s.rollouts.byGroup {
		if !live[name] {
			delete(s.rollouts.byGroup, name)
		}
	}
	s.rollouts.mu.Unlock()

	for _, o := range todo {
		if o.halt != "" {
			_, err = s.haltRollout(ctx, o.group, o.version, o.halt, o.requests, o.rate)
		} else {
			_, err = s.promoteRollout(ctx, o.group, o.version)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// step advances w with what the fleet says now; it returns promote, or
// the reason to halt. A canary that drains counts as gone: it refuses
// every version while it shuts down ("node is shutting down"), which says
// nothing of this one (the fleet forgets that refusal once it is gone).
func (s *Server) step(w *watch, r *sluicev1.Rollout, nodes map[string]*sluicev1.NodeStatus, now time.Time) (promote bool, halt string) {
	if w.since.IsZero() {
		w.since = now
	}
	v := r.GetVersion()
	var connected, applied int
	for _, id := range r.GetCanaries() {
		n := nodes[id]
		if n.GetDraining() {
			continue
		}
		if n.GetNackedVersion() == v && n.GetAckedVersion() != v {
			return false, fmt.Sprintf("canary %s refused version %d: %s", id, v, oneLine(n.GetNackError()))
		}
		if !n.GetConnected() {
			continue
		}
		connected++
		if n.GetAckedVersion() == v {
			applied++
		}
	}
	if connected == 0 || applied < connected {
		// A canary went away (it restarts, or its connection broke) or
		// is not at the version yet: the window starts again once every
		// connected canary runs it, but what the canaries counted in it
		// so far stays counted, as a restart seen in the counters does,
		// and each counts on from its last view counted (see resumed).
		for id, b := range w.base {
			if l, ok := w.last[id]; ok {
				w.carried.requests += l.requests - b.requests
				w.carried.errors += l.errors - b.errors
				if w.resume == nil {
					w.resume = map[string]counts{}
				}
				w.resume[id] = l
			}
		}
		w.appliedAt, w.windowFrom, w.base, w.last = time.Time{}, time.Time{}, nil, nil
		w.phase = fmt.Sprintf("waiting for %d of %d connected canaries to apply version %d", connected-applied, connected, v)
		if connected == 0 {
			w.phase = "waiting for a canary to connect"
		}
		return false, w.stalled(r, now)
	}
	if w.appliedAt.IsZero() {
		w.appliedAt, w.base, w.last = now, map[string]counts{}, map[string]counts{}
	}
	latest := s.canaryCounts(r.GetCanaries())
	want := strconv.FormatUint(v, 10)
	var req, errs uint64
	var waiting []string
	for _, id := range r.GetCanaries() {
		c := latest[id]
		if !c.seen {
			continue // its views go to another replica
		}
		b, ok := w.base[id]
		// Counters that went back, from the base or from the latest view
		// counted (a canary that restarted twice), tell a restart.
		l, seen := w.last[id]
		if !seen {
			l = b
		}
		if ok && (c.requests < l.requests || c.errors < l.errors) {
			// The canary restarted. What its old process counted in the
			// window stays counted. A new process that reports the
			// version ran nothing else (a node serves nothing before its
			// first snapshot, and a canary's is the rollout's): all it
			// counted is the version's. Otherwise its window restarts
			// from a view at the version, as a canary's first does.
			w.carried.requests += l.requests - b.requests
			w.carried.errors += l.errors - b.errors
			delete(w.last, id)
			ok = c.version == want
			b = counts{version: want, seen: true}
			if ok {
				w.base[id] = b
			}
		}
		if !ok {
			if r, resumed := w.resumed(id, c, want); resumed {
				w.base[id], b, ok = r, r, true
			}
		}
		if !ok {
			if w.countFrom(c, want, now) {
				w.base[id] = c
			} else {
				waiting = append(waiting, id)
			}
			continue
		}
		req += c.requests - b.requests
		errs += c.errors - b.errors
		w.last[id] = c
	}
	req += w.carried.requests
	errs += w.carried.errors
	if w.windowFrom.IsZero() {
		if len(waiting) > 0 {
			w.phase = fmt.Sprintf("waiting for the counters of %s at version %d", strings.Join(waiting, ", "), v)
			return false, w.stalled(r, now)
		}
		w.windowFrom = now
	}
	w.since = now
	w.requests, w.rate = req, 0
	if req+errs > 0 {
		w.rate = float64(errs) / float64(max(req, errs))
	}
	window := r.GetWindow().AsDuration()
	elapsed := now.Sub(w.windowFrom)
	if w.rate > r.GetMaxErrorRate() {
		return false, fmt.Sprintf("canary error rate %s (%d errors in %d requests over %v) is above %s",
			units.Percent(w.rate), errs, req, elapsed.Round(time.Second), units.Percent(r.GetMaxErrorRate()))
	}
	least, need := "", r.GetMinRequests()
	if need > 0 {
		least = fmt.Sprintf(", at least %d requests", need)
	}
	w.phase = fmt.Sprintf("watching the canaries: %v of %v, error rate %s of %d requests (limit %s%s)",
		elapsed.Round(time.Second), window, units.Percent(w.rate), req, units.Percent(r.GetMaxErrorRate()), least)
	if elapsed < window {
		return false, ""
	}
	if req < need {
		// An error rate of a few requests, or of none, says little
		// about the version.
		return false, fmt.Sprintf("the canaries served %d requests over %v, fewer than the %d the rollout needs (min_requests) to judge their error rate",
			req, elapsed.Round(time.Second), need)
	}
	return true, ""
}

// stalled returns the reason to halt rollout r, whose window is not
// running (w.phase says what it waits for), once that has lasted for its
// progress deadline; "" before.
func (w *watch) stalled(r *sluicev1.Rollout, now time.Time) string {
	d := r.GetProgressDeadline().AsDuration()
	if d <= 0 {
		d = DefaultProgressDeadline
	}
	if now.Sub(w.since) < d {
		return ""
	}
	return fmt.Sprintf("no progress for %v (the progress deadline): %s", d, w.phase)
}

// overRequests is what the head line of a rollout adds for min_requests.
func overRequests(need uint64) string {
	if need == 0 {
		return ""
	}
	return fmt.Sprintf(", over at least %d requests", need)
}

// resumed is the base a canary that came back counts from, its view c at
// version want being the first since: the last view counted before it
// went away, or zero when its counters went back under that view (a new
// process, which ran nothing but the version since its start). ok is
// false when the canary was not counted before, or c is not at want.
func (w *watch) resumed(id string, c counts, want string) (base counts, ok bool) {
	p, was := w.resume[id]
	if !was || c.version != want {
		return counts{}, false
	}
	delete(w.resume, id)
	if c.requests < p.requests || c.errors < p.errors {
		return counts{version: want, seen: true}, true
	}
	return p, true
}

// countFrom says whether a canary's view c can be the base its window
// counts from: it was read at version want, so every request it leaves
// out was sent with an earlier version. Views from nodes too old to say
// their version, and any view once viewWait passed since every canary
// applied the version, are taken as they are.
func (w *watch) countFrom(c counts, want string, now time.Time) bool {
	return c.version == want || c.version == "" || now.Sub(w.appliedAt) >= viewWait
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// promoteRollout makes the rollout's snapshot the group's, as a new version
// that the rest of the group (and the canaries, relabelled) applies.
func (s *Server) promoteRollout(ctx context.Context, group string, version uint64) (*sluicev1.ApplyResponse, error) {
	// History credits the apply that started the rollout.
	author, comment := "rollout", fmt.Sprintf("rollout of version %d passed its canaries", version)
	if cur, err := s.store.Current(ctx); err == nil {
		if r := groups.Find(cur.Config, group).GetRollout(); r != nil {
			author = r.GetAuthor()
			if r.GetComment() != "" {
				comment = r.GetComment() + " (" + comment + ")"
			}
		}
	}
	s.log.Info("rollout passed its canaries", "group", group, "version", version)
	return s.put(ctx, write{
		op: "promote rollout", done: "rollout promoted", group: group, author: author, comment: comment,
		alter: func(g *sluicev1.Group, next uint64) ([]snapshot.Change, error) {
			r := g.GetRollout()
			if r.GetVersion() != version || r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY || g.GetVersion() > version {
				return nil, status.Errorf(codes.Aborted, "the rollout of group %s changed meanwhile", group)
			}
			ch := append([]snapshot.Change{{Op: '-', Kind: "rollout", Name: group, Fields: []string{fmt.Sprintf("version %d passed its canaries; to every node", version)}}},
				snapshot.Diff(g.GetSnapshot(), r.GetSnapshot())...)
			g.Snapshot, g.Version, g.Rollout = r.GetSnapshot(), next, nil
			return ch, nil
		},
	})
}

// haltRollout sends the canaries back to the group's snapshot and keeps
// the rollout, halted, saying why and what the canaries served in the
// window.
func (s *Server) haltRollout(ctx context.Context, group string, version uint64, reason string, requests uint64, rate float64) (*sluicev1.ApplyResponse, error) {
	s.log.Warn("rollout halted", "group", group, "version", version, "reason", reason)
	return s.put(ctx, write{
		op: "halt rollout", done: "rollout halted", group: group, author: "rollout",
		comment: fmt.Sprintf("rollout of version %d halted: %s", version, reason),
		alter: func(g *sluicev1.Group, _ uint64) ([]snapshot.Change, error) {
			r := g.GetRollout()
			if r.GetVersion() != version || r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_CANARY {
				return nil, status.Errorf(codes.Aborted, "the rollout of group %s changed meanwhile", group)
			}
			r.State, r.Reason = sluicev1.RolloutState_ROLLOUT_STATE_HALTED, reason
			r.HaltedRequests, r.HaltedErrorRate = requests, rate
			return []snapshot.Change{{Op: '~', Kind: "rollout", Name: group, Fields: []string{"halted, canaries back on version " + fmt.Sprint(g.GetVersion()) + ": " + reason}}}, nil
		},
	})
}

// GetRollout implements sluicev1.ConfigServiceServer.
func (s *Server) GetRollout(ctx context.Context, req *sluicev1.RolloutRequest) (*sluicev1.RolloutStatus, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	cur, err := s.store.Current(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	name := groupOrDefault(req.GetGroup())
	g := groups.Find(cur.Config, name)
	if g == nil {
		return nil, noGroup(cur.Config, name, false)
	}
	return s.rolloutStatus(g), nil
}

func (s *Server) rolloutStatus(g *sluicev1.Group) *sluicev1.RolloutStatus {
	st := &sluicev1.RolloutStatus{Group: g.GetName()}
	r := g.GetRollout()
	if r == nil {
		st.Phase = "no rollout"
		return st
	}
	st.Rollout = proto.Clone(r).(*sluicev1.Rollout)
	st.Rollout.Snapshot = nil
	canary := map[string]bool{}
	for _, id := range r.GetCanaries() {
		canary[id] = true
	}
	for _, n := range s.nodes.Nodes() {
		if canary[n.GetId()] {
			st.Canaries = append(st.Canaries, n)
		}
	}
	switch r.GetState() {
	case sluicev1.RolloutState_ROLLOUT_STATE_HALTED:
		st.Phase = "halted: " + r.GetReason()
		st.Requests, st.ErrorRate = r.GetHaltedRequests(), r.GetHaltedErrorRate()
	default:
		st.Phase = "starting"
		if w, ok := s.rollouts.get(g.GetName()); ok && w.version == r.GetVersion() {
			st.Phase, st.Requests, st.ErrorRate = w.phase, w.requests, w.rate
		}
	}
	return st
}

// ResumeRollout implements sluicev1.ConfigServiceServer.
func (s *Server) ResumeRollout(ctx context.Context, req *sluicev1.RolloutRequest) (*sluicev1.RolloutStatus, error) {
	return s.changeRollout(ctx, req, "resume rollout", func(g *sluicev1.Group, next uint64) ([]snapshot.Change, error) {
		r := g.GetRollout()
		if r.GetState() != sluicev1.RolloutState_ROLLOUT_STATE_HALTED {
			return nil, status.Errorf(codes.FailedPrecondition, "group %s has no halted rollout to resume (%s)", g.GetName(), s.rolloutStatus(g).GetPhase())
		}
		// A new version number: the canaries' answers to the old one
		// (a NACK, say) do not count for this attempt.
		ch := []snapshot.Change{{Op: '~', Kind: "rollout", Name: g.GetName(), Fields: []string{fmt.Sprintf("version %d resumed on its canaries as version %d", r.GetVersion(), next)}}}
		r.Version, r.State, r.Reason, r.Started = next, sluicev1.RolloutState_ROLLOUT_STATE_CANARY, "", timestamppb.Now()
		r.HaltedRequests, r.HaltedErrorRate = 0, 0
		return ch, nil
	})
}

// AbortRollout implements sluicev1.ConfigServiceServer.
func (s *Server) AbortRollout(ctx context.Context, req *sluicev1.RolloutRequest) (*sluicev1.RolloutStatus, error) {
	return s.changeRollout(ctx, req, "abort rollout", func(g *sluicev1.Group, _ uint64) ([]snapshot.Change, error) {
		r := g.GetRollout()
		if r == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "group %s has no rollout to abort", g.GetName())
		}
		g.Rollout = nil
		return []snapshot.Change{{Op: '-', Kind: "rollout", Name: g.GetName(), Fields: []string{fmt.Sprintf("version %d aborted; canaries back on version %d", r.GetVersion(), g.GetVersion())}}}, nil
	})
}

func (s *Server) changeRollout(ctx context.Context, req *sluicev1.RolloutRequest, op string, fn func(g *sluicev1.Group, next uint64) ([]snapshot.Change, error)) (*sluicev1.RolloutStatus, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	name := groupOrDefault(req.GetGroup())
	resp, err := s.put(ctx, write{
		op: op, done: op, group: name, author: req.GetAuthor(), comment: op + ofGroup(name),
		alter: fn,
	})
	if err != nil {
		return nil, err
	}
	cur, err := s.store.Current(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	st := &sluicev1.RolloutStatus{Group: name, Phase: "no rollout"}
	if g := groups.Find(cur.Config, name); g != nil {
		st = s.rolloutStatus(g)
	}
	st.DoneVersion = resp.GetVersion()
	return st, nil
}
