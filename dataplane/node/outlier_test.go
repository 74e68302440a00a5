package node

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// fakeClock drives an ejector's time by hand.
type fakeClock struct {
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at          time.Time
	f           func()
	done, fired bool
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) func() bool {
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		was := !t.done
		t.done = true
		return was
	}
}

// advance moves the clock on by d, firing the timers due on the way in
// order.
func (c *fakeClock) advance(d time.Duration) {
	end := c.now.Add(d)
	for {
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		c.now = next.at
		next.done, next.fired = true, true
		next.f()
	}
	c.now = end
}

// testEjector is an ejector of the cluster "web" over n real endpoints
// e0..e(n-1), on a fake clock, whose endpoints report to it as Apply
// wires them.
type testEjector struct {
	*ejector
	clock   *fakeClock
	eps     []*upstream.Endpoint
	changes int
}

func newTestEjector(t *testing.T, n int, cfg outlierConfig) *testEjector {
	t.Helper()
	te := &testEjector{clock: &fakeClock{now: time.Unix(1e9, 0)}}
	te.ejector = newEjector("web", slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, *upstream.Endpoint, bool) { te.changes++ })
	te.now = func() time.Time { return te.clock.now }
	te.afterFunc = te.clock.afterFunc
	var set lb.Set
	for i := range n {
		ep := upstream.New("web", fmt.Sprintf("e%d", i), fmt.Sprintf("127.0.0.1:%d", i+1))
		te.eps = append(te.eps, ep)
		set = append(set, lb.Member{Endpoint: ep, Weight: 1})
	}
	te.update(cfg, set)
	for _, ep := range te.eps {
		ep.SetOutlierPolicy(te.policy(cfg))
	}
	return te
}

// fail makes endpoint i answer k 5xx responses in a row.
func (te *testEjector) fail(i, k int) {
	for range k {
		te.eps[i].Responded(503)
	}
}

// out lists the names of the endpoints ejected now.
func (te *testEjector) out() []string {
	var names []string
	for ep := range te.ejected() {
		names = append(names, ep.Name)
	}
	slices.Sort(names)
	return names
}

func (te *testEjector) status(i int) EndpointStatus {
	// As Node.Endpoints fills it: the count is the endpoint's.
	st := EndpointStatus{Health: "UP", Ejections: te.eps[i].Ejections()}
	te.ejector.status(te.eps[i], &st)
	return st
}

var testOutlier = outlierConfig{connectFailures: 5, responses5xx: 5, base: 10 * time.Second, max: 35 * time.Second, maxPercent: 100}

// TestEjectionPercentCap: never more than max_ejection_percent of the
// cluster is ejected, counting the one about to be; one endpoint always
// may be; a refused endpoint is ejected once room is made and it fails
// enough again.
func TestEjectionPercentCap(t *testing.T) {
	for _, tt := range []struct {
		endpoints int
		percent   uint32
		want      int
	}{
		{3, 34, 1},  // a second would be 66%
		{3, 67, 2},  // exactly: 2/3 is 66.7%
		{3, 66, 1},  // just below
		{10, 10, 1}, // the default share
		{10, 30, 3},
		{1, 10, 1},  // one always may be, even the only one
		{4, 0, 1},   // even at 0%
		{4, 100, 4}, // every one
	} {
		t.Run(fmt.Sprintf("%d endpoints %d%%", tt.endpoints, tt.percent), func(t *testing.T) {
			cfg := testOutlier
			cfg.maxPercent = tt.percent
			te := newTestEjector(t, tt.endpoints, cfg)
			for i := range tt.endpoints {
				te.fail(i, 5)
			}
			if got := len(te.out()); got != tt.want {
				t.Errorf("%d ejected (%v), want %d", got, te.out(), tt.want)
			}
		})
	}

	te := newTestEjector(t, 3, outlierConfig{responses5xx: 5, base: 10 * time.Second, max: 10 * time.Second, maxPercent: 34})
	te.fail(0, 5)
	te.fail(1, 5)
	if got := te.out(); !slices.Equal(got, []string{"e0"}) {
		t.Fatalf("ejected %v, want only e0", got)
	}
	if st := te.status(1); st.Health != "UP" || st.Ejections != 0 {
		t.Errorf("e1, refused by the cap: %+v, want UP, never ejected", st)
	}
	te.clock.advance(10 * time.Second) // e0 returns
	te.fail(1, 4)
	if got := te.out(); len(got) != 0 {
		t.Fatalf("e1 ejected after 4 failures since it was refused: %v", got)
	}
	te.fail(1, 1)
	if got := te.out(); !slices.Equal(got, []string{"e1"}) {
		t.Errorf("after e0 returned and e1 failed 5 more: ejected %v, want e1", got)
	}
}

// TestEjectionGrowth: the n-th ejection in a row lasts n times the base,
// up to the max; the endpoint returns when its time is up; status says how
// long, why, and which ejection of the endpoint it is, past the cap too.
func TestEjectionGrowth(t *testing.T) {
	te := newTestEjector(t, 2, testOutlier) // base 10s, max 35s
	want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 35 * time.Second, 35 * time.Second}
	for n, d := range want {
		te.fail(0, 5)
		if got := te.out(); !slices.Equal(got, []string{"e0"}) {
			t.Fatalf("ejection %d: ejected %v, want e0", n+1, got)
		}
		st := te.status(0)
		wantDetail := fmt.Sprintf("5 consecutive 5xx responses, ejected for %v (ejection %d)", d, n+1)
		if st.Health != "EJECTED" || st.Detail != wantDetail || !st.Since.Equal(te.clock.now) || st.Ejections != uint64(n+1) {
			t.Errorf("ejection %d: status %+v, want EJECTED since now, %q, %d ejections", n+1, st, wantDetail, n+1)
		}
		te.clock.advance(d - time.Millisecond)
		if len(te.out()) != 1 {
			t.Fatalf("ejection %d returned before its %v", n+1, d)
		}
		te.clock.advance(time.Millisecond)
		if got := te.out(); len(got) != 0 {
			t.Fatalf("ejection %d: still ejected after its %v", n+1, d)
		}
		if st := te.status(0); st.Health != "UP" || !st.Since.Equal(te.clock.now) {
			t.Errorf("after ejection %d: %s since %v, want UP since its return %v", n+1, st.Health, st.Since, te.clock.now)
		}
	}
	if te.changes != 2*len(want) {
		t.Errorf("%d changes told, want one per ejection and one per return (%d)", te.changes, 2*len(want))
	}

	// Connect failures are the other trigger, with their own detail.
	te.ejector.report(te.eps[1], upstream.ConnectFailures)
	if st := te.status(1); st.Detail != "5 consecutive connect failures, ejected for 10s (ejection 1)" {
		t.Errorf("connect failures: detail %q", st.Detail)
	}
}

// TestEjectionDecay: each whole base an endpoint spends in service takes
// one step off the length of its next ejection.
func TestEjectionDecay(t *testing.T) {
	te := newTestEjector(t, 2, testOutlier) // base 10s, max 35s
	eject := func() time.Duration {
		t.Helper()
		te.fail(0, 5)
		st := te.status(0)
		if st.Health != "EJECTED" {
			t.Fatalf("not ejected: %+v", st)
		}
		_, after, _ := strings.Cut(st.Detail, "ejected for ")
		length, _, _ := strings.Cut(after, " ")
		d, err := time.ParseDuration(length)
		if err != nil {
			t.Fatalf("detail %q: %v", st.Detail, err)
		}
		te.clock.advance(d) // serve it out
		return d
	}
	for range 3 {
		eject() // 10s, 20s, 30s
	}
	te.clock.advance(19 * time.Second) // one whole base: 3 -> 2, so the next is the 3rd
	if d := eject(); d != 30*time.Second {
		t.Errorf("after 19s in service: next ejection %v, want 30s (one step back from the 4th)", d)
	}
	te.clock.advance(25 * time.Second) // two whole bases: 3 -> 1
	if d := eject(); d != 20*time.Second {
		t.Errorf("after 25s in service: next ejection %v, want 20s", d)
	}
	te.clock.advance(time.Hour) // all the way back
	if d := eject(); d != 10*time.Second {
		t.Errorf("after an hour in service: next ejection %v, want the base 10s", d)
	}
	if st := te.status(0); st.Ejections != 6 {
		t.Errorf("Ejections = %d, want 6", st.Ejections)
	}
}

// TestEjectorMembersAndStop: an endpoint that leaves the cluster is
// forgotten and frees its share; stop returns everyone at once.
func TestEjectorMembersAndStop(t *testing.T) {
	te := newTestEjector(t, 3, outlierConfig{responses5xx: 5, base: 10 * time.Second, max: 10 * time.Second, maxPercent: 34})
	te.fail(0, 5)
	te.update(te.cfg, lb.Set{{Endpoint: te.eps[1]}, {Endpoint: te.eps[2]}}) // e0 removed
	if got := te.out(); len(got) != 0 {
		t.Fatalf("removed e0 still counts as ejected: %v", got)
	}
	te.fail(0, 5)
	if got := te.out(); len(got) != 0 {
		t.Fatalf("a removed endpoint was ejected: %v", got)
	}
	te.fail(1, 5) // 1 of 2 is 50% > 34%, but one always may be
	if got := te.out(); !slices.Equal(got, []string{"e1"}) {
		t.Fatalf("ejected %v, want e1", got)
	}
	te.stop("test")
	if got := te.out(); len(got) != 0 {
		t.Errorf("after stop: ejected %v, want none", got)
	}
	te.fail(2, 5)
	if got := te.out(); len(got) != 0 {
		t.Errorf("a stopped ejector ejected %v", got)
	}
	te.clock.advance(time.Hour) // the stopped timer must not fire
}

// member returns the running endpoint name of cluster web.
func member(t *testing.T, n *Node, name string) *upstream.Endpoint {
	t.Helper()
	for _, m := range (*n.current.Load())["web"].members {
		if m.Endpoint.Name == name {
			return m.Endpoint
		}
	}
	t.Fatalf("no endpoint %s", name)
	return nil
}

func statusOf(n *Node, name string) EndpointStatus {
	for _, st := range n.Endpoints() {
		if st.Name == name {
			return st
		}
	}
	return EndpointStatus{}
}

// TestEjectionInNode: an endpoint that answers 5xx in a row is taken out
// of picking as one checks marked down is, so the backups take over when
// every primary is out (the first, or all with all_backups); an apply that
// keeps it keeps it out; turning outlier detection off brings it back.
func TestEjectionInNode(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all_backups %v", all), func(t *testing.T) {
			n := newNode(t)
			const doc = `
clusters:
  - name: web
    all_backups: %v
    %s
    endpoints:
      - { name: a, address: 127.0.0.1:1 }
      - { name: b, address: 127.0.0.1:2, weight: %d }
      - { name: s1, address: 127.0.0.1:3, backup: true }
      - { name: s2, address: 127.0.0.1:4, backup: true }
`
			const od = "outlier_detection: { consecutive_5xx: 3, base_ejection_time: 1m, max_ejection_percent: 50 }"
			if err := n.Apply("1", parse(t, doc, all, od, 1)); err != nil {
				t.Fatal(err)
			}
			changes := n.StatusChanges()
			for range 3 {
				member(t, n, "a").Responded(500)
			}
			st := statusOf(n, "a")
			if st.Health != "EJECTED" || st.Detail != "3 consecutive 5xx responses, ejected for 1m0s (ejection 1)" || st.Ejections != 1 {
				t.Fatalf("a after 3 5xx: %+v, want EJECTED with its cause", st)
			}
			if n.StatusChanges() == changes {
				t.Errorf("StatusChanges did not grow on an ejection")
			}
			waitUntil(t, "a out of picking", func() bool { return shares(t, n, "web", 10)["a"] == 0 })
			if got := shares(t, n, "web", 30); got["b"] != 30 {
				t.Fatalf("a ejected: %v, want all to b", got)
			}

			// An apply that keeps a keeps it out, with the same status.
			if err := n.Apply("2", parse(t, doc, all, od, 2)); err != nil {
				t.Fatal(err)
			}
			if got := shares(t, n, "web", 30); got["b"] != 30 {
				t.Errorf("after an apply that keeps a: %v, want all to b", got)
			}
			if st2 := statusOf(n, "a"); st2.Health != "EJECTED" || !st2.Since.Equal(st.Since) {
				t.Errorf("after an apply: %+v, want still EJECTED since %v", st2, st.Since)
			}

			// b out too: the backups take the work.
			for range 3 {
				member(t, n, "b").Responded(502)
			}
			want := map[string]int{"s1": 30}
			if all {
				want = map[string]int{"s1": 15, "s2": 15}
			}
			waitUntil(t, "b out of picking", func() bool { return shares(t, n, "web", 10)["b"] == 0 })
			if got := shares(t, n, "web", 30); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("both primaries ejected: %v, want %v", got, want)
			}

			// Outlier detection off: everyone is back at once.
			if err := n.Apply("3", parse(t, doc, all, "", 1)); err != nil {
				t.Fatal(err)
			}
			if got := shares(t, n, "web", 30); got["a"] != 15 || got["b"] != 15 {
				t.Errorf("outlier detection off: %v, want a and b back", got)
			}
			if st := statusOf(n, "a"); st.Health != "UP" {
				t.Errorf("outlier detection off: a is %s, want UP", st.Health)
			}
			for range 10 {
				member(t, n, "a").Responded(500)
			}
			if got := shares(t, n, "web", 30); got["a"] != 15 {
				t.Errorf("5xx with outlier detection off ejected a: %v", got)
			}
		})
	}
}

// TestEjectionEnds: an ejected endpoint takes work again when its
// ejection time is up, without a check, and ramps up as one back from down.
// The ejection lasts 1s so that a busy machine cannot end it before the
// test has seen it.
func TestEjectionEnds(t *testing.T) {
	n := newNode(t)
	const tmpl = `
clusters:
  - name: web
    slow_start: 1m
    outlier_detection: { consecutive_connect_failures: 2, base_ejection_time: 1s, max_ejection_percent: 50 }
    endpoints:
      - { name: a, address: %s%s }
      - { name: b, address: 127.0.0.1:2 }
`
	addr := freeAddr(t)
	if err := n.Apply("1", parse(t, tmpl, addr, "")); err != nil {
		t.Fatal(err)
	}
	a := member(t, n, "a")
	for range 2 {
		if _, err := a.Dial(t.Context(), time.Second); err == nil {
			t.Fatal("dial to a free port succeeded")
		}
	}
	st := statusOf(n, "a")
	if st.Health != "EJECTED" || !strings.HasPrefix(st.Detail, "2 consecutive connect failures") {
		t.Fatalf("a after 2 refused connects: %+v, want EJECTED", st)
	}
	waitUntil(t, "a out of picking", func() bool { return shares(t, n, "web", 10)["a"] == 0 })
	waitUntil(t, "a back in picking", func() bool { return shares(t, n, "web", 10)["a"] > 0 })
	if took := time.Since(st.Since); took < time.Second {
		t.Errorf("a was back %v after its ejection, before base_ejection_time (1s)", took)
	}
	if st := statusOf(n, "a"); st.Health != "UP" || st.Ejections != 1 {
		t.Errorf("a back: %+v, want UP with 1 ejection", st)
	}
	// At a tenth of its weight a gets about 1 pick in 11.
	if got := shares(t, n, "web", 1100); got["a"] > 300 {
		t.Errorf("just back: a got %d of 1100 picks, want about 100 (slow start)", got["a"])
	}
	// The count is a's: a drain and a return do not take it back to zero,
	// which a scraper would read as a counter reset.
	if err := n.Apply("2", parse(t, tmpl, addr, ", state: DRAINING")); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(n, "a"); st.Health != "DRAINING" || st.Ejections != 1 {
		t.Errorf("a drained: %s with %d ejections, want DRAINING with 1", st.Health, st.Ejections)
	}
	if err := n.Apply("3", parse(t, tmpl, addr, "")); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(n, "a"); st.Ejections != 1 {
		t.Errorf("a back from its drain: %s with %d ejections, want 1", st.Health, st.Ejections)
	}
	// Nor does turning outlier detection off and on again.
	off := strings.Replace(tmpl, "outlier_detection:", "# outlier_detection:", 1)
	if err := n.Apply("4", parse(t, off, addr, "")); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply("5", parse(t, tmpl, addr, "")); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(n, "a"); st.Ejections != 1 {
		t.Errorf("a after outlier detection went off and on: %d ejections, want 1", st.Ejections)
	}
}

// An endpoint an operator took out shows, in status and so in sluicectl
// stats, the weight and backup flag it is configured with and gets back
// on return, not the zero of an endpoint in no picker.
func TestInactiveEndpointShowsItsWeight(t *testing.T) {
	n := newNode(t)
	const tmpl = `
clusters:
  - name: web
    endpoints:
      - { name: a, address: 127.0.0.1:1, weight: 3%s }
      - { name: b, address: 127.0.0.1:2, backup: true%s }
`
	for _, state := range []string{"", ", state: DRAINING", ", state: DISABLED"} {
		if err := n.Apply("v"+state, parse(t, tmpl, state, state)); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimPrefix(state, ", state: ")
		if want == "" {
			want = "UP"
		}
		if st := statusOf(n, "a"); st.Health != want || st.Weight != 3 || st.Backup {
			t.Errorf("a%s: %s weight %d backup %v, want %s weight 3", state, st.Health, st.Weight, st.Backup, want)
		}
		if st := statusOf(n, "b"); st.Health != want || st.Weight != 1 || !st.Backup {
			t.Errorf("b%s: %s weight %d backup %v, want %s weight 1 backup", state, st.Health, st.Weight, st.Backup, want)
		}
	}
}
