package lb

import (
	"math/rand/v2"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// DefaultDraws is the number of random draws of NewRandom when draws < 1,
// as HAProxy's "random" (which is "random(2)").
const DefaultDraws = 2

// Random is HAProxy's "random(<draws>)", the power of d choices (M.
// Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
// IEEE TPDS 2001, https://www.eecs.harvard.edu/~michaelm/postscripts/tpds2001.pdf):
// draw d members at random in proportion to their weight and give the work
// to the one with the least in-flight work per weight, the first drawn on
// a tie. d = 1 is plain weighted random; d = 2 already brings the maximum
// load from O(log n / log log n) down to O(log log n) while staying O(1)
// and lock-free at any size. Draws use an alias table (see aliasTable).
//
// Full members (MaxConn reached) never win a draw. When every draw is full
// the members are scanned from a random start for a free slot, so ErrFull
// is only returned when they are all full.
type Random struct {
	members Set
	limited bool
	draws   int
	table   aliasTable
}

// NewRandom builds a power-of-d-choices picker over the eligible members of
// s; draws < 1 means DefaultDraws.
func NewRandom(s Set, draws int) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	if draws < 1 {
		draws = DefaultDraws
	}
	return &Random{members: members, limited: members.Limited(), draws: draws, table: newAliasTable(members)}
}

// Pick returns the least loaded of d weighted random draws.
func (p *Random) Pick(Request) (*upstream.Endpoint, error) {
	best, bestIn := -1, int64(0)
	for range p.draws {
		i := p.table.draw()
		m := &p.members[i]
		if p.limited && m.full() {
			continue
		}
		if p.draws == 1 {
			return m.Endpoint, nil
		}
		in := m.Endpoint.Inflight()
		if best < 0 || lighter(in, m.Weight, bestIn, p.members[best].Weight) {
			best, bestIn = i, in
		}
	}
	if best < 0 {
		if best = p.members.freeFrom(rand.IntN(len(p.members))); best < 0 {
			return nil, ErrFull
		}
	}
	return p.members[best].Endpoint, nil
}

var _ Picker = (*Random)(nil)
