package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// Outlier detection defaults, where a snapshot's outlier_detection block
// leaves a setting out (Envoy's).
const (
	defaultConsecutive        = 5
	defaultMaxEjectionPercent = 10
)

// outlierConfig is a compiled outlier_detection block.
type outlierConfig struct {
	connectFailures, responses5xx uint32 // thresholds; 0: trigger off
	base, max                     time.Duration
	maxPercent                    uint32
}

func compileOutlier(od *sluicev1.OutlierDetection) *outlierConfig {
	cfg := &outlierConfig{
		connectFailures: defaultConsecutive,
		responses5xx:    defaultConsecutive,
		base:            snapshot.BaseEjectionTime(od),
		maxPercent:      defaultMaxEjectionPercent,
	}
	if od.ConsecutiveConnectFailures != nil {
		cfg.connectFailures = od.GetConsecutiveConnectFailures()
	}
	if od.Consecutive_5Xx != nil {
		cfg.responses5xx = od.GetConsecutive_5Xx()
	}
	if od.MaxEjectionPercent != nil {
		cfg.maxPercent = od.GetMaxEjectionPercent()
	}
	// Validation keeps a max_ejection_time that is set at least the
	// base; the default one grows to a longer base, as in Envoy.
	cfg.max = max(snapshot.MaxEjectionTime(od), cfg.base)
	return cfg
}

// ejector decides and times the ejections of one cluster's endpoints
// (Envoy's outlier detector, for consecutive failures). An endpoint is
// reported by its upstream.OutlierPolicy when it fails too often in a
// row; the ejector takes it out of the cluster's picker, unless that
// would eject more than maxPercent of the cluster, and puts it back when
// its ejection ends: n times base for the n-th ejection in a row, capped
// at max. A whole base without ejection takes one step off n.
//
// An ejector outlives the compiled cluster: each snapshot that keeps the
// cluster and its outlier_detection hands it on, so ejections under way
// and their counts survive applies.
type ejector struct {
	cluster string
	log     *slog.Logger
	// changed is told, without mu held, that ep was ejected (ejected) or
	// returned, so the cluster's picker is rebuilt; ep is nil when stop
	// returned several.
	changed func(cluster string, ep *upstream.Endpoint, ejected bool)
	// now and afterFunc are the clock; tests replace them.
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) (stop func() bool)
	// read, if set, runs each time ejected has read the ejections: tests
	// eject there, to race the picker rebuild that called it.
	read func()

	mu      sync.Mutex
	cfg     outlierConfig
	eps     map[*upstream.Endpoint]*ejection // the cluster's members
	out     int                              // how many of eps are ejected
	stopped bool
}

// ejection is one endpoint's ejection state.
type ejection struct {
	ejected  bool
	since    time.Time     // start of the ejection under way
	end      time.Time     // when the last ejection ended
	length   time.Duration // of the ejection under way
	inARow   int           // its n: the multiplier of base
	cause    string        // of the ejection under way: "5 consecutive 5xx responses"
	gen      uint64        // tells this ejection's timer from an older one's
	stopTime func() bool   // stops the timer of the ejection under way
}

func newEjector(cluster string, log *slog.Logger, changed func(string, *upstream.Endpoint, bool)) *ejector {
	return &ejector{
		cluster: cluster,
		log:     log,
		changed: changed,
		now:     time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
		eps: map[*upstream.Endpoint]*ejection{},
	}
}

// update makes cfg and members the ejector's, once a snapshot is being
// swapped in. Endpoints that left the cluster are forgotten (and stop
// counting towards the share ejected); ejections under way keep the
// length they started with.
func (j *ejector) update(cfg outlierConfig, members lb.Set) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cfg = cfg
	keep := make(map[*upstream.Endpoint]bool, len(members))
	for _, m := range members {
		keep[m.Endpoint] = true
		if _, ok := j.eps[m.Endpoint]; !ok {
			j.eps[m.Endpoint] = &ejection{}
		}
	}
	for ep, e := range j.eps {
		if keep[ep] {
			continue
		}
		if e.ejected {
			e.stopTime()
			j.out--
		}
		delete(j.eps, ep)
	}
}

// policy is the upstream.OutlierPolicy that reports the cluster's
// endpoints to j.
func (j *ejector) policy(cfg outlierConfig) *upstream.OutlierPolicy {
	return &upstream.OutlierPolicy{ConnectFailures: cfg.connectFailures, Responses5xx: cfg.responses5xx, Outlier: j.report}
}

// report ejects ep for cause if it may be. It runs on the request path of
// the failure that crossed a threshold: it decides and arms a timer, and
// leaves the picker rebuild to changed.
func (j *ejector) report(ep *upstream.Endpoint, cause upstream.Cause) {
	j.mu.Lock()
	e, ok := j.eps[ep]
	if !ok || j.stopped || e.ejected {
		// Not a member (any more), or already out: a request that was
		// under way when it was ejected failed too.
		j.mu.Unlock()
		return
	}
	cfg := j.cfg
	// One endpoint may always be ejected; beyond that, never more than
	// maxPercent of the cluster, this one included.
	if j.out > 0 && (j.out+1)*100 > int(cfg.maxPercent)*len(j.eps) {
		out, n := j.out, len(j.eps)
		j.mu.Unlock()
		// Off the request path, which never waits on logging; and no
		// goroutine at all when debug logs are off, as in an outage
		// this happens at every threshold crossed.
		if !j.log.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
		go j.log.Debug("endpoint not ejected: max_ejection_percent reached", "cluster", j.cluster, "endpoint", ep.Name,
			"cause", cause.String(), "ejected", out, "endpoints", n, "max_ejection_percent", cfg.maxPercent)
		return
	}
	now := j.now()
	if e.inARow > 0 {
		// One step back for every whole base it stayed in since.
		e.inARow = max(0, e.inARow-int(now.Sub(e.end)/cfg.base))
	}
	// Past the cap, n stops growing, so that stepping back down from it
	// does not take longer than the cap needs.
	e.inARow = min(e.inARow+1, int((cfg.max+cfg.base-1)/cfg.base))
	e.length = min(time.Duration(e.inARow)*cfg.base, cfg.max)
	e.ejected, e.since = true, now
	ep.Ejected()
	e.gen++
	threshold := cfg.connectFailures
	if cause == upstream.Responses5xx {
		threshold = cfg.responses5xx
	}
	e.cause = fmt.Sprintf("%d %s", threshold, cause)
	j.out++
	gen, length, inARow, why := e.gen, e.length, e.inARow, e.cause
	e.stopTime = j.afterFunc(length, func() { j.restore(ep, gen) })
	j.mu.Unlock()
	go j.log.Info("endpoint ejected", "cluster", j.cluster, "endpoint", ep.Name, "cause", why,
		"duration", length, "ejection", inARow)
	j.changed(j.cluster, ep, true)
}

// restore ends ejection gen of ep: its time is up.
func (j *ejector) restore(ep *upstream.Endpoint, gen uint64) {
	j.mu.Lock()
	e, ok := j.eps[ep]
	if !ok || !e.ejected || e.gen != gen {
		j.mu.Unlock()
		return
	}
	e.ejected = false
	e.end = j.now()
	j.out--
	took, why := e.end.Sub(e.since), e.cause
	j.mu.Unlock()
	j.log.Info("endpoint returned from ejection", "cluster", j.cluster, "endpoint", ep.Name, "cause", why,
		"duration", took.Round(time.Millisecond))
	j.changed(j.cluster, ep, false)
}

// stop returns every ejected endpoint at once and ignores reports from now
// on: the cluster lost its outlier_detection, or is gone (why says which,
// for the log). With why "" (the node closes) it only stops the timers.
func (j *ejector) stop(why string) {
	j.mu.Lock()
	var back []string
	for ep, e := range j.eps {
		if e.ejected {
			e.ejected = false
			e.stopTime()
			back = append(back, ep.Name)
		}
	}
	j.out = 0
	j.stopped = true
	j.mu.Unlock()
	if why == "" {
		return
	}
	for _, name := range back {
		j.log.Info("endpoint returned from ejection: "+why, "cluster", j.cluster, "endpoint", name)
	}
	if len(back) > 0 {
		j.changed(j.cluster, nil, false)
	}
}

// ejected returns the endpoints ejected now; nil when none is (the common
// case costs no allocation). j may be nil: no outlier detection.
func (j *ejector) ejected() map[*upstream.Endpoint]bool {
	if j == nil {
		return nil
	}
	if j.read != nil {
		defer j.read() // after the unlock below
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.out == 0 {
		return nil
	}
	out := make(map[*upstream.Endpoint]bool, j.out)
	for ep, e := range j.eps {
		if e.ejected {
			out[ep] = true
		}
	}
	return out
}

// status adds ep's ejection to st, whose Ejections is set: while it is
// ejected its health, since and why, unless checks say it is down, which is what operators must see
// first. Once back, it is up since its return. j may be nil.
func (j *ejector) status(ep *upstream.Endpoint, st *EndpointStatus) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.eps[ep]
	if !ok {
		return
	}
	switch {
	case e.ejected && st.Health != "DOWN":
		st.Health, st.Since = "EJECTED", e.since
		// The count, not inARow: that multiplier of the base stops at
		// the cap and decays while the endpoint behaves.
		st.Detail = fmt.Sprintf("%s, ejected for %v (ejection %d)", e.cause, e.length, st.Ejections)
	case !e.ejected && st.Health == "UP" && e.end.After(st.Since):
		st.Since = e.end
	}
}
