package node

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/health"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Defaults applied where a snapshot leaves a setting out.
const (
	defaultConnectTimeout = 5 * time.Second
	defaultCheckInterval  = 2 * time.Second
	maxDefaultTimeout     = 5 * time.Second
	defaultFall           = 3
	defaultRise           = 2
)

// cluster is the compiled, immutable form of one snapshot cluster. Only its
// picker changes after compilation: it is rebuilt when the health of an
// endpoint changes.
type cluster struct {
	name           string
	spec           *sluicev1.Cluster
	members        lb.Set // Down is not set here; see rebuild
	connectTimeout time.Duration
	drainTimeout   time.Duration
	checks         []health.Spec
	key            hashKey // HASH policy only
	newPicker      func(lb.Set) lb.Picker
	picker         atomic.Pointer[pickerBox]
}

type pickerBox struct{ lb.Picker }

// compileCluster builds a cluster, taking endpoints that survive from the
// previous snapshot out of eps and adding new ones to it.
func compileCluster(spec *sluicev1.Cluster, eps map[string]*upstream.Endpoint) *cluster {
	c := &cluster{
		name:           spec.GetName(),
		spec:           spec,
		connectTimeout: durationOr(spec.GetConnectTimeout().AsDuration(), defaultConnectTimeout),
		drainTimeout:   spec.GetDrainTimeout().AsDuration(),
	}
	for _, e := range spec.GetEndpoints() {
		key := upstream.KeyOf(c.name, e.GetName(), e.GetAddress())
		ep, ok := eps[key]
		if !ok {
			ep = upstream.New(c.name, e.GetName(), e.GetAddress())
			eps[key] = ep
		}
		weight := uint32(1)
		if e.Weight != nil {
			weight = e.GetWeight()
		}
		c.members = append(c.members, lb.Member{Endpoint: ep, Weight: weight, Backup: e.GetBackup(), MaxConn: e.GetMaxConn()})
	}
	c.newPicker = pickerFor(spec)
	if spec.GetLbPolicy() == sluicev1.LbPolicy_LB_POLICY_HASH {
		c.key = newHashKey(spec.GetHash())
	}
	if hc := spec.GetHealthCheck(); hc != nil {
		interval := durationOr(hc.GetInterval().AsDuration(), defaultCheckInterval)
		timeout := durationOr(hc.GetTimeout().AsDuration(), min(interval, maxDefaultTimeout))
		fall := int(hc.GetFall())
		if fall == 0 {
			fall = defaultFall
		}
		rise := int(hc.GetRise())
		if rise == 0 {
			rise = defaultRise
		}
		for _, m := range c.members {
			c.checks = append(c.checks, health.Spec{
				Key: m.Endpoint.Key(), Addr: m.Endpoint.Addr,
				Interval: interval, Timeout: timeout, Fall: fall, Rise: rise,
			})
		}
	}
	return c
}

// rebuild makes a new picker from the endpoints' current health.
func (c *cluster) rebuild(state func(key string) health.State) {
	set := make(lb.Set, len(c.members))
	copy(set, c.members)
	if len(c.checks) > 0 {
		for i := range set {
			set[i].Down = state(set[i].Endpoint.Key()) == health.Down
		}
	}
	c.picker.Store(&pickerBox{c.newPicker(set)})
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

// pick chooses an endpoint for r and counts the work in. An endpoint whose
// last free slot another request took since the picker looked is picked
// around, a few times, before the cluster counts as full.
func (c *cluster) pick(r lb.Request) (*upstream.Endpoint, time.Duration, error) {
	p := c.picker.Load()
	for range 3 {
		ep, err := p.Pick(r)
		if err != nil {
			return nil, 0, err
		}
		if ep.TryAcquire() {
			return ep, c.connectTimeout, nil
		}
	}
	return nil, 0, lb.ErrFull
}

// httpDirector sends every request of an HTTP listener to one cluster.
type httpDirector struct{ c *cluster }

func (d httpDirector) Pick(req *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	var r lb.Request
	d.c.key.http(req, &r)
	return d.c.pick(r)
}

// tcpDirector sends every session of a TCP listener to one cluster.
type tcpDirector struct{ c *cluster }

func (d tcpDirector) Pick(client net.Addr) (*upstream.Endpoint, time.Duration, error) {
	var r lb.Request
	d.c.key.tcp(client, &r)
	return d.c.pick(r)
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
