// Package ratemeter turns successive readings of an endpoint's counters
// into per-second rates: the node's status page reads them at each page
// view, sluicectl top at each node report.
package ratemeter

import "time"

// Counters are the ever-growing counters of one endpoint that rates are
// taken of. Errors are 5xx answers plus failed connects.
type Counters struct {
	Requests, BytesIn, BytesOut, Errors uint64
}

// Rate is Counters per second over a window.
type Rate struct {
	Requests, BytesIn, BytesOut, Errors float64
}

// Meter keeps the last reading and the rates of the last window. The zero
// Meter is ready; it is not safe for concurrent use.
type Meter struct {
	at     time.Time
	last   map[string]Counters
	rates  map[string]Rate
	window time.Duration
}

// Read records the counters by key read at time at. If at is at least
// minWindow after the previous reading, a new window ends at at and its
// rates replace the last ones; else the reading is ignored, so that two
// readings a few milliseconds apart do not give rates made of noise. A key
// that was not in the previous reading, or whose counters went back (its
// endpoint was recreated), has no rate for the window.
func (m *Meter) Read(at time.Time, cur map[string]Counters, minWindow time.Duration) {
	if m.last != nil && at.Sub(m.at) < max(minWindow, 1) {
		return
	}
	if m.last != nil {
		m.window = at.Sub(m.at)
		secs := m.window.Seconds()
		m.rates = make(map[string]Rate, len(cur))
		for k, c := range cur {
			p, ok := m.last[k]
			if !ok || c.Requests < p.Requests || c.BytesIn < p.BytesIn || c.BytesOut < p.BytesOut || c.Errors < p.Errors {
				continue
			}
			m.rates[k] = Rate{
				Requests: float64(c.Requests-p.Requests) / secs,
				BytesIn:  float64(c.BytesIn-p.BytesIn) / secs,
				BytesOut: float64(c.BytesOut-p.BytesOut) / secs,
				Errors:   float64(c.Errors-p.Errors) / secs,
			}
		}
	}
	m.at, m.last = at, cur
}

// Rates returns the rates of the last window by key, and its length: 0,
// with no rates, until two readings were far enough apart.
func (m *Meter) Rates() (map[string]Rate, time.Duration) { return m.rates, m.window }
