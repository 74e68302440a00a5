package upstream

import "sync/atomic"

// Cause is what made an endpoint an outlier.
type Cause uint8

// The causes an OutlierPolicy reports.
const (
	// ConnectFailures: connects to the endpoint failed so many times in a
	// row (refused, timed out, unreachable, or its name did not resolve).
	ConnectFailures Cause = iota + 1
	// Responses5xx: the endpoint answered so many HTTP responses in a row
	// with a 5xx status.
	Responses5xx
)

// String names the cause as a log or status reads it.
func (c Cause) String() string {
	switch c {
	case ConnectFailures:
		return "consecutive connect failures"
	case Responses5xx:
		return "consecutive 5xx responses"
	}
	return "unknown cause"
}

// OutlierPolicy is the passive check of an endpoint: how many failures in a
// row make it an outlier, and whom to tell. A cluster shares one policy
// among its members and replaces it, never mutates it, when a snapshot
// changes it.
type OutlierPolicy struct {
	// ConnectFailures and Responses5xx are the thresholds of the two
	// streaks; 0 turns one off.
	ConnectFailures uint32
	Responses5xx    uint32
	// Outlier is called when a streak reaches its threshold, on the
	// goroutine of the request or session that failed last, before the
	// failure is answered to its client. It must not block. The streak
	// starts again from 0, so another call takes as many failures again:
	// whatever Outlier decides (eject, or not because too many are out
	// already), it is not asked again on every failure that follows.
	Outlier func(ep *Endpoint, cause Cause)
}

// streaks are an endpoint's failures in a row, counted while it has an
// OutlierPolicy.
type streaks struct {
	connectFailures, responses5xx atomic.Uint32
}

// SetOutlierPolicy makes p the endpoint's passive check; nil turns passive
// checks off and forgets the streaks under way. The streaks survive a
// change of policy, as the endpoint survives an apply.
func (e *Endpoint) SetOutlierPolicy(p *OutlierPolicy) {
	e.outlier.Store(p)
	if p == nil {
		e.streaks.connectFailures.Store(0)
		e.streaks.responses5xx.Store(0)
	}
}

// connected counts a connect to the endpoint that succeeded or failed
// towards the connect-failure streak. A connect the caller gave up on (its
// context ended) says nothing of the endpoint and is not counted.
func (e *Endpoint) connected(ok bool) {
	p := e.outlier.Load()
	if p == nil || p.ConnectFailures == 0 {
		return
	}
	e.streak(&e.streaks.connectFailures, !ok, p.ConnectFailures, p, ConnectFailures)
}

// streak counts one result: a success ends the streak s, a failure extends
// it, and the failure that makes it limit long calls p.Outlier.
func (e *Endpoint) streak(s *atomic.Uint32, failed bool, limit uint32, p *OutlierPolicy, cause Cause) {
	if !failed {
		// Read first: the common case (no streak) then writes nothing
		// to a cache line every request to the endpoint shares.
		if s.Load() != 0 {
			s.Store(0)
		}
		return
	}
	// >= rather than ==: a snapshot may lower the threshold below a
	// streak under way.
	if s.Add(1) >= limit {
		s.Store(0)
		if p.Outlier != nil {
			p.Outlier(e, cause)
		}
	}
}
