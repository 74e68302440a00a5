package node

import (
	"slices"
	"testing"
	"time"
)

// TestPlanCountsSessionsOnTheirWayBack: while the clients a round closed
// have not reconnected, shares are reckoned from the sessions there were:
// an endpoint brought down to its share is not brought down again because
// the sessions it let go are not open anywhere yet.
func TestPlanCountsSessionsOnTheirWayBack(t *testing.T) {
	eq2 := []load{{sessions: 5, weight: 1}, {sessions: 0, weight: 1}}
	if got := plan(eq2, 10, 20, 100); !slices.Equal(got, []int{0, 0}) {
		t.Errorf("5 of 10 sessions left, 5 on their way back: plan closes %v, want none", got)
	}
	if got := plan(eq2, 0, 20, 100); !slices.Equal(got, []int{2, 0}) {
		t.Errorf("5 sessions in all: plan closes %v, want 2 (share 2.5, rounded up)", got)
	}
	if got := plan([]load{{sessions: 9, weight: 1}, {sessions: 1, weight: 1}}, 4, 20, 100); !slices.Equal(got, []int{4, 0}) {
		t.Errorf("an expected total below the open sessions: plan closes %v, want 4 (from the 10 open)", got)
	}
}

func TestPlan(t *testing.T) {
	eq := func(n int) []uint32 { return slices.Repeat([]uint32{1}, n) }
	for _, tt := range []struct {
		name      string
		sessions  []int
		weights   []uint32
		tolerance uint32
		budget    int
		want      []int
	}{
		{"all on the survivor, rate-bound", []int{0, 0, 0, 0, 200}, eq(5), 20, 100, []int{0, 0, 0, 0, 100}},
		{"all on the survivor, down to its share", []int{0, 0, 0, 0, 200}, eq(5), 20, 1000, []int{0, 0, 0, 0, 160}},
		{"within tolerance", []int{40, 40, 40, 32, 48}, eq(5), 20, 100, []int{0, 0, 0, 0, 0}},
		{"just over the tolerance", []int{38, 38, 38, 37, 49}, eq(5), 20, 100, []int{0, 0, 0, 0, 9}},
		{"a wide tolerance", []int{0, 0, 0, 0, 200}, eq(5), 1000, 100, []int{0, 0, 0, 0, 0}},
		{"weights", []int{50, 50}, []uint32{1, 3}, 20, 100, []int{25, 0}},
		{"heavy endpoint holds its weight's share", []int{20, 80}, []uint32{1, 3}, 20, 100, []int{0, 0}},
		{"most over-full first", []int{100, 60, 0, 0}, eq(4), 20, 70, []int{60, 10, 0, 0}},
		{"most over-full first, either order", []int{60, 100, 0, 0}, eq(4), 20, 70, []int{10, 60, 0, 0}},
		{"most over-full relative to weight first", []int{60, 100, 0}, []uint32{1, 2, 1}, 20, 30, []int{20, 10, 0}},
		{"never below the share, rounded up", []int{0, 0, 7}, eq(3), 20, 100, []int{0, 0, 4}},
		{"no budget", []int{0, 200}, eq(2), 20, 0, []int{0, 0}},
		{"no sessions", []int{0, 0}, eq(2), 20, 100, []int{0, 0}},
		{"one endpoint", []int{500}, eq(1), 20, 100, []int{0}},
		{"nothing", nil, nil, 20, 100, []int{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			loads := make([]load, len(tt.sessions))
			for i := range loads {
				loads[i] = load{sessions: tt.sessions[i], weight: tt.weights[i]}
			}
			if got := plan(loads, 0, tt.tolerance, tt.budget); !slices.Equal(got, tt.want) {
				t.Errorf("plan(%v, weights %v, tolerance %d%%, budget %d) = %v, want %v", tt.sessions, tt.weights, tt.tolerance, tt.budget, got, tt.want)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	for _, tt := range []struct {
		sessions []int
		weights  []uint32
		total    int
		want     float64
	}{
		{[]int{40, 40, 40, 40, 40}, []uint32{1, 1, 1, 1, 1}, 200, 0},
		{[]int{0, 0, 0, 0, 200}, []uint32{1, 1, 1, 1, 1}, 200, 400},
		{[]int{40, 40, 40, 40, 40}, []uint32{1, 1, 1, 1, 1}, 100, 100}, // closed sessions come back
		{[]int{25, 75}, []uint32{1, 3}, 100, 0},
		{nil, nil, 0, 0},
	} {
		loads := make([]load, len(tt.sessions))
		for i := range loads {
			loads[i] = load{sessions: tt.sessions[i], weight: tt.weights[i]}
		}
		if got := spread(loads, tt.total); got != tt.want {
			t.Errorf("spread(%v, weights %v, total %d) = %v, want %v", tt.sessions, tt.weights, tt.total, got, tt.want)
		}
	}
}

func TestCloseBucket(t *testing.T) {
	t0 := time.Now()
	var b closeBucket
	b.fill(t0, 100)
	if n := b.take(t0, 100); n != 100 {
		t.Fatalf("a full bucket allows %d, want 100", n)
	}
	b.spend(100)
	if n := b.take(t0.Add(250*time.Millisecond), 100); n != 25 {
		t.Errorf("250ms after emptying: %d, want 25", n)
	}
	b.spend(10) // only 10 of the 25 were closed
	if n := b.take(t0.Add(500*time.Millisecond), 100); n != 40 {
		t.Errorf("then 250ms more: %d, want 40 (15 left + 25)", n)
	}
	if n := b.take(t0.Add(time.Hour), 100); n != 100 {
		t.Errorf("after an hour: %d, want 100 (one second's worth, no more)", n)
	}
	if n := b.take(t0.Add(time.Hour), 5); n != 5 {
		t.Errorf("after the rate dropped to 5: %d, want 5", n)
	}
	b.spend(5)
	if n := b.take(t0.Add(time.Hour+100*time.Millisecond), 5); n != 0 {
		t.Errorf("100ms at 5/s: %d, want 0 (half a close)", n)
	}
	if n := b.take(t0.Add(time.Hour+200*time.Millisecond), 5); n != 1 {
		t.Errorf("200ms at 5/s: %d, want 1", n)
	}
}

// TestRebalanceFollowsApplies: the rebalance loop of a TCP listener starts
// with a snapshot that asks for it, takes the settings of each new one,
// and stops when a snapshot turns it off, makes the listener HTTP, or the
// node closes.
func TestRebalanceFollowsApplies(t *testing.T) {
	n := newNode(t)
	addr := freeAddr(t)
	apply := func(protocol, tcp string) {
		t.Helper()
		if err := n.Apply("v", parse(t, `
clusters: [{ name: db, endpoints: [{ name: a, address: 127.0.0.1:1 }] }]
listeners: [{ name: db, address: %s, protocol: %s, default_cluster: db %s }]
`, addr, protocol, tcp)); err != nil {
			t.Fatal(err)
		}
	}
	stopped := func(r *rebalancer, why string) {
		t.Helper()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			t.Fatalf("rebalance loop still running after %s", why)
		}
	}

	apply("TCP", ", tcp: { rebalance: {} }")
	r := n.listeners[addr].rb
	if r == nil {
		t.Fatal("no rebalance loop for a listener with rebalance")
	}
	if cfg := r.cfg.Load(); cfg.listener != "db" || cfg.tolerancePercent != 20 || cfg.ratePerSec != 100 || cfg.minIdle != time.Second || cfg.cluster != n.clusters["db"] {
		t.Errorf("defaults: %+v; want listener db, 20%%, 100/s, 1s, the current cluster", *cfg)
	}
	apply("TCP", ", tcp: { rebalance: { tolerance_percent: 50, max_closes_per_second: 7, min_idle: 2s } }")
	if n.listeners[addr].rb != r {
		t.Fatal("a new snapshot started a second loop")
	}
	if cfg := r.cfg.Load(); cfg.tolerancePercent != 50 || cfg.ratePerSec != 7 || cfg.minIdle != 2*time.Second || cfg.cluster != n.clusters["db"] {
		t.Errorf("after a new snapshot: %+v; want 50%%, 7/s, 2s, the new cluster", *cfg)
	}
	apply("TCP", "")
	stopped(r, "a snapshot without rebalance")
	if n.listeners[addr].rb != nil {
		t.Error("listener still has its rebalancer")
	}

	apply("TCP", ", tcp: { rebalance: {} }")
	r = n.listeners[addr].rb
	apply("HTTP", "")
	stopped(r, "the listener became HTTP")

	apply("TCP", ", tcp: { rebalance: {} }")
	r = n.listeners[addr].rb
	n.Close()
	stopped(r, "the node closed")
}
