package node

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/health"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/persist"
	"github.com/sluice-lb/sluice/dataplane/tcpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// Defaults applied where a snapshot leaves a setting out.
const (
	defaultConnectTimeout = 5 * time.Second
	maxDefaultTimeout     = 5 * time.Second
	defaultFall           = 3
	defaultRise           = 2
	defaultJitter         = 0.1
	defaultRetries        = 3
	defaultStickSize      = 100000
	defaultStickExpire    = 30 * time.Minute
)

// cluster is the compiled form of one snapshot cluster. Only its picker
// changes after compilation: it is rebuilt, off the request path, when the
// health of an endpoint changes or an endpoint's slow start advances.
type cluster struct {
	name string
	spec *sluicev1.Cluster
	// equal is the spec of the last snapshot that had this cluster, when
	// it is not spec itself but equal to it (see sameSpec); only Apply
	// touches it, under Node.mu.
	equal *sluicev1.Cluster
	// encoded is spec's deterministic encoding, once sameSpec needed it.
	encoded  []byte
	members  lb.Set // the active endpoints; Down and weights are set in rebuild
	info     []memberInfo
	inactive []inactive // DRAINING and DISABLED, for status only
	// revived holds the members that were inactive in the running
	// cluster; Apply revives them (Endpoint.Revive) as it swaps.
	revived        []*upstream.Endpoint
	connectTimeout time.Duration
	drainTimeout   time.Duration
	checks         []health.Spec
	key            hashKey // HASH policy only
	newPicker      func(lb.Set) lb.Picker
	picker         atomic.Pointer[pickerBox]

	queue        *queue // nil when queueing is off
	queueTimeout time.Duration
	abortOnClose bool // work whose client closed leaves the queue (clientWatcher)
	slowStart    time.Duration
	cookie       *cookiePersistence // nil without cookie persistence
	stick        *persist.Table     // nil without a stick table
	outlierCfg   *outlierConfig     // nil without outlier_detection
	// outlier ejects members on what traffic sees. Apply sets it: the
	// running cluster's when it had outlier detection, else a new one.
	outlier *ejector
	// tls is how endpoints and checks speak TLS; nil: plain TCP. Apply
	// sets it (compileUpstreamTLS) and hands it to the endpoints.
	tls *upstreamTLS
	// meter counts the cluster's traffic; Apply gives it the running
	// cluster's of the same name, so counts survive applies.
	meter *meter.Cluster

	// byName indexes members by endpoint name, for clusters too big to
	// scan (see member); nil for the others. Never changed once compiled.
	byName map[string]int32
	// expensive: the policy's picker takes milliseconds to build (a
	// Maglev table, a hash ring), so Apply defers it (deferredPicker).
	expensive bool

	mu sync.Mutex // guards below; held by rebuild
	// wasDown holds the members that were down at the last rebuild; since
	// the start of each slow start under way. Both stay nil in the common
	// case of a cluster all up and not ramping: a snapshot of 10k
	// clusters should not cost 20k empty maps.
	wasDown map[*upstream.Endpoint]bool
	since   map[*upstream.Endpoint]time.Time
	timer   *time.Timer // the next slow-start step
	retire  bool        // replaced or removed by a newer snapshot

	// successor is the cluster of the same name that a newer snapshot
	// compiled in place of this one; Apply sets it as it retires this
	// one. Work still waiting in the queue they share picks from the
	// newest (latest), so that capacity the newer snapshot added, or
	// health it saw since, serves what waited from before.
	successor atomic.Pointer[cluster]
}

// latest returns the newest cluster that replaced c, or c.
func (c *cluster) latest() *cluster {
	for {
		next := c.successor.Load()
		if next == nil {
			return c
		}
		c = next
	}
}

// indexFrom is the size from which a cluster indexes its members by name:
// below, a scan is as fast as a map lookup and costs no allocation.
const indexFrom = 16

// member returns the member called name at addr; nil if there is none.
func (c *cluster) member(name, addr string) *upstream.Endpoint {
	if c.byName != nil {
		if i, ok := c.byName[name]; ok && c.members[i].Endpoint.Addr == addr {
			return c.members[i].Endpoint
		}
		return nil
	}
	for _, m := range c.members {
		if m.Endpoint.Name == name && m.Endpoint.Addr == addr {
			return m.Endpoint
		}
	}
	return nil
}

// memberByKey returns the member whose Endpoint.Key is key; nil if none.
func (c *cluster) memberByKey(key string) *upstream.Endpoint {
	_, rest, _ := strings.Cut(key, "/")
	name, addr, _ := strings.Cut(rest, "@")
	if ep := c.member(name, addr); ep != nil && ep.Key() == key {
		return ep
	}
	return nil
}

// inactiveByKey returns the draining or disabled endpoint whose
// Endpoint.Key is key; nil if none.
func (c *cluster) inactiveByKey(key string) *upstream.Endpoint {
	for _, in := range c.inactive {
		if in.ep.Key() == key {
			return in.ep
		}
	}
	return nil
}

// setSince starts the slow start of ep at t. c.mu is held, or c is not
// published yet.
func (c *cluster) setSince(ep *upstream.Endpoint, t time.Time) {
	if c.since == nil {
		c.since = map[*upstream.Endpoint]time.Time{}
	}
	c.since[ep] = t
}

// stateDraining is the state of a drained inactive endpoint.
const stateDraining = "DRAINING"

// inactive is an endpoint an operator took out (state DRAINING or
// DISABLED), for status and ShutdownSessions.
type inactive struct {
	ep     *upstream.Endpoint
	state  string    // stateDraining or "DISABLED"
	since  time.Time // when an apply first gave it this state
	weight uint32    // as configured, for status: what it gets back
	backup bool
	// sendProxy is the PROXY header version of its health checks, which
	// go on while it drains.
	sendProxy int
}

// memberInfo is what persistence needs to know of members[i].
type memberInfo struct {
	stickable bool   // neither backup nor non_stick
	cookie    string // the persistence cookie's value naming the endpoint
	setCookie []byte // the Set-Cookie field value giving it
	sendProxy int    // PROXY header version of its connections and checks; 0: none
}

// cookiePersistence is the compiled cookie block of a cluster.
type cookiePersistence struct {
	name     string
	indirect bool
	nocache  bool
}

// pickerBox is one picker and the persistence view of the same set.
type pickerBox struct {
	lb.Picker
	// set is what the picker was built from (health, slow start and
	// backups applied). Rebalance reads it.
	set lb.Set
	// eligible is set.Eligible(), the members taking new work, kept so
	// that the paths that scan them (around, mark) do not filter set
	// again, and allocate, each time.
	eligible lb.Set
	// left is where in eligible the last scan for a member not marked
	// out found one (allMarked): the next starts there, so that a
	// cluster losing its members one by one is not scanned from the
	// first of them each time.
	left atomic.Int32
	// sticky holds the endpoints a persistent client may be sent back to,
	// by their index in members: those taking new work (lb.Set.Eligible),
	// stickable. Nil for a cluster without persistence.
	sticky   map[*upstream.Endpoint]int
	byCookie map[string]*upstream.Endpoint
	// gen tells this box from every other of the process: checks that
	// mark a member down, or an ejection, before the next rebuild record
	// gen in it (upstream.Endpoint.MarkDown), and picks go around it until
	// the rebuild they scheduled replaces the box. That rebuild may
	// wait up to rebuildEvery, and a request sent meanwhile to an endpoint
	// known down would fail, or wait out its connect timeout.
	gen uint64
}

// boxGens numbers the pickerBoxes of the process (pickerBox.gen).
var boxGens atomic.Uint64

// markedDown reports whether checks marked ep down, or outlier detection
// ejected it, since b was built.
func (b *pickerBox) markedDown(ep *upstream.Endpoint) bool { return ep.MarkedDown(b.gen) }

// markDown records, for the running picker, that checks just marked the
// member ep down (down) or up. A rebuild builds its box from the checks'
// states under the same lock, so a change is either recorded for the box
// it replaces, whose picker then left ep as the checks had it, or for the
// new one. Up only undoes a down recorded for this box: an endpoint the
// picker was built without waits for the rebuild.
//
// It reports whether the picker has nothing left that is not marked out:
// then the rebuild should not wait, since only it brings the backups in
// (or finds none, and work is refused rather than sent to the endpoint).
func (c *cluster) markDown(ep *upstream.Endpoint, down bool) (exhausted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retire {
		return false
	}
	return c.mark(ep, upstream.MarkChecks, down)
}

// markEjected is markDown for an ejection (ejected) or a return from one.
// It runs on the request that crossed a threshold, which must not wait
// for a rebuild under way, so it does not take the lock: a rebuild that
// read the ejections just before it may leave the mark to the box it then
// replaces; that rebuild reads them again once it has published its own
// box, and marks the ejection there (rebuildPicker). A return missed that
// way waits for the batched rebuild ejectionsChanged also scheduled.
func (c *cluster) markEjected(ep *upstream.Endpoint, ejected bool) (exhausted bool) {
	return c.mark(ep, upstream.MarkEjected, ejected)
}

// mark marks ep out (out) for why, or undoes that, for the running picker,
// and reports, for out, whether that left the picker nothing to choose
// that is not marked out (see markDown).
func (c *cluster) mark(ep *upstream.Endpoint, why upstream.DownMark, out bool) (exhausted bool) {
	box := c.picker.Load()
	switch {
	case box == nil:
		return false
	case !out:
		ep.UnmarkDown(box.gen, why)
		return false
	}
	ep.MarkDown(box.gen, why)
	return box.allMarked()
}

// allMarked reports whether every member taking new work is marked out.
// The scan starts where the last one found a member left, and wraps: as
// members go out one by one, each scan passes only those marked since, so
// a cluster of n losing them all costs O(n) in all, not O(n²).
func (b *pickerBox) allMarked() bool {
	n := len(b.eligible)
	start := int(b.left.Load())
	for k := range n {
		i := (start + k) % n
		if !b.markedDown(b.eligible[i].Endpoint) {
			b.left.Store(int32(i))
			return false
		}
	}
	return true
}

// compileCluster builds a cluster. prev is the running cluster of the same
// name, if any: the endpoints it has at the same name and address survive
// (the same *Endpoint, with its connections and counters), and its queue,
// stick table and slow-start clocks carry over.
func compileCluster(spec *sluicev1.Cluster, prev *cluster) *cluster {
	c := &cluster{
		name:           spec.GetName(),
		spec:           spec,
		connectTimeout: durationOr(spec.GetConnectTimeout().AsDuration(), defaultConnectTimeout),
		drainTimeout:   spec.GetDrainTimeout().AsDuration(),
		slowStart:      spec.GetSlowStart().AsDuration(),
		members:        make(lb.Set, 0, len(spec.GetEndpoints())),
		info:           make([]memberInfo, 0, len(spec.GetEndpoints())),
	}
	var prevSince map[*upstream.Endpoint]time.Time
	var prevDown map[*upstream.Endpoint]bool
	var prevInactive map[string]inactive // by Endpoint.Key
	if prev != nil {
		for _, in := range prev.inactive {
			if prevInactive == nil {
				prevInactive = make(map[string]inactive, len(prev.inactive))
			}
			prevInactive[in.ep.Key()] = in
		}
		// prev is live: its slow-start timer and health rebuilds write
		// these maps under prev.mu.
		prev.mu.Lock()
		prevSince, prevDown = maps.Clone(prev.since), maps.Clone(prev.wasDown)
		prev.mu.Unlock()
	}
	if ck := spec.GetCookie(); ck != nil {
		c.cookie = &cookiePersistence{name: ck.GetName(), indirect: ck.GetIndirect(), nocache: ck.GetNocache()}
	}
	if st := spec.GetStick(); st != nil {
		want := stickParamsOf(st)
		if prev != nil && prev.stick != nil && stickParamsOf(prev.spec.GetStick()) == want {
			// The clients keep their endpoints, also when the snapshot
			// only wrote out (or left out) the table's defaults.
			c.stick = prev.stick
		} else {
			c.stick = persist.NewTable(want.size, want.expire)
		}
	}
	var now time.Time // when endpoints joined, if any did
	for _, e := range spec.GetEndpoints() {
		var ep *upstream.Endpoint
		if prev != nil {
			ep = prev.member(e.GetName(), e.GetAddress())
		}
		switch e.GetState() {
		case sluicev1.AdminState_ADMIN_STATE_DRAINING, sluicev1.AdminState_ADMIN_STATE_DISABLED:
			// Not in any picker, not a member: Apply retires the
			// running endpoint like a removed one. One
			// that stays inactive keeps its *Endpoint, and so its
			// connections for ShutdownSessions and its counters.
			key := upstream.KeyOf(c.name, e.GetName(), e.GetAddress())
			in := inactive{ep: ep, state: strings.TrimPrefix(e.GetState().String(), "ADMIN_STATE_"), weight: snapshot.Weight(e), backup: e.GetBackup(),
				sendProxy: sendProxyVersion(spec, e)}
			p, was := prevInactive[key]
			if ep == nil {
				in.ep = p.ep
				if !was {
					in.ep = upstream.New(c.name, e.GetName(), e.GetAddress())
				}
			}
			in.since = p.since
			if !was || p.state != in.state {
				in.since = time.Now()
			}
			c.inactive = append(c.inactive, in)
			continue
		}
		if ep == nil {
			if in := prevInactive[upstream.KeyOf(c.name, e.GetName(), e.GetAddress())]; in.ep != nil {
				// Back from DRAINING or DISABLED: the endpoint its
				// drain retired, whose sessions that drain has not
				// closed yet go on (Apply revives it as it swaps).
				ep = in.ep
				c.revived = append(c.revived, ep)
			} else {
				ep = upstream.New(c.name, e.GetName(), e.GetAddress())
			}
			if prev != nil && c.slowStart > 0 {
				// Joined a running cluster: ramp it up. A cluster's
				// first endpoints start together at full weight.
				if now.IsZero() {
					now = time.Now()
				}
				c.setSince(ep, now)
			}
		}
		if t, ok := prevSince[ep]; ok {
			c.setSince(ep, t)
		}
		if prevDown[ep] {
			if c.wasDown == nil {
				c.wasDown = map[*upstream.Endpoint]bool{}
			}
			c.wasDown[ep] = true
		}
		c.members = append(c.members, lb.Member{Endpoint: ep, Weight: snapshot.Weight(e), Backup: e.GetBackup(), MaxConn: e.GetMaxConn()})
		mi := memberInfo{stickable: !e.GetBackup() && !e.GetNonStick(), sendProxy: sendProxyVersion(spec, e)}
		if c.cookie != nil && mi.stickable {
			mi.cookie = persist.CookieValue(c.name, e.GetName(), e.GetCookie())
			mi.setCookie = persist.SetCookie(spec.GetCookie(), mi.cookie)
		}
		c.info = append(c.info, mi)
	}
	if len(c.members) >= indexFrom {
		c.byName = make(map[string]int32, len(c.members))
		for i, m := range c.members {
			c.byName[m.Endpoint.Name] = int32(i)
		}
	}
	c.queueTimeout = c.connectTimeout
	if spec.QueueTimeout != nil {
		c.queueTimeout = spec.GetQueueTimeout().AsDuration()
	}
	c.abortOnClose = spec.GetAbortOnClose()
	if c.queueTimeout > 0 && c.members.Limited() {
		// Only a cluster with a max_conn is ever full; the others pay
		// nothing for queueing, not even on Release.
		c.queue = &queue{}
		if prev != nil && prev.queue != nil {
			c.queue = prev.queue
		}
	}
	c.newPicker = pickerFor(spec)
	if spec.GetLbPolicy() == sluicev1.LbPolicy_LB_POLICY_HASH {
		c.key = newHashKey(spec.GetHash())
		c.expensive = spec.GetHash().GetMethod() != sluicev1.HashMethod_HASH_METHOD_MAP_BASED
	}
	if hc := spec.GetHealthCheck(); hc != nil {
		c.checks = checkSpecs(hc, c.members, c.inactive)
		for i := range c.members {
			c.checks[i].SendProxy = c.info[i].sendProxy
		}
		for i := range c.checks {
			c.checks[i].HTTP2 = spec.GetHttp2()
		}
	}
	if od := spec.GetOutlierDetection(); od != nil {
		c.outlierCfg = compileOutlier(od)
		if prev != nil {
			c.outlier = prev.outlier // nil when it had none
		}
	}
	return c
}

// endpoint returns the running endpoint called name, active or not; nil if
// the cluster has none.
func (c *cluster) endpoint(name string) *upstream.Endpoint {
	if c.byName != nil {
		if i, ok := c.byName[name]; ok {
			return c.members[i].Endpoint
		}
	} else {
		for _, m := range c.members {
			if m.Endpoint.Name == name {
				return m.Endpoint
			}
		}
	}
	for _, in := range c.inactive {
		if in.ep.Name == name {
			return in.ep
		}
	}
	return nil
}

// checkSpecs are the health checks hc asks for: one per member, in the
// order of members, then one per draining endpoint. A draining endpoint
// is checked as HAProxy checks a server in DRAIN, so that its health is
// known, to operators and to the picker, once it is enabled again; a
// disabled one is not (HAProxy's MAINT).
func checkSpecs(hc *sluicev1.HealthCheck, members lb.Set, inactive []inactive) []health.Spec {
	interval := durationOr(hc.GetInterval().AsDuration(), health.DefaultInterval)
	base := health.Spec{
		Interval:     interval,
		Timeout:      durationOr(hc.GetTimeout().AsDuration(), min(interval, maxDefaultTimeout)),
		Fall:         defaultFall,
		Rise:         defaultRise,
		FastInterval: hc.GetFastInterval().AsDuration(),
		DownInterval: hc.GetDownInterval().AsDuration(),
		Jitter:       defaultJitter,
	}
	if hc.Fall != nil {
		base.Fall = int(hc.GetFall())
	}
	if hc.Rise != nil {
		base.Rise = int(hc.GetRise())
	}
	if hc.JitterPercent != nil {
		base.Jitter = float64(hc.GetJitterPercent()) / 100
	}
	if h := hc.GetHttp(); h != nil {
		base.HTTPMethod, base.HTTPPath, base.HTTPHost = h.GetMethod(), h.GetPath(), h.GetHost()
		if base.HTTPPath == "" {
			base.HTTPPath = "/"
		}
		// Validated with the snapshot: cannot fail here.
		base.Expect, _ = snapshot.ParseStatusSpec(h.GetExpectedStatus())
	}
	specs := make([]health.Spec, len(members), len(members)+len(inactive))
	for i, m := range members {
		specs[i] = base
		specs[i].Key, specs[i].Addr = m.Endpoint.Key(), m.Endpoint.Addr
	}
	for _, in := range inactive {
		if in.state == stateDraining {
			s := base
			s.Key, s.Addr, s.SendProxy = in.ep.Key(), in.ep.Addr, in.sendProxy
			specs = append(specs, s)
		}
	}
	return specs
}

// Slow start ramps an endpoint's weight from slowStartFloor of its weight
// to all of it in steps of about slowStartStep of the ramp, rebuilding the
// picker at each step. While any endpoint ramps, every weight is scaled by
// slowStartScale so that small weights ramp smoothly too.
const (
	slowStartFloor = 0.1
	slowStartSteps = 20
	slowStartScale = 100
	minStepTime    = 50 * time.Millisecond
)

// rebuild makes a new picker from the endpoints' current health, ejections
// and slow starts, and wakes the queue to pick from it. An ejected endpoint
// is down to the picker, as one checks marked down: out of balancing and
// persistence, and no longer a primary that keeps backups idle.
func (c *cluster) rebuild(state func(key string) health.State) {
	if c.rebuildPicker(state, false) && c.queue != nil {
		c.queue.wakeAll()
	}
}

// rebuildPicker is rebuild without the wake; with deferred, an expensive
// picker is built on its first pick or by buildDeferred, whichever comes
// first, instead of now (see deferredPicker). It reports false when the
// cluster is retired, and then builds nothing. Apply builds a cluster's picker with it before the
// cluster is in use; the queue it may share with the cluster it replaces
// is woken once the replacement is (a wake now would have every waiter
// pick from the old cluster again, in vain).
func (c *cluster) rebuildPicker(state func(key string) health.State, deferred bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retire {
		return false
	}
	now := time.Now()
	set := make(lb.Set, len(c.members))
	copy(set, c.members)
	ejected := c.outlier.ejected()
	for i := range set {
		ep := set[i].Endpoint
		if len(c.checks) > 0 {
			set[i].Down = state(ep.Key()) == health.Down
		}
		if ejected[ep] {
			set[i].Down = true
		}
		switch {
		case set[i].Down:
			if c.wasDown == nil {
				c.wasDown = map[*upstream.Endpoint]bool{}
			}
			c.wasDown[ep] = true
		case c.wasDown[ep]:
			delete(c.wasDown, ep)
			if c.slowStart > 0 {
				c.setSince(ep, now) // recovered: ramp up again
			}
		}
	}
	if c.spec.GetAllBackups() {
		set.AllBackups()
	}
	ramping := false
	for i := range set {
		if len(c.since) == 0 {
			break
		}
		t, ok := c.since[set[i].Endpoint]
		if !ok {
			continue
		}
		if elapsed := now.Sub(t); elapsed < c.slowStart && c.slowStart > 0 {
			ramping = true
		} else {
			delete(c.since, set[i].Endpoint)
		}
	}
	if ramping {
		for i := range set {
			set[i].Full = set[i].Weight * slowStartScale
			w := float64(set[i].Full)
			if t, ok := c.since[set[i].Endpoint]; ok {
				frac := max(slowStartFloor, float64(now.Sub(t))/float64(c.slowStart))
				w = max(1, w*frac)
				if set[i].Weight == 0 {
					w = 0
				}
			}
			set[i].Weight = uint32(w)
		}
		if c.timer == nil {
			step := max(c.slowStart/slowStartSteps, minStepTime)
			c.timer = time.AfterFunc(step, func() {
				c.mu.Lock()
				c.timer = nil
				c.mu.Unlock()
				c.rebuild(state)
			})
		}
	}
	box := &pickerBox{set: set, eligible: set.Eligible(), gen: boxGens.Add(1)}
	if deferred && c.expensive {
		box.Picker = &deferredPicker{c: c, build: c.newPicker, set: set}
	} else {
		box.Picker = c.newPicker(set)
	}
	if c.cookie != nil || c.stick != nil {
		// A client is sent back to a primary that is up, weight 0
		// included: as HAProxy's weight 0, it takes no new clients but
		// keeps its persistent ones (a DRAINING or DISABLED endpoint is
		// not in set at all). set is parallel to info.
		box.sticky = map[*upstream.Endpoint]int{}
		if c.cookie != nil {
			box.byCookie = map[string]*upstream.Endpoint{}
		}
		for i, m := range set {
			if !c.info[i].stickable || m.Down {
				continue
			}
			box.sticky[m.Endpoint] = i
			if c.cookie != nil {
				box.byCookie[c.info[i].cookie] = m.Endpoint
			}
		}
	}
	c.picker.Store(box)
	// An ejection between the read of ejected above and now marked the
	// box this one replaces (markEjected does not wait for the lock):
	// mark it for this one, or the endpoint would stay in the picker
	// until the next rebuild. One after now finds this box. Should that
	// leave this box nothing, the backups come in at once, as they do
	// after markEjected (Node.ejectionsChanged).
	late := false
	for ep := range c.outlier.ejected() {
		if !ejected[ep] {
			ep.MarkDown(box.gen, upstream.MarkEjected)
			late = true
		}
	}
	if late && box.allMarked() {
		go c.rebuild(state)
	}
	return true
}

// deferredPicker is a picker that is built when first needed: Apply
// compiles thousands of clusters, and a Maglev table takes a couple of
// milliseconds to fill, so Apply publishes the clusters of a snapshot with
// their expensive pickers deferred and builds them right after, in the
// background (Node.buildDeferred). A request that comes first builds the
// picker it needs itself; others on the same cluster wait for it.
type deferredPicker struct {
	c     *cluster // whose picker it is
	once  sync.Once
	build func(lb.Set) lb.Picker // nil once built
	set   lb.Set
	p     lb.Picker
}

func (d *deferredPicker) Pick(r lb.Request) (*upstream.Endpoint, error) {
	d.once.Do(d.do)
	return d.p.Pick(r)
}

func (d *deferredPicker) do() {
	d.p = d.build(d.set)
	d.build = nil
}

// retired reports whether a newer snapshot replaced or removed the cluster
// (stop).
func (c *cluster) retired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retire
}

// removed reports whether a newer snapshot removed the cluster: it was
// retired with no successor. Apply stores the successor before it retires
// a cluster it replaces, so a retired cluster without one was removed.
func (c *cluster) removed() bool {
	return c.retired() && c.successor.Load() == nil
}

// stop ends the cluster's slow-start steps once a newer snapshot replaced
// it; the newer cluster carries the ramps on.
func (c *cluster) stop() {
	c.mu.Lock()
	c.retire = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
}

// pickerFor returns the constructor of the cluster's balancing policy.
func pickerFor(spec *sluicev1.Cluster) func(lb.Set) lb.Picker {
	switch spec.GetLbPolicy() {
	case sluicev1.LbPolicy_LB_POLICY_STATIC_RR:
		return lb.NewStaticRR
	case sluicev1.LbPolicy_LB_POLICY_FIRST:
		return lb.NewFirst
	case sluicev1.LbPolicy_LB_POLICY_LEAST_CONN:
		return lb.NewLeastConn
	case sluicev1.LbPolicy_LB_POLICY_RANDOM:
		draws := lb.DefaultDraws
		if r := spec.GetRandom(); r != nil && r.Draws != nil {
			draws = int(r.GetDraws())
		}
		return func(s lb.Set) lb.Picker { return lb.NewRandom(s, draws) }
	case sluicev1.LbPolicy_LB_POLICY_HASH:
		h := spec.GetHash()
		method := lb.HashMap
		switch h.GetMethod() {
		case sluicev1.HashMethod_HASH_METHOD_MAGLEV:
			method = lb.HashMaglev
		case sluicev1.HashMethod_HASH_METHOD_RING:
			method = lb.HashRing
		}
		factor := h.GetBalanceFactor()
		return func(s lb.Set) lb.Picker { return lb.NewHash(s, method, factor) }
	}
	return lb.NewRoundRobin
}

// failures says which endpoints the work already failed to connect to (or
// for the same server: upstream.Failures.Has). A retry is sent elsewhere
// (HAProxy's redispatch).
type failures interface {
	Failed(ep *upstream.Endpoint) bool
}

// exactFailures are failures that also tell the endpoints that failed
// from others for the same server, made anew by an apply since
// (upstream.Failures.HasExactly): *httpproxy.Request, *tcpproxy.Attempt.
type exactFailures interface {
	FailedExactly(ep *upstream.Endpoint) bool
}

// work is what picks: *httpproxy.Request and *tcpproxy.Attempt. Its
// Context ends when its listener is removed (or its HTTP/2 stream ends),
// and a wait in the queue with it.
type work interface {
	failures
	Context() context.Context
}

// clientWatcher is work whose client can be watched while the work waits
// in the queue (an HTTP/1.1 *httpproxy.Request): the channel WatchClient
// returns is closed once the client closed its connection (nil: the work
// cannot be watched), and stop ends the watch.
type clientWatcher interface {
	WatchClient() (gone <-chan struct{}, stop func())
}

// pick chooses an endpoint for r and counts the work in. An endpoint whose
// last free slot another request took since the picker looked is picked
// around, a few times, before the cluster counts as full; full, the work
// waits in the cluster's queue, and with abort_on_close leaves it when its
// client closes.
func (c *cluster) pick(r lb.Request, f work) (*upstream.Endpoint, error) {
	ep, err := c.tryPick(r, f)
	if err != lb.ErrFull || c.queue == nil {
		return ep, err
	}
	q := c.queue
	err = q.wait(c.queueTimeout, f.Context().Done(), c.watcher(f), false, func() error {
		l := c.latest()
		var err error
		ep, err = l.tryPick(r, f)
		if err == lb.ErrFull && (l.queue != q || l.removed()) {
			// A newer snapshot turned queueing off (the cluster that
			// replaced c has no queue, or another one) or removed the
			// cluster: the work is answered as new work would be,
			// not left in a line nothing wakes any more.
			return errQueueGone
		}
		return err
	})
	if err == errQueueGone {
		err = lb.ErrFull
	}
	return ep, err
}

// watcher is what the queue watches f's client with while f waits
// (abort_on_close): nil when it does not.
func (c *cluster) watcher(f work) func() (<-chan struct{}, func()) {
	if w, ok := f.(clientWatcher); ok && c.abortOnClose {
		return w.WatchClient
	}
	return nil
}

// maxPickTries bounds the picks of one tryPick: endpoints found full, or
// failed already, are picked around.
const maxPickTries = 8

func (c *cluster) tryPick(r lb.Request, f failures) (*upstream.Endpoint, error) {
	p := c.picker.Load()
	full := false
	for range maxPickTries {
		ep, err := p.Pick(r)
		if err != nil {
			return nil, err
		}
		if f.Failed(ep) || p.markedDown(ep) {
			if c.spec.GetLbPolicy() != sluicev1.LbPolicy_LB_POLICY_HASH {
				// LEAST_CONN and FIRST pick a dead endpoint again and
				// again (it has the fewest connections; it is first):
				// choose among the others directly.
				return p.around(f)
			}
			// A hash picker returns the same endpoint for the same
			// key: move the key along to reach another one.
			r.Hash = remix(r.Hash)
			continue
		}
		if ep.TryAcquire() {
			return ep, nil
		}
		full = true
	}
	if !full {
		return p.around(f)
	}
	return nil, lb.ErrFull
}

// around picks, for work that failed on some endpoints, the endpoint with
// the least work for its weight among those taking new work (as the picker
// sees them: primaries, or the backups in use when every primary is down)
// that did not fail it. A backup is not used because primaries failed this
// one request: backups serve only when every primary is known down (DESIGN
// problem 4). It is the retry path only, so a scan is fine.
//
// When only endpoints for servers the work failed on are left, one that
// an apply made anew since (the server removed and added back while the
// work picked) is taken: it has not failed, and nothing else can serve.
//
// Endpoints marked out since the picker was built (markedDown: down by
// checks, or ejected) are gone around too, unless nothing else is left:
// then the node is rebuilding the picker, which brings the backups in
// (markDown), and until it has, the picker's choice stands.
func (b *pickerBox) around(f failures) (*upstream.Endpoint, error) {
	ep, err := b.aroundBy(func(ep *upstream.Endpoint) bool { return b.markedDown(ep) || f.Failed(ep) })
	if err != lb.ErrNoEndpoint {
		return ep, err
	}
	ep, err = b.aroundBy(f.Failed)
	if err == lb.ErrNoEndpoint {
		if x, ok := f.(exactFailures); ok {
			return b.aroundBy(x.FailedExactly)
		}
	}
	return ep, err
}

// aroundBy is around with failed saying which endpoints failed.
func (b *pickerBox) aroundBy(failed func(*upstream.Endpoint) bool) (*upstream.Endpoint, error) {
	var best *lb.Member
	full := false
	eligible := b.eligible
	for i := range eligible {
		m := &eligible[i]
		if failed(m.Endpoint) {
			continue
		}
		if m.MaxConn > 0 && m.Endpoint.Inflight() >= int64(m.MaxConn) {
			full = true
			continue
		}
		// Least in-flight per weight: a/wa < b/wb.
		if best == nil || m.Endpoint.Inflight()*int64(max(best.Weight, 1)) < best.Endpoint.Inflight()*int64(max(m.Weight, 1)) {
			best = m
		}
	}
	switch {
	case best != nil && best.Endpoint.TryAcquire():
		return best.Endpoint, nil
	case best != nil || full:
		return nil, lb.ErrFull
	}
	return nil, lb.ErrNoEndpoint
}

// retries is how many other endpoints work tries after a failed connect.
func (c *cluster) retries() int {
	if c.spec.Retries != nil {
		return int(c.spec.GetRetries())
	}
	return defaultRetries
}

// remix is splitmix64's finalizer: a new, well-spread hash from h.
func remix(h uint64) uint64 {
	h += 0x9e3779b97f4a7c15
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// sticky is persist for the endpoint the stick table holds for client.
func (c *cluster) sticky(box *pickerBox, client netip.Addr, f work) (ep *upstream.Endpoint, held bool, err error) {
	if c.stick == nil || !client.IsValid() {
		return nil, false, nil
	}
	return c.persist(box, c.stick.Get(client), f)
}

// persist acquires ep, the endpoint a client persists to (its cookie, its
// stick-table entry), for the work f. It returns nil when there is none,
// or it is not one to persist to (down, ejected, drained, disabled; at
// weight 0 it still is), or f failed on it already: the work is balanced,
// and persists to where it goes. A full ep (at its max_conn) keeps the
// client: with a queue the work waits for ep, as HAProxy queues persistent
// work on its server, and fails as queued work does when the wait does;
// without one it goes elsewhere this once, held, and the client stays
// persisted to ep.
func (c *cluster) persist(box *pickerBox, ep *upstream.Endpoint, f work) (got *upstream.Endpoint, held bool, err error) {
	if ep == nil || f.Failed(ep) || box.markedDown(ep) {
		return nil, false, nil
	}
	if _, ok := box.sticky[ep]; !ok {
		return nil, false, nil
	}
	if ep.TryAcquire() {
		return ep, false, nil
	}
	if c.queue == nil {
		return nil, true, nil
	}
	q := c.queue
	err = q.wait(c.queueTimeout, f.Context().Done(), c.watcher(f), true, func() error {
		l := c.latest()
		if l.queue != q || l.removed() {
			return errQueueGone
		}
		box := l.picker.Load()
		if _, ok := box.sticky[ep]; !ok || box.markedDown(ep) {
			return errQueueGone // it no longer takes work: balance
		}
		if ep.TryAcquire() {
			return nil
		}
		return lb.ErrFull
	})
	switch err {
	case nil:
		return ep, false, nil
	case errQueueGone:
		return nil, false, nil
	}
	return nil, false, err
}

// remember records in the stick table that client went to ep.
func (c *cluster) remember(box *pickerBox, client netip.Addr, ep *upstream.Endpoint) {
	if c.stick == nil || !client.IsValid() {
		return
	}
	if _, ok := box.sticky[ep]; ok {
		c.stick.Put(client, ep)
	}
}

// requestKey is what the cluster's policy balances req by.
func (c *cluster) requestKey(req *httpproxy.Request) lb.Request {
	var r lb.Request
	c.key.http(req, &r)
	return r
}

// httpDirector sends every request of an HTTP listener to one cluster.
type httpDirector struct{ c *cluster }

func (d httpDirector) Pick(req *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	c := d.c
	req.RoutedTo(c.meter, c.name)
	if c.abortOnClose {
		req.AbortOnClose()
	}
	if c.cookie == nil && c.stick == nil {
		var r lb.Request
		c.key.http(req, &r)
		ep, err := c.pick(r, req)
		return ep, c.connectTimeout, err
	}
	box := c.picker.Load()
	var sent []byte // the client's persistence cookie, if any
	if c.cookie != nil {
		// Sluice owns the cookie: one the endpoint sets itself is removed.
		req.RemoveResponseCookie(c.cookie.name)
		sent = req.Cookie(c.cookie.name)
		if c.cookie.indirect && sent != nil {
			req.RemoveCookie(c.cookie.name)
		}
		if sent != nil {
			ep, held, err := c.persist(box, box.byCookie[string(sent)], req)
			if ep != nil || err != nil {
				return ep, c.connectTimeout, err
			}
			if held {
				// Its endpoint is full: served elsewhere, and its
				// cookie left as it is.
				ep, err := c.pick(c.requestKey(req), req)
				return ep, c.connectTimeout, err
			}
		}
	}
	ep, held, err := c.sticky(box, req.ClientAddr(), req)
	if err != nil {
		return nil, 0, err
	}
	if ep == nil {
		if ep, err = c.pick(c.requestKey(req), req); err != nil {
			return nil, 0, err
		}
		if !held {
			c.remember(box, req.ClientAddr(), ep)
		}
	}
	if c.cookie != nil {
		// The client had no valid cookie for ep: give it one, unless ep
		// must not be persisted to (a backup, non_stick).
		if i, ok := box.sticky[ep]; ok {
			req.AddResponseField("Set-Cookie", c.info[i].setCookie)
			if c.cookie.nocache {
				req.AddResponseField("Cache-Control", cachePrivate)
			}
		}
	}
	return ep, c.connectTimeout, nil
}

var cachePrivate = []byte("private")

// tcpDirector sends every session of a TCP listener to one cluster.
type tcpDirector struct{ c *cluster }

func (d tcpDirector) Pick(client net.Addr, a *tcpproxy.Attempt) (*upstream.Endpoint, time.Duration, error) {
	c := d.c
	a.RoutedTo(c.meter, c.name)
	var ip netip.Addr
	box := c.picker.Load()
	if c.stick != nil {
		if tcp, ok := client.(*net.TCPAddr); ok {
			ip = tcp.AddrPort().Addr().Unmap()
		}
		ep, held, err := c.sticky(box, ip, a)
		if ep != nil || err != nil {
			return ep, c.connectTimeout, err
		}
		if held {
			ip = netip.Addr{} // its endpoint is full: elsewhere, not remembered
		}
	}
	var r lb.Request
	c.key.tcp(client, &r)
	ep, err := c.pick(r, a)
	if err != nil {
		return nil, 0, err
	}
	c.remember(box, ip, ep)
	return ep, c.connectTimeout, nil
}

// stickParams is what a stick table runs with: its key, and its size and
// expiry with their defaults filled in.
type stickParams struct {
	on     sluicev1.StickOn
	size   int
	expire time.Duration
}

func stickParamsOf(st *sluicev1.StickTable) stickParams {
	size := int(st.GetSize())
	if size == 0 {
		size = defaultStickSize
	}
	return stickParams{on: st.GetOn(), size: size, expire: durationOr(st.GetExpire().AsDuration(), defaultStickExpire)}
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
