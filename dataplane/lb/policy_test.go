package lb

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// policy builds one picker kind; hashed says whether requests carry a hash.
type policy struct {
	name   string
	build  func(Set) Picker
	hashed bool
}

func policies() []policy {
	return []policy{
		{"ROUND_ROBIN", NewRoundRobin, false},
		{"STATIC_RR", NewStaticRR, false},
		{"FIRST", NewFirst, false},
		{"LEAST_CONN", NewLeastConn, false},
		{"RANDOM_1", func(s Set) Picker { return NewRandom(s, 1) }, false},
		{"RANDOM_2", func(s Set) Picker { return NewRandom(s, 0) }, false},
		{"HASH_map", func(s Set) Picker { return NewHash(s, HashMap, 0) }, true},
		{"HASH_maglev", func(s Set) Picker { return NewHash(s, HashMaglev, 0) }, true},
		{"HASH_ring", func(s Set) Picker { return NewHash(s, HashRing, 0) }, true},
		{"HASH_maglev_bounded", func(s Set) Picker { return NewHash(s, HashMaglev, 125) }, true},
		{"HASH_ring_bounded", func(s Set) Picker { return NewHash(s, HashRing, 125) }, true},
		{"HASH_map_bounded", func(s Set) Picker { return NewHash(s, HashMap, 125) }, true},
	}
}

// request returns the k-th request of a test run.
func (p policy) request(k int) Request {
	if !p.hashed {
		return Request{}
	}
	return Request{Hash: HashString(fmt.Sprintf("key-%d", k)), HasHash: true}
}

// TestEligibility checks that every policy uses the members Set.Eligible
// allows, and only those.
func TestEligibility(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		want string // the only endpoint ever picked; "" for ErrNoEndpoint
	}{
		{"down and weight 0 are out", testSet("a:1:down", "b:0", "c:1"), "c"},
		{"backup unused while a primary is up", testSet("a:1:down", "b:1", "s:1:backup"), "b"},
		{"first backup when all primaries down", testSet("a:1:down", "s:1:backup", "t:1:backup"), "s"},
		{"backup without weight", testSet("a:1:down", "s:0:backup"), "s"},
		{"down backup skipped", testSet("a:1:down", "s:1:backup:down", "t:1:backup"), "t"},
		{"nothing eligible", testSet("a:1:down", "s:1:backup:down"), ""},
		{"empty", nil, ""},
	}
	for _, pol := range policies() {
		for _, tt := range tests {
			t.Run(pol.name+"/"+tt.name, func(t *testing.T) {
				p := pol.build(tt.set)
				for k := range 50 {
					ep, err := p.Pick(pol.request(k))
					if tt.want == "" {
						if !errors.Is(err, ErrNoEndpoint) {
							t.Fatalf("Pick err = %v, want ErrNoEndpoint", err)
						}
						continue
					}
					if err != nil || ep.Name != tt.want {
						t.Fatalf("Pick = %v, %v; want %s", ep, err, tt.want)
					}
				}
			})
		}
	}
}

// TestFull checks the MaxConn rule shared by every policy: full members are
// never picked, and ErrFull comes only when every member is full.
func TestFull(t *testing.T) {
	for _, pol := range policies() {
		for _, n := range []int{3, 100} { // 100 takes the large-set paths
			t.Run(fmt.Sprintf("%s/%d", pol.name, n), func(t *testing.T) {
				var spec []string
				for i := range n {
					spec = append(spec, fmt.Sprintf("e%d:%d:max=2", i, 1+i%3))
				}
				s := testSet(spec...)
				p := pol.build(s)
				// Fill all but the last member.
				for _, m := range s[:n-1] {
					m.Endpoint.Acquire()
					m.Endpoint.Acquire()
				}
				last := s[n-1].Endpoint
				for k := range 200 {
					ep, err := p.Pick(pol.request(k))
					if err != nil || ep != last {
						t.Fatalf("Pick = %v, %v; want the only free member %s", ep, err, last.Name)
					}
				}
				last.Acquire()
				last.Acquire()
				for k := range 50 {
					if ep, err := p.Pick(pol.request(k)); !errors.Is(err, ErrFull) {
						t.Fatalf("all full: Pick = %v, %v; want ErrFull", ep, err)
					}
				}
				s[0].Endpoint.Release()
				if ep, err := p.Pick(pol.request(0)); err != nil || ep != s[0].Endpoint {
					t.Fatalf("after a release: Pick = %v, %v; want %s", ep, err, s[0].Endpoint.Name)
				}
			})
		}
	}
}

// TestDistribution checks that every policy but FIRST spreads work in
// proportion to the weights, within 5% of each weight class's share.
// LEAST_CONN only follows weights while work is held, so its picks are
// held (never released) and its share is the in-flight work. RANDOM and
// HASH policies get at least 30,000 picks (for HASH, distinct keys): with
// 3000, sampling noise alone is ±2.6% (one standard deviation) for a 1/3
// share, so ±5% would fail one run in twenty; with 30,000 it is ±0.8%.
func TestDistribution(t *testing.T) {
	type sizing struct {
		name  string
		spec  []string
		picks int
	}
	var large []string
	for i := range 120 {
		large = append(large, fmt.Sprintf("e%d:%d", i, []int{1, 2, 4}[i%3]))
	}
	sizes := []sizing{
		{"2:1", []string{"a:2", "b:1"}, 3000},
		{"5:3:1:1", []string{"a:5", "b:3", "c:1", "d:1"}, 10000},
		{"120 members 1:2:4", large, 70000},
	}
	for _, pol := range policies() {
		if pol.name == "FIRST" {
			continue
		}
		for _, sz := range sizes {
			t.Run(pol.name+"/"+sz.name, func(t *testing.T) {
				s := testSet(sz.spec...)
				p := pol.build(s)
				got := map[uint32]int{}
				byEndpoint := map[string]uint32{}
				var wsum uint32
				for _, m := range s {
					byEndpoint[m.Endpoint.Name] = m.Weight
					wsum += m.Weight
				}
				hold := pol.name == "LEAST_CONN"
				picks := sz.picks
				if pol.hashed || strings.HasPrefix(pol.name, "RANDOM") {
					picks = max(picks, 30000)
				}
				for k := range picks {
					ep, err := p.Pick(pol.request(k))
					if err != nil {
						t.Fatalf("Pick: %v", err)
					}
					if hold {
						ep.Acquire()
					}
					got[byEndpoint[ep.Name]]++
				}
				want := map[uint32]float64{}
				for _, m := range s {
					want[m.Weight] += float64(picks) * float64(m.Weight) / float64(wsum)
				}
				for w, exp := range want {
					if g := float64(got[w]); math.Abs(g-exp) > 0.05*exp {
						t.Errorf("weight %d class: %v picks, want %.0f ±5%%", w, g, exp)
					}
				}
			})
		}
	}
}

// TestConcurrentPicks runs every policy from several goroutines holding and
// releasing work, for the race detector, and checks MaxConn is never
// exceeded by more than the number of racing goroutines.
func TestConcurrentPicks(t *testing.T) {
	const workers, maxConn = 4, 5
	for _, pol := range policies() {
		t.Run(pol.name, func(t *testing.T) {
			var spec []string
			for i := range 40 {
				spec = append(spec, fmt.Sprintf("e%d:%d:max=%d", i, 1+i%3, maxConn))
			}
			p := pol.build(testSet(spec...))
			done := make(chan error, workers)
			for w := range workers {
				go func() {
					var held []*upstream.Endpoint
					for k := range 2000 {
						ep, err := p.Pick(pol.request(w*2000 + k))
						if err != nil && !errors.Is(err, ErrFull) {
							done <- err
							return
						}
						if err == nil {
							ep.Acquire()
							if n := ep.Inflight(); n > maxConn+workers {
								done <- fmt.Errorf("%s holds %d with MaxConn %d", ep.Name, n, maxConn)
								return
							}
							held = append(held, ep)
						}
						if len(held) > 8 {
							held[0].Release()
							held = held[1:]
						}
					}
					done <- nil
				}()
			}
			for range workers {
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
