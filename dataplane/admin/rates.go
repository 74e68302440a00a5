package admin

import (
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/ratemeter"
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

	mu    sync.Mutex
	meter ratemeter.Meter
}

func newRates() *rates { return &rates{now: time.Now} }

func endpointKey(s *node.EndpointStatus) string { return s.Cluster + "/" + s.Name }

// observe reads the endpoints' counters now and returns each endpoint's
// rate over the window that ends now (or the last window, if the previous
// view is less than minRateWindow old) by endpointKey, and the window's
// length: 0 at the first view.
func (r *rates) observe(eps []node.EndpointStatus) (map[string]ratemeter.Rate, time.Duration) {
	cur := make(map[string]ratemeter.Counters, len(eps))
	for i := range eps {
		s := &eps[i].Stats
		cur[endpointKey(&eps[i])] = ratemeter.Counters{Requests: s.Requests, BytesIn: s.BytesIn, BytesOut: s.BytesOut, Errors: s.Responses5xx + s.ConnectErrors}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.meter.Read(r.now(), cur, minRateWindow)
	return r.meter.Rates()
}
