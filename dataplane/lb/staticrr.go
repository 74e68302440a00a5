package lb

import (
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// StaticRR is HAProxy's "static-rr": weighted round robin whose only runtime
// state is a position in a cycle of sum(weights) picks, where each member
// takes a run as long as its weight (2:1 gives a a b). It is not smooth like
// RoundRobin, but it is lock-free at any size: the position is one atomic
// counter and the member owning it is found by binary search over the
// prefix sums of the weights.
//
// A full member (MaxConn reached) is skipped: its turn goes to the next
// member in snapshot order that has a free slot.
type StaticRR struct {
	members Set
	limited bool
	ends    []uint64 // ends[i] is the sum of the weights of members[:i+1]
	next    atomic.Uint64
}

// NewStaticRR builds a static round-robin picker over the eligible members
// of s.
func NewStaticRR(s Set) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	p := &StaticRR{members: members, limited: members.Limited(), ends: prefixSums(members)}
	p.next.Store(firstPick(p.ends[len(p.ends)-1])) // as RoundRobin starts
	return p
}

// prefixSums returns the running sums of the members' weights.
func prefixSums(members Set) []uint64 {
	ends := make([]uint64, len(members))
	var sum uint64
	for i, m := range members {
		sum += uint64(m.Weight)
		ends[i] = sum
	}
	return ends
}

// owner returns the index of the member whose run of slots holds pos, the
// first i with pos < ends[i]; pos must be below the last end.
func owner(ends []uint64, pos uint64) int {
	lo, hi := 0, len(ends)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ends[mid] <= pos {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Pick returns the member owning the next position of the cycle.
func (p *StaticRR) Pick(Request) (*upstream.Endpoint, error) {
	pos := (p.next.Add(1) - 1) % p.ends[len(p.ends)-1]
	i := owner(p.ends, pos)
	if p.limited && p.members[i].full() {
		if i = p.members.freeFrom(i + 1); i < 0 {
			return nil, ErrFull
		}
	}
	return p.members[i].Endpoint, nil
}

var _ Picker = (*StaticRR)(nil)
