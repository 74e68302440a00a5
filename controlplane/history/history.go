// Package history keeps the fleet's recent traffic at one-second resolution
// for the last hour, in memory, for the dashboard's charts: per cluster and
// per endpoint summed across the fleet, and per node. Each series is a
// fixed ring of Window points (86 KB), and a Recorder holds at most
// MaxSeries of them, so history never takes more than MaxSeries × 86 KB
// (88 MB with DefaultMaxSeries), however large the fleet or long the run.
//
// Nodes report their endpoints' cumulative counters every second (and at
// once when a health changes). The stats server hands each report to
// Observe, which turns the counters into what happened since the node's
// previous report and spreads that evenly over the seconds in between, so
// that a rate does not alternate between 0 and twice its value when
// reports drift across second boundaries. Forget is called when a node's
// stats stream ends: its connections leave the fleet-wide gauges, and its
// next stream starts afresh (a restarted node's counters start from zero).
//
// Observe and Forget run on stats stream goroutines, Series on HTTP
// handlers; all take one short lock.
package history

import (
	"sync"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultMaxSeries is how many series a Recorder keeps when created with 0:
// at most 88 MB of history. A fleet of 5 nodes with 40 clusters of 10
// endpoints needs 445 series.
const DefaultMaxSeries = 1024

// MaxBytes returns the most memory the history of maxSeries series takes.
func MaxBytes(maxSeries int) int { return maxSeries * ringBytes }

// Kind says what a series sums.
type Kind uint8

// Kinds of series.
const (
	// Cluster sums every endpoint of a cluster on every node of a group.
	Cluster Kind = iota + 1
	// Endpoint sums one endpoint on every node of a group.
	Endpoint
	// Node sums every endpoint of one node.
	Node
)

// Key names a series: Cluster uses Group and Cluster, Endpoint Group,
// Cluster and Endpoint, Node uses Node. Groups keep theirs apart: two node
// groups may each have a cluster of one name, with other endpoints.
type Key struct {
	Kind                     Kind
	Group, Cluster, Endpoint string
	Node                     string
}

// ClusterKey, EndpointKey and NodeKey name the series of a group's
// cluster, of one of its endpoints, and of a node.
func ClusterKey(group, cluster string) Key { return Key{Kind: Cluster, Group: group, Cluster: cluster} }
func EndpointKey(group, cluster, endpoint string) Key {
	return Key{Kind: Endpoint, Group: group, Cluster: cluster, Endpoint: endpoint}
}
func NodeKey(node string) Key { return Key{Kind: Node, Node: node} }

// Recorder keeps the series. The zero value is not usable; call New.
type Recorder struct {
	max int

	mu     sync.Mutex
	series map[Key]*ring
	nodes  map[string]*report // each node's previous report
	// gauges sums the latest Active and Conns of every node, by Cluster
	// and Endpoint key (a Node key's gauges are its own report's).
	gauges map[Key]gauge
	// refused counts series not kept because MaxSeries were in use.
	refused uint64
}

// New returns a recorder of at most maxSeries series (0: DefaultMaxSeries).
func New(maxSeries int) *Recorder {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	return &Recorder{
		max:    maxSeries,
		series: map[Key]*ring{},
		nodes:  map[string]*report{},
		gauges: map[Key]gauge{},
	}
}

// report is what a node said last: when, in which group, and each
// endpoint's counters.
type report struct {
	at    time.Time
	group string
	eps   map[endpoint]counters
}

// endpoint is one endpoint of a node's report, in the node's group then.
type endpoint struct{ group, cluster, name string }

// counters are one endpoint's cumulative counters and gauges on one node.
type counters struct {
	requests, errors, bytesIn, bytesOut uint64
	gauge
}

type gauge struct{ active, conns int64 }

func (g gauge) plus(o gauge) gauge  { return gauge{g.active + o.active, g.conns + o.conns} }
func (g gauge) minus(o gauge) gauge { return gauge{g.active - o.active, g.conns - o.conns} }

// delta is what happened between two reports.
type delta struct{ requests, errors, bytesIn, bytesOut float64 }

func (d *delta) add(o delta) {
	d.requests += o.requests
	d.errors += o.errors
	d.bytesIn += o.bytesIn
	d.bytesOut += o.bytesOut
}

// since returns what c counted since prev. A counter that went down was
// reset (the node restarted, or the endpoint was removed and added back),
// so all of it is new.
func (c counters) since(prev counters) delta {
	sub := func(now, before uint64) float64 {
		if now < before {
			return float64(now)
		}
		return float64(now - before)
	}
	return delta{
		requests: sub(c.requests, prev.requests),
		errors:   sub(c.errors, prev.errors),
		bytesIn:  sub(c.bytesIn, prev.bytesIn),
		bytesOut: sub(c.bytesOut, prev.bytesOut),
	}
}

func countersOf(ep *sluicev1.EndpointStats) counters {
	return counters{
		requests: ep.GetRequests(),
		errors:   ep.GetResponses_5Xx() + ep.GetConnectErrors(),
		bytesIn:  ep.GetBytesIn(),
		bytesOut: ep.GetBytesOut(),
		gauge:    gauge{active: ep.GetActive(), conns: ep.GetConns()},
	}
}

// Observe records node's report of its endpoints, received at, while the
// node is in group. The first report of a node only sets the baseline its
// next one is counted from (its counters run from the node's start, not
// from the previous second); its gauges count at once. A node that moved
// to another group starts its endpoints there afresh, as a first report.
func (r *Recorder) Observe(node, group string, at time.Time, eps []*sluicev1.EndpointStats) {
	cur := &report{at: at, group: group, eps: make(map[endpoint]counters, len(eps))}
	for _, ep := range eps {
		cur.eps[endpoint{group, ep.GetCluster(), ep.GetEndpoint()}] = countersOf(ep)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.nodes[node]
	r.nodes[node] = cur
	deltas := map[Key]*delta{}
	addDelta := func(k Key, d delta) {
		if deltas[k] == nil {
			deltas[k] = &delta{}
		}
		deltas[k].add(d)
	}
	var nodeGauge gauge
	touched := map[Key]bool{}
	for ep, c := range cur.eps {
		var before counters
		if prev != nil {
			// Of a node that moved, the same endpoint under its old
			// group: its counters run on.
			before = prev.eps[endpoint{prev.group, ep.cluster, ep.name}]
		}
		var gaugeBefore gauge // in this group's series
		if prev != nil && prev.group == group {
			gaugeBefore = before.gauge
		}
		r.moveGauges(ep, c.gauge.minus(gaugeBefore), touched)
		nodeGauge = nodeGauge.plus(c.gauge)
		if prev == nil {
			continue
		}
		d := c.since(before)
		if prev.group == group {
			// (A node that moved counts in its new group's series from
			// its next report: all its counters would come at once.)
			addDelta(EndpointKey(ep.group, ep.cluster, ep.name), d)
			addDelta(ClusterKey(ep.group, ep.cluster), d)
		}
		addDelta(NodeKey(node), d)
	}
	if prev != nil {
		for ep, c := range prev.eps {
			if _, ok := cur.eps[ep]; !ok { // removed from the node
				r.moveGauges(ep, gauge{}.minus(c.gauge), touched)
			}
		}
	}

	for k, d := range deltas {
		if s := r.ring(k, at.Unix()); s != nil {
			spread(s, prev.at, at, *d)
		}
	}
	sec := gaugeSecond(at)
	r.storeGauges(touched, sec)
	if s := r.ring(NodeKey(node), sec); s != nil {
		s.setGauges(sec, nodeGauge.active, nodeGauge.conns)
	}
}

// moveGauges adds d to the fleet-wide gauges of ep and of its cluster,
// and marks both touched.
func (r *Recorder) moveGauges(ep endpoint, d gauge, touched map[Key]bool) {
	for _, k := range [2]Key{EndpointKey(ep.group, ep.cluster, ep.name), ClusterKey(ep.group, ep.cluster)} {
		r.gauges[k] = r.gauges[k].plus(d)
		touched[k] = true
	}
}

// storeGauges writes the fleet-wide gauges of the touched keys into their
// series at second sec.
func (r *Recorder) storeGauges(touched map[Key]bool, sec int64) {
	for k := range touched {
		if s := r.ring(k, sec); s != nil {
			g := r.gauges[k]
			s.setGauges(sec, g.active, g.conns)
		}
	}
}

// Forget removes node from the fleet-wide gauges at time at; its next
// report is a first one again.
func (r *Recorder) Forget(node string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.nodes[node]
	if prev == nil {
		return
	}
	delete(r.nodes, node)
	touched := map[Key]bool{}
	for ep, c := range prev.eps {
		r.moveGauges(ep, gauge{}.minus(c.gauge), touched)
	}
	sec := gaugeSecond(at)
	r.storeGauges(touched, sec)
	if s := r.ring(NodeKey(node), sec); s != nil {
		s.setGauges(sec, 0, 0)
	}
}

// gaugeSecond is the second a gauge read at t shows: the one that ends at
// t, or contains it. A report at 11.000 tells how second 10 ended, and its
// counts since a report at 10.000 land in second 10 too.
func gaugeSecond(t time.Time) int64 {
	ns := t.UnixNano() - 1
	return ns / int64(time.Second)
}

// spread adds d to the seconds from t0 to t1, each in proportion to how
// much of the interval falls in it. An interval longer than the window
// (a node silent for an hour) puts what fits into its last Window seconds.
func spread(s *ring, t0, t1 time.Time, d delta) {
	if !t1.After(t0) {
		add(s.slot(t1.Unix()), d, 1)
		return
	}
	if t1.Sub(t0) > Window*time.Second {
		t0 = t1.Add(-Window * time.Second)
	}
	a, b := t0.UnixNano(), t1.UnixNano()
	total := float64(b - a)
	for sec := t0.Unix(); sec <= t1.Unix(); sec++ {
		start := max(a, sec*int64(time.Second))
		end := min(b, (sec+1)*int64(time.Second))
		if end > start {
			add(s.slot(sec), d, float64(end-start)/total)
		}
	}
}

func add(p *Point, d delta, share float64) {
	if p == nil {
		return
	}
	p.Requests += float32(d.requests * share)
	p.Errors += float32(d.errors * share)
	p.BytesIn += float32(d.bytesIn * share)
	p.BytesOut += float32(d.bytesOut * share)
}

// ring returns k's ring, making it if there is room: below MaxSeries, or
// in place of a series nothing was written to for a Window. Callers hold
// mu.
func (r *Recorder) ring(k Key, now int64) *ring {
	if s := r.series[k]; s != nil {
		return s
	}
	if len(r.series) >= r.max {
		for old, s := range r.series {
			if now-s.last >= Window {
				delete(r.series, old)
				break
			}
		}
	}
	if len(r.series) >= r.max {
		r.refused++
		return nil
	}
	s := &ring{}
	r.series[k] = s
	return s
}

// Series is a run of points, one per second from Start.
type Series struct {
	Start  time.Time
	Points []Point
}

// Series returns the points of k for the n seconds that end at the one
// before now: the current second is left out, as reports still add to it.
// n is clamped to 1..Window. A series the recorder does not hold reads as
// zeros; ok says whether it holds it.
func (r *Recorder) Series(k Key, n int, now time.Time) (_ Series, ok bool) {
	n = min(max(n, 1), Window)
	to := now.Unix() - 1
	from := to - int64(n) + 1
	out := Series{Start: time.Unix(from, 0), Points: make([]Point, n)}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[k]
	if s == nil {
		return out, false
	}
	s.read(from, to, out.Points)
	return out, true
}

// Stats says how much the recorder holds.
type Stats struct {
	// Series is how many series are kept, Bytes the memory their rings
	// take.
	Series, Bytes int
	// Refused counts series not kept because MaxSeries were in use.
	Refused uint64
}

// Stats returns how much the recorder holds.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Series: len(r.series), Bytes: len(r.series) * ringBytes, Refused: r.refused}
}
