package history

import (
	"fmt"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// t0 is a whole second, so tests say where each report falls.
var t0 = time.Unix(1_700_000_000, 0)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// ep is an endpoint's cumulative view as a node reports it.
func ep(cluster, name string, requests, errs5xx, connErrs, in, out uint64, active, conns int64) *sluicev1.EndpointStats {
	return &sluicev1.EndpointStats{
		Cluster: cluster, Endpoint: name,
		Requests: requests, Responses_5Xx: errs5xx, ConnectErrors: connErrs,
		BytesIn: in, BytesOut: out, Active: active, Conns: conns,
	}
}

// points reads the n seconds of k that start at t0+from.
func points(t *testing.T, r *Recorder, k Key, from, n int) []Point {
	t.Helper()
	s, ok := r.Series(k, n, at(float64(from+n)))
	if !ok {
		t.Fatalf("no series %+v", k)
	}
	if !s.Start.Equal(at(float64(from))) {
		t.Fatalf("series starts at %v, want %v", s.Start, at(float64(from)))
	}
	return s.Points
}

func requests(ps []Point) []float32 {
	out := make([]float32, len(ps))
	for i, p := range ps {
		out[i] = p.Requests
	}
	return out
}

func TestObserveCountsWhatHappenedBetweenReports(t *testing.T) {
	r := New(0)
	// The first report only sets the baseline: 1000 requests since the
	// node started are not a burst in this second.
	r.Observe("n1", "default", at(10), []*sluicev1.EndpointStats{ep("web", "a", 1000, 5, 1, 9000, 900, 2, 4)})
	r.Observe("n1", "default", at(11), []*sluicev1.EndpointStats{ep("web", "a", 1030, 7, 2, 9300, 930, 3, 4)})

	got := points(t, r, EndpointKey("default", "web", "a"), 10, 2)
	want := []Point{
		{Requests: 30, Errors: 3, BytesIn: 300, BytesOut: 30, Active: 3, Conns: 4},
		{Active: 3, Conns: 4}, // nothing reported yet; gauges carried
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("web/a seconds 10-11:\n got %v\nwant %v", got, want)
	}
	for _, k := range []Key{ClusterKey("default", "web"), NodeKey("n1")} {
		if got := points(t, r, k, 10, 1); fmt.Sprint(got) != fmt.Sprint(want[:1]) {
			t.Errorf("%+v second 10: got %v, want %v", k, got, want[:1])
		}
	}
}

// TestObserveKeepsGroupsApart: two node groups may each have a cluster of
// one name; each group's series count its own nodes. A node that moves to
// another group counts there from its next report, not with everything it
// counted since it started.
func TestObserveKeepsGroupsApart(t *testing.T) {
	r := New(0)
	r.Observe("n1", "edge", at(10), []*sluicev1.EndpointStats{ep("web", "a", 100, 0, 0, 0, 0, 0, 0)})
	r.Observe("n2", "core", at(10), []*sluicev1.EndpointStats{ep("web", "a", 500, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "edge", at(11), []*sluicev1.EndpointStats{ep("web", "a", 130, 0, 0, 0, 0, 0, 0)})
	r.Observe("n2", "core", at(11), []*sluicev1.EndpointStats{ep("web", "a", 507, 0, 0, 0, 0, 0, 0)})
	// n1 moves to core.
	r.Observe("n1", "core", at(12), []*sluicev1.EndpointStats{ep("web", "a", 190, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "core", at(13), []*sluicev1.EndpointStats{ep("web", "a", 200, 0, 0, 0, 0, 0, 0)})
	for _, tt := range []struct {
		k    Key
		want []float32 // seconds 10 to 12
	}{
		{ClusterKey("edge", "web"), []float32{30, 0, 0}},
		{EndpointKey("core", "web", "a"), []float32{7, 0, 10}},
		{NodeKey("n1"), []float32{30, 60, 10}},
	} {
		if got := requests(points(t, r, tt.k, 10, 3)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%+v seconds 10-12: %v requests, want %v", tt.k, got, tt.want)
		}
	}
}

// TestObserveSpreadsOverTheSecondsCovered: a report 2 s after the
// previous, across three second boundaries, shares its counts among them
// by time, so a steady 10 req/s reads 10 in each whole second.
func TestObserveSpreadsOverTheSecondsCovered(t *testing.T) {
	r := New(0)
	r.Observe("n1", "default", at(20.5), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "default", at(22.5), []*sluicev1.EndpointStats{ep("web", "a", 20, 0, 0, 0, 0, 0, 0)})
	if got, want := fmt.Sprint(requests(points(t, r, EndpointKey("default", "web", "a"), 19, 5))), "[0 5 10 5 0]"; got != want {
		t.Fatalf("requests of seconds 19-23: got %v, want %v", got, want)
	}
}

func TestObserveSumsTheFleet(t *testing.T) {
	r := New(0)
	for _, n := range []string{"n1", "n2"} {
		r.Observe(n, "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 0, 0), ep("web", "b", 0, 0, 0, 0, 0, 0, 0)})
	}
	r.Observe("n1", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 4, 0, 0, 0, 0, 1, 2), ep("web", "b", 6, 0, 0, 0, 0, 3, 3)})
	r.Observe("n2", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 10, 1, 0, 0, 0, 5, 5), ep("web", "b", 0, 0, 0, 0, 0, 0, 1)})

	for _, tt := range []struct {
		k                      Key
		requests, errs, active float32
		conns                  float32
	}{
		{ClusterKey("default", "web"), 20, 1, 9, 11},
		{EndpointKey("default", "web", "a"), 14, 1, 6, 7},
		{EndpointKey("default", "web", "b"), 6, 0, 3, 4},
		{NodeKey("n1"), 10, 0, 4, 5},
		{NodeKey("n2"), 10, 1, 5, 6},
	} {
		p := points(t, r, tt.k, 0, 1)[0]
		if p.Requests != tt.requests || p.Errors != tt.errs || p.Active != tt.active || p.Conns != tt.conns {
			t.Errorf("%+v second 0: got %+v, want requests %v errors %v active %v conns %v", tt.k, p, tt.requests, tt.errs, tt.active, tt.conns)
		}
	}
}

// TestObserveCounterReset: a node that restarted reports counters lower
// than before; what it reports is all new, never a negative rate.
func TestObserveCounterReset(t *testing.T) {
	r := New(0)
	r.Observe("n1", "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 500, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 7, 0, 0, 0, 0, 0, 0)})
	if got := points(t, r, EndpointKey("default", "web", "a"), 0, 1)[0].Requests; got != 7 {
		t.Fatalf("requests after a reset: got %v, want 7", got)
	}
}

// TestGaugesLeaveWithTheirNode: when a node's stream ends, or an endpoint
// leaves its view, their connections leave the fleet's gauges; a gauge
// nobody reports is carried for staleAfter seconds, then reads zero.
func TestGaugesLeaveWithTheirNode(t *testing.T) {
	r := New(0)
	r.Observe("n1", "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 3, 3), ep("web", "b", 0, 0, 0, 0, 0, 1, 1)})
	r.Observe("n2", "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 4, 4)})
	r.Observe("n1", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 3, 3)}) // b removed
	r.Forget("n2", at(2))

	active := func(k Key, from, n int) string {
		var out []float32
		for _, p := range points(t, r, k, from, n) {
			out = append(out, p.Active)
		}
		return fmt.Sprint(out)
	}
	// A report at second s shows the gauges of second s-1 (see gaugeSecond).
	if got, want := active(ClusterKey("default", "web"), -1, 3), "[8 7 3]"; got != want {
		t.Errorf("web active, seconds 0-2: got %s, want %s", got, want)
	}
	if got, want := active(EndpointKey("default", "web", "b"), -1, 2), "[1 0]"; got != want {
		t.Errorf("web/b active, seconds 0-1: got %s, want %s", got, want)
	}
	if got, want := active(NodeKey("n2"), -1, 3), "[4 4 0]"; got != want {
		t.Errorf("n2 active, seconds 0-2: got %s, want %s", got, want)
	}
	// n1 last reported at 1, for second 0: its gauge holds until staleAfter.
	if got, want := active(NodeKey("n1"), staleAfter, 2), "[3 0]"; got != want {
		t.Errorf("n1 active after it went quiet: got %s, want %s", got, want)
	}
}

func TestSeriesKeepsAnHour(t *testing.T) {
	r := New(0)
	k := EndpointKey("default", "web", "a")
	r.Observe("n1", "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 1, 0, 0, 0, 0, 0, 0)})
	r.Observe("n1", "default", at(Window), []*sluicev1.EndpointStats{ep("web", "a", 1, 0, 0, 0, 0, 0, 0)})
	if got := points(t, r, k, 0, 1)[0].Requests; got != 1 {
		t.Fatalf("second 0, an hour later: got %v requests, want 1", got)
	}
	r.Observe("n1", "default", at(Window+1), []*sluicev1.EndpointStats{ep("web", "a", 1, 0, 0, 0, 0, 0, 0)})
	if got := points(t, r, k, 0, 1)[0].Requests; got != 0 {
		t.Fatalf("second 0, more than an hour later: got %v requests, want 0", got)
	}
	if s, _ := r.Series(k, 10*Window, at(Window+3)); len(s.Points) != Window {
		t.Fatalf("a series of 10 hours has %d points, want %d", len(s.Points), Window)
	}
	if _, ok := r.Series(EndpointKey("default", "web", "zz"), 5, at(5)); ok {
		t.Fatal("a series nothing was reported for is held")
	}
}

// TestMaxSeriesBoundsMemory: the recorder keeps at most MaxSeries series,
// counts the ones it refuses, and reuses the ring of a series silent for
// an hour.
func TestMaxSeriesBoundsMemory(t *testing.T) {
	r := New(3) // web, web/a, n1: a fourth series does not fit
	r.Observe("n1", "default", at(0), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 1, 1)})
	r.Observe("n1", "default", at(1), []*sluicev1.EndpointStats{ep("web", "a", 0, 0, 0, 0, 0, 1, 1), ep("web", "b", 0, 0, 0, 0, 0, 1, 1)})
	st := r.Stats()
	if st.Series != 3 || st.Refused == 0 || st.Bytes != 3*ringBytes {
		t.Fatalf("stats %+v, want 3 series of %d bytes and some refused", st, ringBytes)
	}
	if _, ok := r.Series(EndpointKey("default", "web", "b"), 1, at(2)); ok {
		t.Fatal("web/b is kept beyond MaxSeries")
	}
	r.Forget("n1", at(2))
	r.Observe("n2", "default", at(Window+10), []*sluicev1.EndpointStats{ep("api", "x", 0, 0, 0, 0, 0, 2, 2)})
	if _, ok := r.Series(ClusterKey("default", "api"), 1, at(Window+11)); !ok {
		t.Fatal("a new series did not take the place of one silent for an hour")
	}
	if got := MaxBytes(DefaultMaxSeries); got != 88_489_984 {
		t.Fatalf("MaxBytes(DefaultMaxSeries) = %d; the package doc and README say 88 MB", got)
	}
}

// BenchmarkObserve: one report of a node with 10 clusters of 10 endpoints,
// what the control plane handles once a second per node.
func BenchmarkObserve(b *testing.B) {
	r := New(0)
	var eps []*sluicev1.EndpointStats
	for c := range 10 {
		for e := range 10 {
			eps = append(eps, ep(fmt.Sprint("c", c), fmt.Sprint("e", e), 0, 0, 0, 0, 0, 1, 1))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		for _, e := range eps {
			e.Requests += 10
		}
		r.Observe("n1", "default", at(float64(i)), eps)
	}
}
