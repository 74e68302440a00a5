package meter

import (
	"sync/atomic"
	"time"
)

// Buckets are the upper bounds of every Histogram's buckets: from half a
// millisecond (a request to a backend on the same host) to a minute (a
// slow upload, a long TCP session ends in the +Inf bucket).
var Buckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// Histogram counts durations in the fixed Buckets, one atomic per bucket,
// so that observing costs one add and one compare per bucket passed.
type Histogram struct {
	counts [len(Buckets) + 1]atomic.Uint64 // the last one is +Inf
	sum    atomic.Int64                    // nanoseconds
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(Buckets) && d > Buckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Read returns the histogram as Prometheus wants it: the cumulative count
// of each of Buckets (le), the total count and the sum in seconds.
func (h *Histogram) Read() (cumulative [len(Buckets)]uint64, count uint64, sum float64) {
	for i := range Buckets {
		count += h.counts[i].Load()
		cumulative[i] = count
	}
	count += h.counts[len(Buckets)].Load()
	return cumulative, count, time.Duration(h.sum.Load()).Seconds()
}
