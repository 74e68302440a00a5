package lb

import (
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// leastConnExact is the largest set LeastConn scans exactly; larger sets
// use weighted power of two choices. Scanning costs about a nanosecond per
// member, so up to 32 members the exact answer is as cheap as two random
// draws.
const leastConnExact = 32

// LeastConn is HAProxy's "leastconn": the work goes to the member with the
// least in-flight work relative to its weight (inflight_a × weight_b is
// compared with inflight_b × weight_a, no division). Ties are broken round
// robin: each pick starts its scan one member further, so idle members take
// turns.
//
// HAProxy keeps the members in a tree ordered by load, which needs a lock
// on every pick and release. Sluice's endpoints count their own in-flight
// work, so for sets larger than leastConnExact an exact scan would cost
// O(n) per pick; there LeastConn takes the better of two members drawn in
// proportion to their weight, power of two choices as Envoy's LEAST_REQUEST
// does for unequal weights (Mitzenmacher 2001, see Random). It is O(1),
// lock-free, and keeps the load within a small additive gap of the least
// loaded member with high probability.
//
// Full members (MaxConn reached) are skipped; ErrFull is returned only when
// every member is full.
type LeastConn struct {
	members Set
	limited bool
	next    atomic.Uint64
	table   aliasTable // nil when the set is scanned exactly
}

// NewLeastConn builds a least-connections picker over the eligible members
// of s.
func NewLeastConn(s Set) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	p := &LeastConn{members: members, limited: members.Limited()}
	if len(members) > leastConnExact {
		p.table = newAliasTable(members)
	}
	return p
}

// Pick returns the least loaded member.
func (p *LeastConn) Pick(Request) (*upstream.Endpoint, error) {
	if p.table != nil {
		if i := p.twoChoices(); i >= 0 {
			return p.members[i].Endpoint, nil
		}
	}
	// Exact scan, also the fallback when both draws were full.
	n := len(p.members)
	start := int(p.next.Add(1) % uint64(n))
	best, bestIn := -1, int64(0)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		m := &p.members[i]
		if p.limited && m.full() {
			continue
		}
		in := m.Endpoint.Inflight()
		if in == 0 {
			return m.Endpoint, nil // nothing is lighter
		}
		if best < 0 || lighter(in, m.Weight, bestIn, p.members[best].Weight) {
			best, bestIn = i, in
		}
	}
	if best < 0 {
		return nil, ErrFull
	}
	return p.members[best].Endpoint, nil
}

// twoChoices returns the lighter of two weighted random draws that are not
// full, or -1 when both are.
func (p *LeastConn) twoChoices() int {
	a, b := p.table.draw(), p.table.draw()
	ma, mb := &p.members[a], &p.members[b]
	if p.limited {
		switch fa, fb := ma.full(), mb.full(); {
		case fa && fb:
			return -1
		case fa:
			return b
		case fb:
			return a
		}
	}
	if lighter(mb.Endpoint.Inflight(), mb.Weight, ma.Endpoint.Inflight(), ma.Weight) {
		return b
	}
	return a
}

var _ Picker = (*LeastConn)(nil)
