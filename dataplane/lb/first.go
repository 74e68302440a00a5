package lb

import "github.com/sluice-lb/sluice/dataplane/upstream"

// First is HAProxy's "first": the first member in snapshot order that has a
// free slot (Inflight below MaxConn) takes the work, so load fills the
// endpoints one after another and the last ones can be powered down when
// idle. A member without MaxConn always has a free slot and takes
// everything that reaches it; only members before it ever fill.
//
// Pick is O(number of full members ahead of the one chosen): the scan
// starts at the first member on every pick, as HAProxy's does.
type First struct {
	members Set
}

// NewFirst builds a first-available picker over the eligible members of s.
func NewFirst(s Set) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	return &First{members: members}
}

// Pick returns the first member with a free slot, or ErrFull.
func (p *First) Pick(Request) (*upstream.Endpoint, error) {
	for i := range p.members {
		if !p.members[i].full() {
			return p.members[i].Endpoint, nil
		}
	}
	return nil, ErrFull
}

var _ Picker = (*First)(nil)
