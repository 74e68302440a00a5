package lb

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// Bounds of the precomputed round-robin schedule, in picks per cycle (the
// sum of the weights divided by their GCD). Up to maxSmooth the schedule is
// smooth weighted round robin, O(members) per entry to build; up to
// maxSchedule it is earliest deadline first, O(log members) per entry. A
// cluster with a longer cycle picks from the deadline heap under a lock.
const (
	maxSmooth   = 4096
	maxSchedule = 1 << 18
)

// RoundRobin is smooth weighted round robin, the algorithm of nginx and of
// HAProxy's "roundrobin": each pick adds every member's weight to its
// running score, takes the member with the highest score and subtracts the
// total from it. Weights 5:1:1 give a a b a c a a, never a a a a a b c, so
// no endpoint receives a burst.
//
// The sequence repeats every sum(weights)/GCD(weights) picks, so it is
// computed once when the picker is built and Pick is one atomic increment;
// a new picker starts at a random place in it (firstPick).
// For big clusters each smooth step, O(endpoints), makes that too slow to
// build; they use earliest deadline first instead, as Envoy does: the k-th
// pick of a member of weight w is due at (k-½)/w, the earliest due member
// is picked, ties go to snapshot order (5:1:1 gives a a a b c a a). Each
// cycle still gives every member exactly its weight. The schedule is
// precomputed up to maxSchedule picks per cycle; beyond, each Pick pops the
// deadline heap under a short lock, O(log endpoints).
//
// A full member (MaxConn reached) is skipped: its turn goes to the next
// member in snapshot order that has a free slot.
type RoundRobin struct {
	members  Set
	limited  bool
	total    int64    // sum of the weights: the length of a cycle
	schedule []uint16 // indexes into members; nil when the sum is too large
	next     atomic.Uint64

	mu      sync.Mutex // guards heap and due when schedule is nil
	heap    []int32    // member indexes, a min-heap on due/weight
	due     []uint64   // 2k-1 for the member's next pick, the k-th
	weights []uint64   // the members' weights divided by their GCD
}

// NewRoundRobin builds a round-robin picker over the eligible members of s.
func NewRoundRobin(s Set) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	return newRoundRobin(members)
}

// newRoundRobin builds a round robin over members, which are eligible.
func newRoundRobin(members Set) *RoundRobin {
	rr := &RoundRobin{members: members, limited: members.Limited()}
	g := uint32(0)
	for _, m := range members {
		rr.total += int64(m.Weight)
		g = gcd(g, m.Weight)
	}
	rr.weights = make([]uint64, len(members))
	var cycle int64
	for i, m := range members {
		rr.weights[i] = uint64(m.Weight / g)
		cycle += int64(m.Weight / g)
	}
	if cycle <= maxSmooth && len(members) <= 1<<16 {
		rr.schedule = smoothSchedule(members, rr.weights, cycle)
		rr.next.Store(firstPick(uint64(cycle)))
		return rr
	}
	rr.heap = make([]int32, len(members))
	rr.due = make([]uint64, len(members))
	for i := range members {
		rr.heap[i] = int32(i)
		rr.due[i] = 1
	}
	for i := len(rr.heap)/2 - 1; i >= 0; i-- {
		rr.down(i)
	}
	if cycle <= maxSchedule && len(members) <= 1<<16 {
		rr.schedule = make([]uint16, cycle)
		for k := range rr.schedule {
			rr.schedule[k] = uint16(rr.pop())
		}
		rr.heap, rr.due = nil, nil
		rr.next.Store(firstPick(uint64(cycle)))
		return rr
	}
	// No schedule to start in: the heap runs on by a random number of
	// picks instead, fewer than maxSkip so that a rebuild stays cheap.
	for range firstPick(uint64(min(cycle, maxSkip))) {
		rr.pop()
	}
	return rr
}

// maxSkip bounds the picks a round robin without a schedule runs on by
// when it starts (firstPick).
const maxSkip = 4096

// firstPick is where in a cycle of n picks a new round robin starts: at
// random, as Envoy's does. A picker is built anew at every change of its
// cluster (an apply, an endpoint's health, a slow-start step), on every
// node of a group at once; each starting at the cycle's first pick would
// send the first endpoint a burst from the whole fleet, and a cluster
// whose changes come faster than its requests would see the first
// endpoint alone. Tests set it to start at 0.
var firstPick = func(n uint64) uint64 { return rand.Uint64N(n) }

// pop returns the member whose next pick is due first and moves its
// deadline on.
func (rr *RoundRobin) pop() int {
	i := rr.heap[0]
	rr.due[i] += 2
	rr.down(0)
	return int(i)
}

// smoothSchedule runs smooth weighted round robin for one cycle.
func smoothSchedule(members Set, weights []uint64, total int64) []uint16 {
	scores := make([]int64, len(members))
	schedule := make([]uint16, total)
	for k := range schedule {
		best := 0
		for i := range members {
			scores[i] += int64(weights[i])
			if scores[i] > scores[best] {
				best = i
			}
		}
		scores[best] -= total
		schedule[k] = uint16(best)
	}
	return schedule
}

// before orders the deadline heap: due_a/weight_a, then snapshot order.
func (rr *RoundRobin) before(a, b int32) bool {
	l := rr.due[a] * rr.weights[b]
	r := rr.due[b] * rr.weights[a]
	return l < r || l == r && a < b
}

func (rr *RoundRobin) down(i int) {
	h := rr.heap
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && rr.before(h[c+1], h[c]) {
			c++
		}
		if !rr.before(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// Pick returns the next endpoint of the sequence.
func (rr *RoundRobin) Pick(Request) (*upstream.Endpoint, error) {
	var i int
	if rr.schedule != nil {
		n := rr.next.Add(1) - 1
		i = int(rr.schedule[n%uint64(len(rr.schedule))])
	} else {
		rr.mu.Lock()
		i = rr.pop()
		rr.mu.Unlock()
	}
	if rr.limited && rr.members[i].full() {
		if i = rr.members.freeFrom(i + 1); i < 0 {
			return nil, ErrFull
		}
	}
	return rr.members[i].Endpoint, nil
}

var _ Picker = (*RoundRobin)(nil)
