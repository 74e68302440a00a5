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
		ep := upstream.New(c.name, e.GetName(), e.GetAddress())
		if old, ok := eps[ep.Key()]; ok {
			ep = old
		} else {
			eps[ep.Key()] = ep
		}
		weight := uint32(1)
		if e.Weight != nil {
			weight = e.GetWeight()
		}
		c.members = append(c.members, lb.Member{Endpoint: ep, Weight: weight, Backup: e.GetBackup()})
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
	c.picker.Store(&pickerBox{lb.NewRoundRobin(set)})
}

// pick chooses an endpoint and counts the work in.
func (c *cluster) pick() (*upstream.Endpoint, time.Duration, error) {
	ep, err := c.picker.Load().Pick()
	if err != nil {
		return nil, 0, err
	}
	ep.Acquire()
	return ep, c.connectTimeout, nil
}

// httpDirector sends every request of an HTTP listener to one cluster.
type httpDirector struct{ c *cluster }

func (d httpDirector) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	return d.c.pick()
}

// tcpDirector sends every session of a TCP listener to one cluster.
type tcpDirector struct{ c *cluster }

func (d tcpDirector) Pick(net.Addr) (*upstream.Endpoint, time.Duration, error) {
	return d.c.pick()
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
