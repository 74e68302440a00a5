package admin

import (
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/node"
)

// minRateWindow is the shortest time a rate is measured over: two page
// views closer than that (two people watching, a quick reload) see the
// rates of the last window instead of noise from a few milliseconds.
const minRateWindow = time.Second

// rates turns the endpoints' counters into per-second rates on the admin
// side, from the counters seen at the previous page view: nothing is
// sampled in the background, and the traffic pays nothing for it.
type rates struct {
	now func() time.Time // time.Now but in tests

	mu     sync.Mutex
	at     time.Time           // when last was read
	last   map[string]counters // by endpointKey
	shown  map[string]rate     // the rates of the last window
	window time.Duration       // its length; 0 before there is one
}

// counters are what rates follows of one endpoint.
type counters struct {
	requests, bytesIn, bytesOut, errors uint64
}

// rate is per second over a window. Errors are 5xx answers and failed
// connects.
type rate struct {
	Requests, BytesIn, BytesOut, Errors float64
}

func newRates() *rates { return &rates{now: time.Now} }

func endpointKey(s *node.EndpointStatus) string { return s.Cluster + "/" + s.Name }

func countersOf(s *node.EndpointStatus) counters {
	return counters{s.Stats.Requests, s.Stats.BytesIn, s.Stats.BytesOut, s.Stats.Responses5xx + s.Stats.ConnectErrors}
}

// observe takes the endpoints' counters now and returns each endpoint's
// rate over the window that ends now (or, if the previous view is less
// than minRateWindow old, the last window), and the window's length, 0
// at the first view. An endpoint that did not exist at the window's start,
// or whose counters went back (it was recreated), has no rate.
func (r *rates) observe(eps []node.EndpointStatus) (map[string]rate, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.last != nil && now.Sub(r.at) < minRateWindow {
		return r.shown, r.window
	}
	cur := make(map[string]counters, len(eps))
	for i := range eps {
		cur[endpointKey(&eps[i])] = countersOf(&eps[i])
	}
	if r.last != nil {
		r.window = now.Sub(r.at)
		secs := r.window.Seconds()
		r.shown = make(map[string]rate, len(cur))
		for k, c := range cur {
			p, ok := r.last[k]
			if !ok || c.requests < p.requests || c.bytesIn < p.bytesIn || c.bytesOut < p.bytesOut || c.errors < p.errors {
				continue
			}
			r.shown[k] = rate{
				Requests: float64(c.requests-p.requests) / secs,
				BytesIn:  float64(c.bytesIn-p.bytesIn) / secs,
				BytesOut: float64(c.bytesOut-p.bytesOut) / secs,
				Errors:   float64(c.errors-p.errors) / secs,
			}
		}
	}
	r.at, r.last = now, cur
	return r.shown, r.window
}
