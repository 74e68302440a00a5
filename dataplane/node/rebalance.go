package node

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Rebalance (DESIGN problem 3): long-lived TCP sessions stay where they were
// placed, so when endpoints come back after an outage, the ones that stayed
// up keep everything. A TCP listener with rebalance looks once a second at
// how its sessions are spread over the endpoints that take new work, and
// closes the oldest idle sessions of the endpoints above their share plus
// the tolerance, at a bounded rate; their clients reconnect and the picker
// (LEAST_CONN, best) places them where there is room.

// Defaults of a rebalance block (sluicev1.Rebalance).
const (
	defaultTolerancePercent = 20
	defaultMaxClosesPerSec  = 100
	defaultMinIdle          = time.Second
)

// rebalanceEvery is the time between two rounds of a listener's rebalance.
const rebalanceEvery = time.Second

// reconnectGrace is how long the sessions a round closed count as on
// their way back: their clients reconnect in their own time, and until
// they have, the rounds after it reckon shares from the sessions there
// were before the close, not from those left, which would make every
// share smaller and close more sessions than a spread needs.
const reconnectGrace = 15 * time.Second

// rebalanceConfig is what one round needs of the snapshot; it is replaced
// whole when a snapshot is applied.
type rebalanceConfig struct {
	listener         string
	cluster          *cluster
	tolerancePercent uint32
	ratePerSec       float64
	minIdle          time.Duration
}

func newRebalanceConfig(listener string, spec *sluicev1.Rebalance, c *cluster) *rebalanceConfig {
	cfg := &rebalanceConfig{
		listener:         listener,
		cluster:          c,
		tolerancePercent: defaultTolerancePercent,
		ratePerSec:       defaultMaxClosesPerSec,
		minIdle:          durationOr(spec.GetMinIdle().AsDuration(), defaultMinIdle),
	}
	if spec.TolerancePercent != nil {
		cfg.tolerancePercent = spec.GetTolerancePercent()
	}
	if spec.MaxClosesPerSecond != nil {
		cfg.ratePerSec = float64(spec.GetMaxClosesPerSecond())
	}
	return cfg
}

// rebalancer runs the rebalance rounds of one TCP listener, from when a
// snapshot turns rebalance on until one turns it off or the listener stops
// accepting (closed, or the node draining: clients could not come back).
type rebalancer struct {
	l    *listener
	cfg  atomic.Pointer[rebalanceConfig]
	quit chan struct{} // closed to stop the loop
	done chan struct{} // closed when the loop has stopped

	// Owned by the loop's goroutine.
	bucket     closeBucket
	connectErr map[*upstream.Endpoint]uint64 // ConnectErrors at the last round
	// suspect holds the endpoints that refused a connection and have not
	// shown since that they take work, with their HealthTransitions when
	// they refused.
	suspect map[*upstream.Endpoint]uint64
	// expect is the sessions there were when a round last closed some,
	// until expectUntil (reconnectGrace later): while fewer are open,
	// shares are reckoned from expect.
	expect      int
	expectUntil time.Time
}

// setRebalance starts, reconfigures or stops the listener's rebalance for
// snapshot listener ls sending to c. It is called by Apply, which
// serialises it.
func (l *listener) setRebalance(ls *sluicev1.Listener, c *cluster) {
	spec := ls.GetTcp().GetRebalance()
	if ls.GetProtocol() != sluicev1.Protocol_PROTOCOL_TCP || spec == nil || c == nil {
		if l.rb != nil {
			close(l.rb.quit)
			l.rb = nil
		}
		return
	}
	cfg := newRebalanceConfig(ls.GetName(), spec, c)
	if l.rb != nil {
		l.rb.cfg.Store(cfg)
		return
	}
	l.rb = newRebalancer(l, cfg)
	go l.rb.loop()
}

func newRebalancer(l *listener, cfg *rebalanceConfig) *rebalancer {
	r := &rebalancer{l: l, quit: make(chan struct{}), done: make(chan struct{}), suspect: map[*upstream.Endpoint]uint64{}}
	r.cfg.Store(cfg)
	r.bucket.fill(time.Now(), cfg.ratePerSec)
	return r
}

func (r *rebalancer) loop() {
	defer close(r.done)
	t := time.NewTicker(rebalanceEvery)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-r.l.done:
			return
		case now := <-t.C:
			r.round(now)
		}
	}
}

// round looks at the spread once and closes what plan says.
func (r *rebalancer) round(now time.Time) {
	cfg := r.cfg.Load()
	g := r.l.gen.Load()
	if g == nil || g.tcp == nil {
		return
	}
	box := cfg.cluster.picker.Load()
	if box == nil {
		return
	}
	// The endpoints taking new work: those the picker was built with.
	// One that refused a connection is left out until it shows it takes
	// work again (a session on this listener) or its checks conclude (a
	// health transition): it may be down before its checks say so, and
	// while it counts as an empty member the others look overloaded, so
	// clients would be closed only to come back. Errors are followed for
	// every member, so one that failed while down and has recovered since
	// is not held back.
	seen := make(map[*upstream.Endpoint]uint64, len(box.set))
	for _, m := range box.set {
		st := m.Endpoint.Stats()
		seen[m.Endpoint] = st.ConnectErrors
		if last, ok := r.connectErr[m.Endpoint]; ok && st.ConnectErrors > last {
			r.suspect[m.Endpoint] = st.HealthTransitions
		}
	}
	var members lb.Set
	for _, m := range box.eligible {
		if r.suspected(m.Endpoint, g.tcp.Sessions(m.Endpoint)) {
			continue
		}
		members = append(members, m)
	}
	r.connectErr = seen
	for ep := range r.suspect {
		if _, ok := seen[ep]; !ok {
			delete(r.suspect, ep) // no longer in the cluster
		}
	}
	loads := make([]load, len(members))
	for i, m := range members {
		loads[i] = load{sessions: g.tcp.Sessions(m.Endpoint), weight: m.Weight}
	}
	total, _ := sums(loads)
	if now.After(r.expectUntil) {
		r.expect = 0
	}
	total = max(total, r.expect) // closed sessions on their way back count
	budget := r.bucket.take(now, cfg.ratePerSec)
	wanted := plan(loads, total, cfg.tolerancePercent, budget)
	after := slices.Clone(loads)
	closed := make([]int, len(loads))
	for i, n := range wanted {
		if n > 0 {
			closed[i] = g.tcp.CloseIdle(members[i].Endpoint, n, cfg.minIdle)
			r.bucket.spend(closed[i])
			after[i].sessions -= closed[i]
			if closed[i] > 0 {
				r.expect, r.expectUntil = total, now.Add(reconnectGrace)
			}
		}
	}
	for i, n := range wanted {
		if n > 0 {
			cfg.log(r.l.log, members[i].Endpoint, loads, total, i, n, closed[i], after)
		}
	}
}

// suspected reports whether ep, holding sessions on the listener, is still
// suspect, and forgets the suspicion once ep has a session or its checks
// have marked it down or up since it refused.
func (r *rebalancer) suspected(ep *upstream.Endpoint, sessions int) bool {
	at, ok := r.suspect[ep]
	if !ok {
		return false
	}
	if sessions > 0 || ep.Stats().HealthTransitions > at {
		delete(r.suspect, ep)
		return false
	}
	return true
}

// log reports what a round did on endpoint ep (loads[i]): how many of its
// sessions it wanted to close and closed, and the spread left (after),
// counting the closed sessions as placed again where there is room. A
// round that found no idle session to close logs at debug level: with a
// session that is never idle, that would be every second.
func (cfg *rebalanceConfig) log(log *slog.Logger, ep *upstream.Endpoint, loads []load, total, i, wanted, closed int, after []load) {
	_, weights := sums(loads)
	level := slog.LevelInfo
	if closed == 0 {
		level = slog.LevelDebug
	}
	log.Log(context.Background(), level, "rebalance", "listener", cfg.listener, "cluster", ep.Cluster, "endpoint", ep.Name,
		"sessions", loads[i].sessions, "share", math.Round(share(loads[i], total, weights)*10)/10,
		"wanted", wanted, "closed", closed, "spread_percent", math.Round(spread(after, total)))
}

// load is one endpoint in a rebalance round: its sessions on the listener
// and its weight among the endpoints taking new work.
type load struct {
	sessions int
	weight   uint32
}

func sums(loads []load) (total int, weights uint64) {
	for _, l := range loads {
		total += l.sessions
		weights += uint64(l.weight)
	}
	return total, weights
}

// share is l's fair share of total sessions: total × weight / Σweight.
func share(l load, total int, weights uint64) float64 {
	if weights == 0 {
		return 0
	}
	return float64(total) * float64(l.weight) / float64(weights)
}

// spread is how far the fullest endpoint is above its share, in percent of
// the share, with total sessions spread over loads by weight (0 when all
// are at or below their shares).
func spread(loads []load, total int) float64 {
	_, weights := sums(loads)
	worst := 0.0
	for _, l := range loads {
		if s := share(l, total, weights); s > 0 {
			worst = max(worst, (float64(l.sessions)/s-1)*100)
		}
	}
	return worst
}

// plan decides one round of a rebalance: how many sessions to close on each
// endpoint of loads. Each endpoint's share is total × weight / Σweight over
// loads, total being at least the sessions of loads (more while closed
// sessions are on their way back); one holding more than share × (1 + tolerancePercent/100) is
// brought down to its share (rounded up: never below it), the most
// over-full first (sessions per share), closing at most budget in all.
// Endpoints within the tolerance are left alone, so sessions are not moved
// back and forth over a spread that does not matter.
func plan(loads []load, total int, tolerancePercent uint32, budget int) []int {
	closes := make([]int, len(loads))
	open, weights := sums(loads)
	total = max(total, open)
	if total == 0 || weights == 0 || budget <= 0 {
		return closes
	}
	// Integer comparisons, exact: sessions × Σweight × 100 against
	// total × weight × (100 + tolerance). At a million sessions and
	// 10,000 endpoints of weight 256 this stays far below 2^63.
	T, W := int64(total), int64(weights)
	var over []int
	for i, l := range loads {
		w := int64(l.weight)
		if int64(l.sessions)*W*100 > T*w*(100+int64(tolerancePercent)) {
			over = append(over, i)
		}
	}
	// Most over-full first: sessions_a / share_a > sessions_b / share_b,
	// that is sessions_a × weight_b > sessions_b × weight_a.
	slices.SortStableFunc(over, func(a, b int) int {
		x := int64(loads[a].sessions) * int64(loads[b].weight)
		y := int64(loads[b].sessions) * int64(loads[a].weight)
		switch {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	for _, i := range over {
		floor := (T*int64(loads[i].weight) + W - 1) / W // share, rounded up
		n := min(loads[i].sessions-int(floor), budget)
		closes[i] = n
		budget -= n
		if budget == 0 {
			break
		}
	}
	return closes
}

// closeBucket is the token bucket behind max_closes_per_second: it fills
// at that rate and holds at most one second's worth, so a round (one a
// second) closes at most the rate, and an idle listener does not save up
// a burst.
type closeBucket struct {
	tokens float64
	last   time.Time
}

// fill makes the bucket full at now.
func (b *closeBucket) fill(now time.Time, rate float64) {
	b.tokens, b.last = rate, now
}

// take adds what the rate earned since the last call and returns how many
// whole closes the bucket allows now; spend takes away those made.
func (b *closeBucket) take(now time.Time, rate float64) int {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(rate, b.tokens+elapsed.Seconds()*rate)
	}
	b.tokens = min(b.tokens, rate) // the rate may have been lowered
	b.last = now
	return int(b.tokens)
}

func (b *closeBucket) spend(n int) { b.tokens = max(0, b.tokens-float64(n)) }
