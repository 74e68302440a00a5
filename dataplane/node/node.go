// Package node is a dataplane node's runtime: it compiles each snapshot into
// clusters and listeners, binds what is new, swaps the new configuration in
// atomically and retires what the snapshot no longer names.
//
// Apply is called by the discovery client, one call at a time. A snapshot
// that cannot be applied whole (invalid, or a socket that cannot be bound)
// changes nothing: the node keeps serving its previous configuration and the
// error goes back to the control plane as a NACK.
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/h2proxy"
	"github.com/sluice-lb/sluice/dataplane/health"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/rules"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
	"google.golang.org/protobuf/proto"
)

// Options configure a Node.
type Options struct {
	// OnConn receives the record of every client connection that ends. It
	// is called on the connection's goroutine and must not block.
	OnConn func(*conntrack.ConnInfo)
	// AccessLog gets every HTTP request and TCP session it samples; nil:
	// none are logged.
	AccessLog meter.Log
	// MaxConnections caps the client connections the node holds at once
	// over all its listeners (HAProxy's global maxconn); 0: no cap. At the
	// cap every listener stops serving new connections until one ends,
	// each holding at most one accepted, unread (see listener.serve).
	MaxConnections int
	// ListenerGrace is how long the connections of a listener that a
	// snapshot removes, or whose protocol it changes, have to end once
	// they drain; what is left then is closed (endGeneration). Envoy's
	// drain time covers the same. 0: 10s; negative: no time, they are
	// closed at once.
	ListenerGrace time.Duration
	Logger        *slog.Logger
}

// Node runs the listeners and clusters of the snapshot it applied last.
type Node struct {
	opts    Options
	log     *slog.Logger
	checker *health.Checker
	up      *h2proxy.Upstream // the HTTP/2 engine's endpoint connections (h2.go)
	gate    *connGate         // Options.MaxConnections; nil without a cap

	mu        sync.Mutex   // serialises Apply and Close
	version   atomic.Value // string
	clusters  map[string]*cluster
	current   atomic.Pointer[map[string]*cluster] // for health rebuilds
	listeners map[string]*listener                // by listenerKey
	// meters are the listeners' meters by listener name; a cluster's is
	// on the cluster. Apply hands them on to what keeps its name.
	meters map[string]*meter.Listener
	// ruleSets are the listeners' compiled rules by listener name, whose
	// rate counts Apply carries on to the next snapshot's.
	ruleSets map[string]*rules.Set
	// pickEpoch counts the health changes and ejections that call for a
	// rebuild of a picker (see Apply).
	pickEpoch atomic.Uint64
	scratch   []byte // Apply's, to encode specs (see cluster.sameSpec)
	closed    bool
	ended     []*generation // the listeners' last generations, once closed
	draining  atomic.Bool   // Drain was called: no more applies
	drainEnds time.Time     // Drain's deadline (zero: none, or no Drain)
	stop      chan struct{} // closed by Close
	// removed are the generations of listeners a snapshot removed or
	// changed the protocol of, draining until their grace ends
	// (endGeneration).
	removed map[*generation]struct{}

	statusChanges atomic.Uint64 // see StatusChanges

	rebuildMu   sync.Mutex      // guards the three below
	dirty       map[string]bool // clusters whose endpoints' health changed
	rebuilding  *time.Timer     // the rebuild of dirty clusters, when due
	lastRebuild time.Time
}

// New returns a node with no listeners.
func New(opts Options) *Node {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	n := &Node{
		opts:      opts,
		log:       opts.Logger,
		clusters:  map[string]*cluster{},
		listeners: map[string]*listener{},
		removed:   map[*generation]struct{}{},
		meters:    map[string]*meter.Listener{},
		stop:      make(chan struct{}),
		dirty:     map[string]bool{},
	}
	if opts.MaxConnections > 0 {
		n.gate = &connGate{max: opts.MaxConnections}
	}
	n.version.Store("")
	n.up = h2proxy.NewUpstream(n.endpointProtocol)
	n.checker = health.NewChecker(n.healthChanged)
	n.checker.DialVia(n.checkAddr)
	go n.sweep()
	return n
}

// Version is the version of the snapshot applied last ("" before the first).
func (n *Node) Version() string { return n.version.Load().(string) }

// Apply makes snap the node's configuration, or returns why it cannot and
// changes nothing.
func (n *Node) Apply(version string, snap *sluicev1.Snapshot) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.draining.Load() {
		return errors.New("node is shutting down")
	}
	// A cluster the node runs as the snapshot has it was validated with
	// the snapshot that brought it: only the others are checked on their
	// own (a delta's few), and what spans resources.
	if err := snapshot.ValidateChanged(snap, func(cs *sluicev1.Cluster) bool {
		c := n.clusters[cs.GetName()]
		return c != nil && c.sameSpec(cs, &n.scratch)
	}); err != nil {
		return fmt.Errorf("invalid snapshot: %w", err)
	}

	// Compile clusters. A cluster whose spec did not change is the
	// running one, as it is: its endpoints, picker and checks go on
	// untouched, and a snapshot of 10k clusters that changes a few costs
	// a few compiles. The others are compiled; their endpoints that
	// survive keep their *Endpoint (and so their connections, pool and
	// counters).
	epoch := n.pickEpoch.Load()
	clusters := make(map[string]*cluster, len(snap.GetClusters()))
	var compiled []*cluster
	swapped := false
	defer func() {
		if !swapped {
			// Refused: the clusters compiled for it never ran, but a
			// slow start may have set their steps going.
			for _, c := range compiled {
				c.stop()
			}
		}
	}()
	var todo []compileJob
	for _, cs := range snap.GetClusters() {
		prev := n.clusters[cs.GetName()]
		up, err := compileUpstreamTLS(cs, prev)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", cs.GetName(), err)
		}
		if prev != nil && prev.tls == up && prev.sameSpec(cs, &n.scratch) {
			clusters[prev.name] = prev
			continue
		}
		todo = append(todo, compileJob{spec: cs, prev: prev, tls: up})
	}
	// The clusters are compiled apart from one another, so on every core
	// the node has: a cold start compiles 100k endpoints. A compile that
	// big holds the collector off to the end (holdGC); a delta's few
	// clusters do not, even on a big node.
	if endpointsIn(todo) >= holdGCFrom {
		defer holdGC()()
	}
	forEach(len(todo), func(i int) { n.compile(&todo[i]) })
	for _, j := range todo {
		clusters[j.c.name] = j.c
		compiled = append(compiled, j.c)
	}

	// Rules and HTTP proxy configurations, checked before anything is
	// bound.
	routings := make(map[string]*routing, len(snap.GetListeners()))
	meters := make(map[string]*meter.Listener, len(snap.GetListeners()))
	ruleSets := make(map[string]*rules.Set, len(snap.GetListeners()))
	httpCfgs := map[string]*httpproxy.Config{}
	accepts := map[string]*proxyAccept{}
	for _, ls := range snap.GetListeners() {
		rt, err := compileRouting(ls, clusters, n.ruleSets[ls.GetName()])
		if err != nil {
			return fmt.Errorf("listener %s: %w", ls.GetName(), err)
		}
		ruleSets[ls.GetName()] = rt.rules
		m, ok := n.meters[ls.GetName()]
		if !ok {
			m = n.drainingMeter(ls.GetName())
		}
		if m == nil {
			m = meter.NewListener(ls.GetName(), n.opts.AccessLog)
		}
		if accepts[ls.GetAddress()], err = compileProxyAccept(ls, n.opts.OnConn, m); err != nil {
			return fmt.Errorf("listener %s: proxy_protocol: %w", ls.GetName(), err)
		}
		routings[ls.GetAddress()] = rt
		meters[ls.GetName()] = m
		if ls.GetProtocol() != sluicev1.Protocol_PROTOCOL_HTTP {
			continue
		}
		cfg := httpConfig(ls, rt)
		cfg.Meter = m
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("listener %s: %w", ls.GetName(), err)
		}
		tlsCfg, err := tlsConfig(ls, n.runningTLS(ls.GetAddress()))
		if err != nil {
			return fmt.Errorf("listener %s: %w", ls.GetName(), err)
		}
		cfg.TLS = tlsCfg
		cfg.TLSHandshakeTimeout = ls.GetTls().GetHandshakeTimeout().AsDuration()
		httpCfgs[ls.GetAddress()] = cfg
	}

	// Bind new sockets before touching anything, so a failure leaves the
	// running configuration as it was. Listeners are kept by address.
	listeners := make(map[string]*listener, len(snap.GetListeners()))
	var fresh []*listener
	for _, ls := range snap.GetListeners() {
		addr := ls.GetAddress()
		if l, ok := n.listeners[addr]; ok {
			listeners[addr] = l
			continue
		}
		ln, err := bind(addr)
		if err != nil {
			for _, l := range fresh {
				l.ln.Close()
			}
			return fmt.Errorf("listener %s: %w", ls.GetName(), err)
		}
		l := &listener{address: addr, ln: ln, done: make(chan struct{}), quit: make(chan struct{}), log: n.log, up: n.up, node: n.gate}
		fresh = append(fresh, l)
		listeners[addr] = l
	}

	// Swap: every listener gets its new config in one atomic store each.
	swapped = true
	warnReceiveBuffers(n.log, compiled, n.clusters)
	for _, c := range compiled {
		for _, ep := range c.revived {
			ep.Revive()
		}
		c.revived = nil
		var wake func()
		if c.queue != nil {
			// A queue the running cluster shares takes its new bound
			// only now: a refused snapshot changes nothing.
			c.queue.setMax(int(c.spec.GetMaxQueue()))
			wake = c.queue.wake
		}
		ka := keepAliveConfig(c.spec.GetTcpKeepalive())
		var outlier *upstream.OutlierPolicy
		if c.outlier != nil {
			c.outlier.update(*c.outlierCfg, c.members)
			outlier = c.outlier.policy(*c.outlierCfg)
		}
		for i, m := range c.members {
			m.Endpoint.SetMaxConn(m.MaxConn)
			m.Endpoint.SetSendProxy(c.info[i].sendProxy)
			m.Endpoint.SetReceiveBuffer(int(c.spec.GetReceiveBufferBytes()))
			m.Endpoint.SetKeepAlive(ka)
			m.Endpoint.OnRelease(wake)
			m.Endpoint.SetOutlierPolicy(outlier)
			m.Endpoint.SetTLS(c.tls.config())
			m.Endpoint.SetMeter(c.meter)
			m.Endpoint.SetRetries(c.retries())
		}
	}
	var replaced []*generation
	for _, ls := range snap.GetListeners() {
		l := listeners[ls.GetAddress()]
		l.accept.Store(accepts[ls.GetAddress()])
		l.keepAlive.Store(keepAliveConfig(ls.GetTcpKeepalive()))
		l.gate.setMax(int(ls.GetMaxConnections()))
		l.gate.countIn(meters[ls.GetName()].FullCount())
		if g := l.configure(ls, routings[ls.GetAddress()], httpCfgs[ls.GetAddress()], meters[ls.GetName()], n.opts.OnConn); g != nil {
			replaced = append(replaced, g)
		}
	}
	for _, l := range fresh {
		go l.serve()
		n.log.Info("listening", "address", l.address, "protocol", l.gen.Load().protocol)
	}
	for _, g := range replaced {
		n.endGeneration(g)
	}

	// Break: retire what the snapshot no longer names.
	var retired []*listener
	for key, l := range n.listeners {
		if _, ok := listeners[key]; !ok {
			retired = append(retired, l)
		}
	}
	var checks []health.Spec // of the compiled clusters
	var unchecked []string   // the keys of the checks of those they replace
	for _, c := range compiled {
		checks = append(checks, c.checks...)
	}
	for name, old := range n.clusters {
		c := clusters[name]
		if c == old {
			continue // kept as it was
		}
		for _, s := range old.checks {
			unchecked = append(unchecked, s.Key)
		}
		// What the snapshot drains or removes from a cluster it keeps
		// drains by the snapshot's drain_timeout; a removed cluster has
		// only the one it ran with.
		drainTimeout := old.drainTimeout
		if c != nil {
			drainTimeout = c.drainTimeout
		}
		for _, m := range old.members {
			if c != nil && c.member(m.Endpoint.Name, m.Endpoint.Addr) == m.Endpoint {
				continue // in c too
			}
			m.Endpoint.SetOutlierPolicy(nil)
			retire(m.Endpoint, drainTimeout)
		}
		if c != nil {
			// Before stop: a retired cluster without a successor is a
			// removed one (cluster.removed).
			old.successor.Store(c)
		}
		old.stop()
		if old.queue != nil {
			// What waits picks once more, now from c: it may have room
			// that old had not. With no queue in c (queueing turned
			// off), or no c (the cluster removed), a pick that finds
			// no room is the work's answer (cluster.pick).
			old.queue.wakeAll()
		}
		if old.outlier != nil && (c == nil || c.outlier != old.outlier) {
			// What it ejected returns now.
			why := "outlier detection turned off"
			if c == nil {
				why = "cluster removed"
			}
			old.outlier.stop(why)
		}
	}
	n.clusters, n.listeners, n.meters, n.ruleSets = clusters, listeners, meters, ruleSets
	n.current.Store(&clusters)
	var deferred []*deferredPicker
	for _, c := range compiled {
		// Endpoints named by DNS resolve in the background from now on
		// (a no-op for IP addresses and for resolvers already running).
		refresh := durationOr(c.spec.GetDnsRefresh().AsDuration(), upstream.DefaultRefresh)
		for _, m := range c.members {
			m.Endpoint.StartResolver(refresh, nil, n.log)
		}
		if p := c.picker.Load(); p != nil {
			if d, ok := p.Picker.(*deferredPicker); ok {
				deferred = append(deferred, d)
			}
		}
	}
	n.version.Store(version)
	n.statusChanges.Add(1)
	// A health change or ejection between compiling and publishing was
	// missed by the new pickers (its rebuild went to the clusters they
	// replaced): rebuild them once more now that they are published.
	if n.pickEpoch.Load() != epoch {
		for _, c := range compiled {
			if len(c.checks) > 0 || c.outlier != nil {
				c.rebuild(n.checker.State)
			}
		}
	}
	for _, l := range retired {
		n.removeListener(l)
		n.log.Info("listener closed", "address", l.address)
	}
	// The checks of the clusters kept go on; those of the others are
	// started, restarted if their settings changed, or stopped.
	n.checker.Update(checks, unchecked)
	if len(deferred) > 0 {
		go buildDeferred(deferred, n.stop)
	}
	return nil
}

// compileJob is one cluster Apply compiles: its spec, the running cluster
// of its name (nil: none), its compiled TLS, and the result.
type compileJob struct {
	spec *sluicev1.Cluster
	prev *cluster
	tls  *upstreamTLS
	c    *cluster
}

// compile compiles j's cluster, its picker included. It reads the node
// but changes nothing of it, so that Apply can compile many at once.
func (n *Node) compile(j *compileJob) {
	c := compileCluster(j.spec, j.prev)
	c.tls = j.tls
	if j.prev != nil {
		c.meter = j.prev.meter
	} else {
		c.meter = meter.NewCluster(c.name)
	}
	for i := range c.checks {
		c.checks[i].TLS = j.tls.config()
	}
	if c.outlierCfg != nil && c.outlier == nil {
		c.outlier = newEjector(c.name, n.log, n.ejectionsChanged)
	}
	c.rebuildPicker(n.checker.State, true)
	j.c = c
}

// sameSpec reports whether spec specifies cluster c as it runs. A snapshot
// rebuilt from a delta shares the clusters the delta did not change with
// the one before (discovery.ApplyDelta), so the common case is a pointer
// comparison. A whole snapshot, as a node that reconnects gets, is compared
// by its deterministic encoding with c's (made once, kept), three times as
// fast as proto.Equal; once found equal, its spec is remembered, and the
// deltas that follow, which share it, compare by pointer again. buf is
// scratch space. Apply holds n.mu.
func (c *cluster) sameSpec(spec *sluicev1.Cluster, buf *[]byte) bool {
	if spec == c.spec || spec == c.equal {
		return true
	}
	det := proto.MarshalOptions{Deterministic: true}
	if c.encoded == nil {
		b, err := det.Marshal(c.spec)
		if err != nil {
			return false
		}
		c.encoded = b
	}
	b, err := det.MarshalAppend((*buf)[:0], spec)
	*buf = b
	if err != nil || !bytes.Equal(b, c.encoded) {
		return false
	}
	c.equal = spec
	return true
}

// buildDeferred builds the pickers Apply deferred, in the background, so
// that requests seldom find one unbuilt; it leaves out those replaced
// since (a later apply, a health change), and stops when the node closes
// (stop).
func buildDeferred(pickers []*deferredPicker, stop <-chan struct{}) {
	for _, d := range pickers {
		select {
		case <-stop:
			return
		default:
		}
		if box := d.c.picker.Load(); box.Picker == d && !d.c.retired() {
			d.once.Do(d.do)
		}
	}
}

// removedGrace is Options.ListenerGrace when that is 0: inFlightGrace, as
// requests in flight to a removed endpoint get.
var removedGrace = inFlightGrace

// removeListener closes the socket of l, a listener the snapshot no longer
// names, at once, and ends its connections (endGeneration). n.mu is held.
func (n *Node) removeListener(l *listener) {
	l.stopAccepting()
	n.endGeneration(l.gen.Load())
}

// endGeneration ends the connections of g, which no listener serves new
// ones with any more (its listener was removed, or changed protocol), as
// a node's drain does: HTTP connections when idle or after their current
// exchange (HTTP/2: GOAWAY, the open streams complete), TCP sessions when
// they end; what is left after Options.ListenerGrace is closed, recorded
// as listener_closed, as Envoy drains a listener it removes or replaces.
// n.mu is held.
func (n *Node) endGeneration(g *generation) {
	grace := n.opts.ListenerGrace
	if grace == 0 {
		grace = removedGrace // read here, on the applying goroutine: tests set it
	}
	if grace < 0 {
		g.retire()
		return
	}
	if g.http != nil {
		g.http.DrainRemoved()
	}
	g.graceEnds = time.Now().Add(grace)
	n.removed[g] = struct{}{}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		go func() {
			select {
			case <-n.stop: // Close ends them at once
				cancel()
			case <-ctx.Done():
			}
		}()
		waitConns(ctx, []*generation{g}, drainPoll)
		g.retire()
		n.mu.Lock()
		delete(n.removed, g)
		n.mu.Unlock()
	}()
}

// inFlightGrace is the least time an HTTP request already in flight to a
// retired endpoint is given to finish, so that removing an endpoint with
// drain_timeout 0 does not fail the requests it is answering.
const inFlightGrace = 10 * time.Second

// retire takes an endpoint that is out of every picker. Idle pooled
// connections close at once; TCP sessions when drainTimeout ends (at once
// for 0); HTTP requests in flight get at least inFlightGrace, then whatever
// is left is closed. An endpoint made active again before then keeps what
// is left (compileCluster, Endpoint.Revive).
func retire(ep *upstream.Endpoint, drainTimeout time.Duration) {
	ep.Retire(drainTimeout, inFlightGrace)
}

// runningTLS is the TLS configuration the listener at address serves with
// now, if any. Apply holds n.mu.
func (n *Node) runningTLS(address string) *tls.Config {
	if l, ok := n.listeners[address]; ok {
		if g := l.gen.Load(); g != nil && g.http != nil {
			return g.http.TLS()
		}
	}
	return nil
}

// checkAddr is where health checks of the endpoint key connect: where its
// traffic goes. For an endpoint named by DNS that is its last resolved
// address, so checks agree with traffic and a DNS outage does not mark
// down an endpoint that still answers (DESIGN problem 4); before the first
// resolution, the name.
func (n *Node) checkAddr(key, addr string) string {
	ep := n.endpointByKey(key)
	if ep == nil {
		ep = n.drainingByKey(key)
	}
	if ep != nil {
		if ap, ok := ep.Resolved(); ok {
			return ap.String()
		}
	}
	return addr
}

// running returns the cluster called name of the running configuration;
// nil if there is none. It does not take n.mu: health checks and requests
// call it (Apply holds n.mu while it waits for checks to stop).
func (n *Node) running(name string) *cluster {
	if cur := n.current.Load(); cur != nil {
		return (*cur)[name]
	}
	return nil
}

// clusterOfKey is the name of the cluster of the endpoint whose Endpoint.Key
// is key.
func clusterOfKey(key string) string {
	name, _, _ := strings.Cut(key, "/")
	return name
}

// endpointByKey returns the endpoint of the running configuration whose
// Endpoint.Key is key; nil if there is none.
func (n *Node) endpointByKey(key string) *upstream.Endpoint {
	if c := n.running(clusterOfKey(key)); c != nil {
		return c.memberByKey(key)
	}
	return nil
}

// drainingByKey returns the draining (or disabled) endpoint of the
// running configuration whose Endpoint.Key is key; nil if there is none.
func (n *Node) drainingByKey(key string) *upstream.Endpoint {
	if c := n.running(clusterOfKey(key)); c != nil {
		return c.inactiveByKey(key)
	}
	return nil
}

// rebuildEvery bounds how often health changes rebuild pickers: a cluster
// of 10,000 endpoints under consistent hashing takes tens of milliseconds to
// rebuild, and a rack going down changes the health of many endpoints within
// moments. The first change is acted on at once; changes within the next
// rebuildEvery are batched into one rebuild at its end. Meanwhile picks go
// around an endpoint checks marked down or outlier detection ejected
// (cluster.markDown, markEjected), so no request waits for the rebuild to
// stay off it. One back waits for it, unless it went out since the last.
const rebuildEvery = 100 * time.Millisecond

// healthChanged schedules the rebuild of the picker of the cluster of the
// endpoint whose health changed (key is its Endpoint.Key). It runs on a
// health checker goroutine, and must not take n.mu: Apply holds it while it
// waits for removed checks to stop.
func (n *Node) healthChanged(key string) {
	name := clusterOfKey(key)
	n.pickEpoch.Add(1)
	down := n.checker.State(key) == health.Down
	var ep *upstream.Endpoint
	if c := n.running(name); c != nil {
		if ep = c.memberByKey(key); ep != nil {
			// Picked around from now on, not only once the rebuild
			// below has run; that one runs now if only it can bring
			// the backups in.
			if c.markDown(ep, down) {
				c.rebuild(n.checker.State)
			}
		} else {
			ep = c.inactiveByKey(key) // checked while it drains: counted too
		}
	}
	if ep != nil {
		ep.HealthChanged()
	}
	if down {
		if ep != nil {
			// Its pooled connections would sit unused while it is down,
			// each a descriptor and a count in CONNS.
			ep.CloseIdle()
		}
		n.closeOnDown(name, key)
	}
	n.markDirty(name)
}

// ejectionsChanged schedules the rebuild of the picker of the cluster
// name, whose ejector just ejected ep (ejected) or returned it, or returned
// several (ep nil); an ejected member is picked around from now on. It
// runs on a request's goroutine or a timer's, and must not take n.mu.
func (n *Node) ejectionsChanged(name string, ep *upstream.Endpoint, ejected bool) {
	n.statusChanges.Add(1)
	n.pickEpoch.Add(1)
	if c := n.running(name); c != nil && ep != nil && c.markEjected(ep, ejected) {
		// Only a rebuild brings the backups in: not on the request,
		// which must not wait for it.
		go c.rebuild(n.checker.State)
	}
	n.markDirty(name)
}

// markDirty schedules the rebuild of the picker of the cluster name: at
// once, or with the other changes of the same rebuildEvery.
func (n *Node) markDirty(name string) {
	n.rebuildMu.Lock()
	defer n.rebuildMu.Unlock()
	n.dirty[name] = true
	if n.rebuilding == nil {
		n.rebuilding = time.AfterFunc(time.Until(n.lastRebuild.Add(rebuildEvery)), n.rebuildDirty)
	}
}

// closeOnDown closes every connection to the endpoint key of cluster
// name, which checks just marked down, once the cluster's drain_timeout
// has passed, if the cluster asks for it (on_down: SHUTDOWN_SESSIONS) and
// the endpoint is still down by then.
func (n *Node) closeOnDown(name, key string) {
	c := n.running(name)
	if c == nil || c.spec.GetOnDown() != sluicev1.OnDown_ON_DOWN_SHUTDOWN_SESSIONS {
		return
	}
	for _, m := range c.members {
		if ep := m.Endpoint; ep.Key() == key {
			time.AfterFunc(c.drainTimeout, func() {
				if n.checker.State(key) == health.Down {
					n.log.Info("endpoint down: closing its connections", "cluster", name, "endpoint", ep.Name)
					ep.CloseConns()
				}
			})
			return
		}
	}
}

// rebuildDirty rebuilds the pickers of the clusters marked by healthChanged.
func (n *Node) rebuildDirty() {
	n.rebuildMu.Lock()
	dirty := n.dirty
	n.dirty = map[string]bool{}
	n.rebuilding = nil
	n.lastRebuild = time.Now()
	n.rebuildMu.Unlock()
	for name := range dirty {
		if c := n.running(name); c != nil {
			c.rebuild(n.checker.State)
		}
	}
}

// sweepEvery is how often expired stick-table entries are removed and
// endpoints' idle pools trimmed.
const sweepEvery = 10 * time.Second

// sweep runs sweepOnce every sweepEvery until the node closes.
func (n *Node) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.sweepOnce()
	}
}

// sweepOnce removes expired stick-table entries, and trims the idle pools
// of the running clusters' endpoints (upstream.Endpoint.TrimIdle): a pool
// that a burst left large, or that holds connections unused for a
// minute, is trimmed even when nothing uses it any more.
func (n *Node) sweepOnce() {
	cur := n.current.Load()
	if cur == nil {
		return
	}
	for _, c := range *cur {
		if c.stick != nil {
			c.stick.Sweep()
		}
		for _, m := range c.members {
			m.Endpoint.TrimIdle()
		}
	}
}

// EndpointStatus is a point-in-time view of one endpoint, for the admin
// endpoint, the stats reported to the control plane, and tests.
type EndpointStatus struct {
	Cluster, Name, Address string
	// Health is UP, DOWN, DRAINING, DISABLED, EJECTED or CHECKING (no check
	// result yet): the names of sluicev1.EndpointHealth without prefix.
	Health string
	Weight uint32 // as configured
	Backup bool
	// Inflight counts the requests and sessions using the endpoint, Conns
	// the sockets open to it.
	Inflight int64
	Conns    int
	Stats    upstream.Stats
	// Since is when Health last changed (zero: not known).
	Since time.Time
	// Detail says why the endpoint is in its state, for operators: the
	// last failed check, or the cause of an ejection; of an endpoint no
	// check watches, why its last connect failed, until one succeeds, and
	// "no health check" otherwise.
	Detail string
	// Ejections counts the endpoint's outlier ejections since the node
	// first had it (Endpoint.Ejections), drained or disabled meanwhile or
	// not.
	Ejections uint64
}

// Endpoints lists every endpoint of the running configuration.
func (n *Node) Endpoints() []EndpointStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []EndpointStatus
	for _, c := range n.clusters {
		for _, m := range c.members {
			ep := m.Endpoint
			h, since, detail := "UP", ep.Created(), ""
			if len(c.checks) > 0 {
				st, _ := n.checker.Status(ep.Key())
				h, detail = "CHECKING", st.Detail
				if st.State != health.Unknown {
					h = st.State.String()
				}
				if !st.Since.IsZero() {
					since = st.Since
				}
			} else if err := ep.LastConnectError(); err != nil {
				// No check says why it fails: its last connect does.
				detail = "last connect failed: " + health.ConnectFailure(err)
			} else {
				// UP only because nothing says otherwise, as HAProxy's
				// "no check".
				detail = "no health check"
			}
			out = append(out, EndpointStatus{Cluster: c.name, Name: ep.Name, Address: ep.Addr, Health: h,
				Weight: m.Weight, Backup: m.Backup, Inflight: ep.Inflight(), Conns: ep.Conns(), Stats: ep.Stats(),
				Since: since, Detail: detail, Ejections: ep.Ejections()})
			c.outlier.status(ep, &out[len(out)-1])
		}
		for _, in := range c.inactive {
			ep := in.ep
			detail := ""
			if in.state == stateDraining && len(c.checks) > 0 {
				st, _ := n.checker.Status(ep.Key())
				detail = drainingDetail(st)
			}
			out = append(out, EndpointStatus{Cluster: c.name, Name: ep.Name, Address: ep.Addr, Health: in.state, Weight: in.weight, Backup: in.backup,
				Inflight: ep.Inflight(), Conns: ep.Conns(), Stats: ep.Stats(), Since: in.since, Detail: detail, Ejections: ep.Ejections()})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cluster != out[j].Cluster {
			return out[i].Cluster < out[j].Cluster
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// drainingDetail is the detail of a draining endpoint, which its checks
// go on testing: what they found ("checks UP", "checks DOWN: connection
// refused"), or "checks CHECKING" until one concluded.
func drainingDetail(st health.Status) string {
	d := "checks " + st.State.String()
	if st.State == health.Unknown {
		d = "checks CHECKING"
	}
	if st.Detail != "" {
		d += ": " + st.Detail
	}
	return d
}

// StatusChanges counts the changes of the node's endpoints that Endpoints
// would show other than counters: applies, health and admin state changes,
// ejections. A reporter that saw one value need not look again until it
// grows.
func (n *Node) StatusChanges() uint64 { return n.statusChanges.Load() + n.checker.Changes() }

// AccessLog is the access log the node was started with, nil without one.
func (n *Node) AccessLog() meter.Log { return n.opts.AccessLog }

// Draining reports whether Drain was called.
func (n *Node) Draining() bool { return n.draining.Load() }

// drainPoll is how often Drain looks whether connections are left.
const drainPoll = 50 * time.Millisecond

// Drain stops the node taking new work and lets the work it has end, as
// HAProxy's soft stop: every listening socket closes, so new connections are
// refused and a load balancer in front moves on; HTTP client connections
// end after their current exchange (idle ones at once); TCP sessions run
// on. Snapshots are no longer applied. Drain returns once no client
// connection is left, or with ctx's error when ctx ends first; Close then
// ends whatever is left.
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	n.draining.Store(true)
	n.drainEnds, _ = ctx.Deadline()
	listeners := make([]*listener, 0, len(n.listeners))
	for _, l := range n.listeners {
		listeners = append(listeners, l)
	}
	gens := make([]*generation, 0, len(listeners)+len(n.removed))
	for g := range n.removed {
		gens = append(gens, g) // draining already, until their grace ends
	}
	n.mu.Unlock()
	for _, l := range listeners {
		l.stopAccepting()
		if g := l.gen.Load(); g.http != nil {
			g.http.Drain()
		}
	}
	for _, l := range listeners {
		gens = append(gens, l.gen.Load()) // no apply replaces one now
	}
	if left := waitConns(ctx, gens, drainPoll); left > 0 {
		n.log.Info("drain grace over", "connections_left", left)
		return ctx.Err()
	}
	return nil
}

// WaitClosed waits, until ctx ends, for the connections Close closed to
// end, each once it left its record (Options.OnConn), and returns how
// many had not. Most end within microseconds; an HTTP request waiting for
// its endpoint's answer, within a second.
func (n *Node) WaitClosed(ctx context.Context) int {
	n.mu.Lock()
	ended := n.ended
	n.mu.Unlock()
	return waitConns(ctx, ended, 10*time.Millisecond)
}

// waitConns looks every interval whether the connections of gens have all
// ended, until they have (0) or ctx ends (how many are left).
func waitConns(ctx context.Context, gens []*generation, every time.Duration) int {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		left := 0
		for _, g := range gens {
			left += g.conns.Len()
		}
		if left == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return left
		case <-tick.C:
		}
	}
}

// Close stops every listener and health check and closes all connections.
// It does not wait for them to end; WaitClosed does.
func (n *Node) Close() {
	n.mu.Lock()
	if !n.closed {
		close(n.stop)
	}
	n.closed = true
	for _, c := range n.clusters {
		c.stop()
		if c.outlier != nil {
			c.outlier.stop("")
		}
	}
	listeners := n.listeners
	n.listeners = map[string]*listener{}
	removed := n.removed
	n.removed = map[*generation]struct{}{}
	clusters := n.clusters
	n.clusters = map[string]*cluster{}
	n.mu.Unlock()
	n.checker.Stop()
	for _, l := range listeners {
		l.close()
	}
	for g := range removed {
		g.retire()
	}
	n.mu.Lock()
	for _, l := range listeners {
		n.ended = append(n.ended, l.gen.Load())
	}
	for g := range removed {
		n.ended = append(n.ended, g)
	}
	n.mu.Unlock()
	for _, c := range clusters {
		for _, m := range c.members {
			m.Endpoint.Shutdown()
		}
	}
	n.up.Close()
}
