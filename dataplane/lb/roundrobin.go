package lb

import (
	"sync"
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// maxSchedule bounds the precomputed round-robin schedule. A cluster whose
// weights sum to more falls back to computing each pick under a lock.
const maxSchedule = 4096

// RoundRobin is smooth weighted round robin, the algorithm of nginx and of
// HAProxy's "roundrobin": each pick adds every member's weight to its
// running score, takes the member with the highest score and subtracts the
// total from it. Weights 5:1:1 give a a b a c a a, never a a a a a b c, so
// no endpoint receives a burst.
//
// The sequence repeats every sum(weights) picks, so for small sums it is
// computed once when the picker is built and Pick is one atomic increment.
type RoundRobin struct {
	members  []Member
	schedule []uint16 // indexes into members; nil when the sum is too large
	next     atomic.Uint64

	mu     sync.Mutex // guards scores when schedule is nil
	scores []int64
	total  int64
}

// NewRoundRobin builds a round-robin picker over the eligible members of s.
func NewRoundRobin(s Set) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	rr := &RoundRobin{members: members, scores: make([]int64, len(members))}
	for _, m := range members {
		rr.total += int64(m.Weight)
	}
	if rr.total <= maxSchedule && len(members) <= 1<<16 {
		rr.schedule = make([]uint16, rr.total)
		for i := range rr.schedule {
			rr.schedule[i] = uint16(rr.step())
		}
	}
	return rr
}

// step advances the smooth weighted round robin by one pick.
func (rr *RoundRobin) step() int {
	best := 0
	for i, m := range rr.members {
		rr.scores[i] += int64(m.Weight)
		if rr.scores[i] > rr.scores[best] {
			best = i
		}
	}
	rr.scores[best] -= rr.total
	return best
}

// Pick returns the next endpoint of the sequence.
func (rr *RoundRobin) Pick() (*upstream.Endpoint, error) {
	if rr.schedule != nil {
		n := rr.next.Add(1) - 1
		return rr.members[rr.schedule[n%uint64(len(rr.schedule))]].Endpoint, nil
	}
	rr.mu.Lock()
	i := rr.step()
	rr.mu.Unlock()
	return rr.members[i].Endpoint, nil
}

var _ Picker = (*RoundRobin)(nil)
