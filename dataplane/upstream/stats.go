package upstream

import (
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/meter"
)

// Stats are an endpoint's counters since the node first had it. They
// survive applies with the *Endpoint.
type Stats struct {
	// Requests counts HTTP requests and TCP sessions given to the endpoint
	// (each Acquire or successful TryAcquire).
	Requests uint64
	// BytesIn counts bytes received from the endpoint, BytesOut bytes sent
	// to it.
	BytesIn, BytesOut uint64
	// ConnectErrors counts connects that failed, not those given up because
	// their listener closed (ErrListenerClosed); Responses5xx HTTP requests
	// answered with a 5xx status: by the endpoint, or by the proxy in its
	// place when the endpoint failed them (Failed).
	ConnectErrors, Responses5xx uint64
	// HealthTransitions counts the times health checks marked the
	// endpoint down or back up.
	HealthTransitions uint64
}

// HealthChanged counts a change of the endpoint's health-check state,
// down or back up, in its counters and its cluster's meter.
func (e *Endpoint) HealthChanged() {
	e.counters.healthTransitions.Add(1)
	if m := e.counters.cluster.Load(); m != nil {
		m.HealthChanged()
	}
}

// counters are the atomics behind Stats and Ejections.
type counters struct {
	requests, bytesIn, bytesOut, connectErrors, responses5xx atomic.Uint64
	healthTransitions, ejections                             atomic.Uint64
	// cluster is the meter of the endpoint's cluster, which bytes and
	// failed connects are counted in too; nil: none.
	cluster atomic.Pointer[meter.Cluster]
}

// SetMeter makes the endpoint count its bytes and failed connects in m,
// its cluster's meter, as well (nil: not). The node sets it on every apply.
func (e *Endpoint) SetMeter(m *meter.Cluster) { e.counters.cluster.Store(m) }

// Meter is the meter of the endpoint's cluster, nil when none was set.
func (e *Endpoint) Meter() *meter.Cluster { return e.counters.cluster.Load() }

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	c := &e.counters
	return Stats{
		Requests:      c.requests.Load(),
		BytesIn:       c.bytesIn.Load(),
		BytesOut:      c.bytesOut.Load(),
		ConnectErrors: c.connectErrors.Load(),
		Responses5xx:  c.responses5xx.Load(),

		HealthTransitions: c.healthTransitions.Load(),
	}
}

// Ejected counts an outlier ejection of the endpoint. The count is the
// endpoint's, not its cluster's outlier detection's: a drain, a disable
// or an apply that turns outlier detection off and on again does not
// reset it.
func (e *Endpoint) Ejected() { e.counters.ejections.Add(1) }

// Ejections is how many times the endpoint was ejected (Ejected).
func (e *Endpoint) Ejections() uint64 { return e.counters.ejections.Load() }

// Transferred counts bytes exchanged with the endpoint: in from it, out to
// it. The HTTP proxies call it when an exchange ends; a TCP session and an
// Upgrade tunnel call it while their bytes move (meter.SettleEvery) and
// when they end.
func (e *Endpoint) Transferred(in, out uint64) {
	if in > 0 {
		e.counters.bytesIn.Add(in)
	}
	if out > 0 {
		e.counters.bytesOut.Add(out)
	}
	if m := e.counters.cluster.Load(); m != nil && in+out > 0 {
		m.Transferred(in, out)
	}
}

// Failed counts a request the endpoint failed after it was sent (a reset
// or a close before the response, an invalid response, no response within
// the response timeout), which the proxy answered with a 5xx of its own,
// among the endpoint's 5xx responses: what its clients got. Its 5xx
// streak is left as it was: outlier detection's consecutive_5xx counts the
// endpoint's own answers only.
func (e *Endpoint) Failed() { e.counters.responses5xx.Add(1) }

// Responded records the status of a response head read from the endpoint,
// in its counters and its 5xx streak.
func (e *Endpoint) Responded(status int) {
	failed := status >= 500 && status <= 599
	if failed {
		e.counters.responses5xx.Add(1)
	}
	if p := e.outlier.Load(); p != nil && p.Responses5xx > 0 {
		e.streak(&e.streaks.responses5xx, failed, p.Responses5xx, p, Responses5xx)
	}
}
