package lb

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

var hashMethods = []HashMethod{HashMap, HashMaglev, HashRing}

func keyRequest(k int) Request {
	return Request{Hash: HashString(fmt.Sprintf("key-%d", k)), HasHash: true}
}

func TestHashSameKeySameEndpoint(t *testing.T) {
	s := testSet("a:1", "b:2", "c:3", "d:1", "e:5")
	for _, method := range hashMethods {
		t.Run(method.String(), func(t *testing.T) {
			p, again := NewHash(s, method, 0), NewHash(s, method, 0)
			for k := range 1000 {
				r := keyRequest(k)
				first, _ := p.Pick(r)
				for _, q := range []Picker{p, again} { // a rebuild agrees too
					if ep, _ := q.Pick(r); ep != first {
						t.Fatalf("key %d: %s then %s", k, first.Name, ep.Name)
					}
				}
			}
		})
	}
}

// TestHashRemoval removes one of 10 endpoints and counts the keys that
// move: consistent methods move only about the removed endpoint's tenth,
// map-based moves most. On a ring no key of a surviving endpoint moves;
// Maglev trades a little of that for evenness (the paper's section 3.4:
// a few slots of survivors change hands too).
func TestHashRemoval(t *testing.T) {
	var spec []string
	for i := range 10 {
		spec = append(spec, fmt.Sprintf("e%d:1", i))
	}
	s := testSet(spec...)
	without := slices.Delete(slices.Clone(s), 3, 4)
	const keys = 10000
	tests := []struct {
		method   HashMethod
		min, max float64
	}{
		{HashMap, 0.5, 1},
		{HashMaglev, 0, 0.1 + 0.05},
		{HashRing, 0, 0.1 + 0.05},
	}
	for _, tt := range tests {
		t.Run(tt.method.String(), func(t *testing.T) {
			before, after := NewHash(s, tt.method, 0), NewHash(without, tt.method, 0)
			moved := 0
			for k := range keys {
				r := keyRequest(k)
				a, _ := before.Pick(r)
				b, _ := after.Pick(r)
				if a != b {
					moved++
					if tt.method == HashRing && a != s[3].Endpoint {
						t.Errorf("key %d moved from %s, which stayed", k, a.Name)
					}
				}
			}
			got := float64(moved) / keys
			t.Logf("%s: %.1f%% of keys moved", tt.method, 100*got)
			if got < tt.min || got > tt.max {
				t.Errorf("moved %.3f of keys, want in [%.2f, %.2f]", got, tt.min, tt.max)
			}
		})
	}
}

// TestRingMovesOnlyTheMemberThatChanged: with weights whose GCD is 1 only
// because of one member (as HAProxy's consistent hash-type, where a
// server's points depend on its own weight alone), that member going down,
// and a slow start ramping it back up, move only keys of that member: no
// key moves from one member that did not change to another.
func TestRingMovesOnlyTheMemberThatChanged(t *testing.T) {
	s := testSet("e0:2", "e1:2", "e2:4", "e3:1", "e4:2")
	changed := s[3].Endpoint
	down := slices.Clone(s)
	down[3].Down = true
	// A slow start of e3 at 30% of its weight, as the node ramps one:
	// every weight scaled by 100, e3's by 30.
	ramping := slices.Clone(s)
	for i := range ramping {
		ramping[i].Full = ramping[i].Weight * 100
		ramping[i].Weight *= 100
	}
	ramping[3].Weight = 30
	base := NewHash(s, HashRing, 0)
	const keys = 20000
	for _, tt := range []struct {
		name     string
		set      Set
		min, max float64 // share of the keys that moved
	}{
		{"down", down, 0.06, 0.13},       // e3's 1/11
		{"ramping", ramping, 0.04, 0.10}, // 0.7 of e3's 1/11
	} {
		t.Run(tt.name, func(t *testing.T) {
			after := NewHash(tt.set, HashRing, 0)
			moved := 0
			for k := range keys {
				r := keyRequest(k)
				a, _ := base.Pick(r)
				b, _ := after.Pick(r)
				if a == b {
					continue
				}
				moved++
				if a != changed && b != changed {
					t.Fatalf("key %d moved from %s to %s, neither of which changed", k, a.Name, b.Name)
				}
			}
			got := float64(moved) / keys
			t.Logf("%.1f%% of keys moved", 100*got)
			if got < tt.min || got > tt.max {
				t.Errorf("moved %.3f of keys, want in [%.2f, %.2f]", got, tt.min, tt.max)
			}
		})
	}
}

// TestHashBoundedLoad floods one hot key, holding every request: with a
// balance factor f, no endpoint ever holds more than ceil(f/100 × average)
// while without it one endpoint takes everything.
func TestHashBoundedLoad(t *testing.T) {
	tests := []struct {
		n      int // endpoints; 200 uses the cached total of large sets
		factor uint32
		picks  int
	}{
		{10, 125, 1000},
		{10, 100, 1000},
		{10, 200, 333},
		{200, 150, 6000},
	}
	for _, method := range hashMethods {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/n=%d/f=%d", method, tt.n, tt.factor), func(t *testing.T) {
				var spec []string
				for i := range tt.n {
					spec = append(spec, fmt.Sprintf("e%d:1", i))
				}
				s := testSet(spec...)
				p := NewHash(s, method, tt.factor)
				hot := keyRequest(42)
				home, _ := p.Pick(hot)
				for k := 1; k <= tt.picks; k++ {
					ep, err := p.Pick(hot)
					if err != nil {
						t.Fatalf("Pick: %v", err)
					}
					ep.Acquire()
					limit := int64(math.Ceil(float64(tt.factor) / 100 * float64(k) / float64(tt.n)))
					if got := ep.Inflight(); got > limit {
						t.Fatalf("after %d requests %s holds %d, want ≤ %d", k, ep.Name, got, limit)
					}
				}
				if home.Inflight() == 0 {
					t.Errorf("the key's own endpoint %s got nothing", home.Name)
				}
				// Releasing everything sends the key home again.
				for _, m := range s {
					for m.Endpoint.Inflight() > 0 {
						m.Endpoint.Release()
					}
				}
				if ep, _ := p.Pick(hot); ep != home {
					t.Errorf("idle again: Pick = %s, want %s", ep.Name, home.Name)
				}
			})
		}
	}
	t.Run("unbounded floods one", func(t *testing.T) {
		s := testSet("a:1", "b:1", "c:1")
		p := NewHash(s, HashMaglev, 0)
		for range 100 {
			ep, _ := p.Pick(keyRequest(42))
			ep.Acquire()
		}
		if got := max(s[0].Endpoint.Inflight(), s[1].Endpoint.Inflight(), s[2].Endpoint.Inflight()); got != 100 {
			t.Errorf("busiest holds %d, want 100", got)
		}
	})
}

// TestHashWithoutKeyRoundRobins checks the fallback for requests with no
// hash key: the smooth round robin of the same set.
func TestHashWithoutKeyRoundRobins(t *testing.T) {
	fromFirst(t)
	for _, method := range hashMethods {
		t.Run(method.String(), func(t *testing.T) {
			p := NewHash(testSet("a:2", "b:1", "c:1"), method, 125)
			if got, want := sequence(t, p, 8), "abcaabca"; got != want {
				t.Errorf("nil request: sequence = %q, want %q", got, want)
			}
			var got []byte
			for range 8 {
				ep, _ := p.Pick(Request{Hash: 7, HasHash: false})
				got = append(got, ep.Name...)
			}
			if want := "abcaabca"; string(got) != want {
				t.Errorf("HasHash false: sequence = %q, want %q", got, want)
			}
		})
	}
}

func TestMaglevTableShares(t *testing.T) {
	s := testSet("a:1", "b:2", "c:3", "d:4")
	table := newMaglevTable(s)
	if len(table) != 65537 {
		t.Errorf("table size = %d, want 65537", len(table))
	}
	counts := make([]int, len(s))
	for _, i := range table {
		counts[i]++
	}
	for i, m := range s {
		want := float64(len(table)) * float64(m.Weight) / 10
		if got := float64(counts[i]); math.Abs(got-want) > 0.01*want {
			t.Errorf("%s owns %v slots, want %.0f ±1%%", m.Endpoint.Name, got, want)
		}
	}
	if got := maglevSize(10000); got != 1000003 {
		t.Errorf("maglevSize(10000) = %d, want 1000003 (smallest prime ≥ 1e6)", got)
	}
}

func TestHashKey(t *testing.T) {
	tests := []string{"", "a", "/index.html?user=42", "192.0.2.1", string(make([]byte, 100))}
	seen := map[uint64]string{}
	for _, s := range tests {
		if a, b := HashKey([]byte(s)), HashString(s); a != b {
			t.Errorf("HashKey(%q) = %#x, HashString = %#x", s, a, b)
		}
		if prev, dup := seen[HashString(s)]; dup {
			t.Errorf("%q and %q collide", s, prev)
		}
		seen[HashString(s)] = s
	}
	b := []byte("/some/uri?id=1")
	if n := testing.AllocsPerRun(100, func() { HashKey(b); HashString("/x") }); n != 0 {
		t.Errorf("HashKey allocates %v times, want 0", n)
	}
}
