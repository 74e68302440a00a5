package lb

import (
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// HashMethod is how a HASH picker maps a request's hash to an endpoint.
type HashMethod int

const (
	// HashMap is HAProxy's default "map-based" hash-type: a table in
	// which each member has as many slots as its weight (reduced by the
	// weights' GCD), indexed by hash mod table size. It is the cheapest and
	// spreads keys exactly by weight, but adding or removing one member
	// remaps most keys.
	HashMap HashMethod = iota
	// HashMaglev is a Maglev lookup table (see newMaglevTable): as even as
	// the map, O(1) lookups, and removing one member of n moves about 1/n
	// of the keys (plus a few from survivors). Building it takes about 50ms
	// for 10,000 members.
	HashMaglev
	// HashRing is a ketama-style consistent hash ring (see hashRing),
	// HAProxy's "consistent" hash-type: strictly minimal disruption (only
	// the removed member's keys move), less even than Maglev for large
	// sets; building it takes about 70ms for 10,000 members (sorting the
	// points).
	HashRing
)

func (m HashMethod) String() string {
	switch m {
	case HashMap:
		return "map-based"
	case HashMaglev:
		return "maglev"
	case HashRing:
		return "ring"
	}
	return fmt.Sprintf("HashMethod(%d)", int(m))
}

// hashWalk is how many further table entries or ring points a HASH pick
// tries when its endpoint is full or over its bounded load, before it scans
// the members in snapshot order.
const hashWalk = 16

// exactLoad is the largest set whose total in-flight work is summed on
// every bounded-load check; larger sets use a sum refreshed every
// len/loadRefresh such checks, about loadRefresh endpoint reads per check.
const (
	exactLoad   = 16
	loadRefresh = 8
)

// Hash is HAProxy's "hash" balance: a request with a hash key (source
// address, URI, header, cookie, URL parameter: the proxy computes it, see
// Request) always goes to the same endpoint while the set does not change,
// which keeps caches and sessions on one server. How the hash maps to an
// endpoint is the HashMethod. A request without a key is balanced with
// smooth round robin over the same members.
//
// With a balance factor f (a percentage, HAProxy's "hash-balance-factor"),
// loads are bounded as in "Consistent Hashing with Bounded Loads"
// (V. Mirrokni, M. Thorup, M. Zadimoghaddam, SODA 2018,
// https://arxiv.org/abs/1608.01350): an endpoint of weight w may hold at
// most c = ceil(f/100 × (T+1) × w / W) of the T in-flight requests of the
// set (W the sum of the weights; c = ceil(f/100 × (T+1) / n) for equal
// weights), so it is skipped when its Inflight has reached c (HAProxy's
// "served < slots": once the work is counted in, no endpoint holds more
// than c). The next candidate is then tried: the next member for the map,
// the next table entry for Maglev, the next ring point for the ring; after
// hashWalk of them, the members in snapshot order. Because the bounds sum
// to more than T, some endpoint is always under its bound, so a hot key
// spills onto others instead of flooding one endpoint. f below 100 is
// taken as 100.
//
// Full members (MaxConn reached) are skipped the same way. An endpoint
// over its bound is still used when every endpoint under its bound is
// full; ErrFull is returned only when all are full.
//
// T is summed over the members on each check for sets of up to exactLoad
// members, and only when the candidate has work in flight; larger sets use
// a sum refreshed every n/loadRefresh checks, so there the bound is
// approximate (it lags changes by that many checks).
type Hash struct {
	members Set
	limited bool
	method  HashMethod
	factor  uint64 // balance factor in percent; 0 when unbounded
	weights uint64 // sum of the members' weights
	rr      *RoundRobin

	ends  []uint64 // HashMap: prefix sums of the GCD-reduced weights
	table []uint32 // HashMaglev: member index per slot
	ring  hashRing // HashRing

	checks  atomic.Uint64 // bounded-load checks, for refreshing load
	load    atomic.Int64  // cached total in-flight work, large sets
	refresh uint64
}

// NewHash builds a hash picker over the eligible members of s. A
// balanceFactor of 0 disables bounded load; otherwise it is a percentage,
// typically 125 to 200.
func NewHash(s Set, method HashMethod, balanceFactor uint32) Picker {
	members := s.Eligible()
	if len(members) == 0 {
		return None{}
	}
	h := &Hash{
		members: members,
		limited: members.Limited(),
		method:  method,
		rr:      newRoundRobin(members),
		refresh: uint64(max(1, len(members)/loadRefresh)),
	}
	if balanceFactor > 0 {
		h.factor = uint64(max(balanceFactor, 100))
	}
	for _, m := range members {
		h.weights += uint64(m.Weight)
	}
	switch method {
	case HashMaglev:
		h.table = newMaglevTable(members)
	case HashRing:
		h.ring = newHashRing(s, members)
	default:
		h.method = HashMap
		h.ends = mapEnds(members)
	}
	return h
}

// mapEnds returns the prefix sums of the weights divided by their GCD, the
// map-based table without storing each slot.
func mapEnds(members Set) []uint64 {
	g := uint32(0)
	for _, m := range members {
		g = gcd(g, m.Weight)
	}
	ends := make([]uint64, len(members))
	var sum uint64
	for i, m := range members {
		sum += uint64(m.Weight / g)
		ends[i] = sum
	}
	return ends
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick returns the endpoint of r's hash, or round robin without one.
func (h *Hash) Pick(r Request) (*upstream.Endpoint, error) {
	if !r.HasHash {
		return h.rr.Pick(r)
	}
	// Mixed again so that a caller's weak hash (say, an IPv4 address as a
	// number) still spreads over the high bits the ring and Maglev use.
	x := mix64(r.Hash)
	var i int
	var pos uint64
	switch h.method {
	case HashMap:
		i = owner(h.ends, x%h.ends[len(h.ends)-1])
	case HashMaglev:
		pos, _ = bits.Mul64(x, uint64(len(h.table)))
		i = int(h.table[pos])
	case HashRing:
		pos = uint64(h.ring.search(x))
		i = h.ring.member(int(pos))
	}
	if !h.limited && h.factor == 0 {
		return h.members[i].Endpoint, nil
	}
	return h.walk(i, pos)
}

// verdict of a bounded-load check.
const (
	accept = iota
	overBound
	isFull
)

// walk tries candidates from member i (at table entry or ring point pos)
// until one is neither full nor over its bound.
func (h *Hash) walk(i int, pos uint64) (*upstream.Endpoint, error) {
	load := int64(-1) // the total, summed at most once per pick
	spare := -1       // a member over its bound but not full
	try := func(i int) bool {
		switch h.check(i, &load) {
		case accept:
			return true
		case overBound:
			if spare < 0 {
				spare = i
			}
		}
		return false
	}
	first := i
	switch h.method {
	case HashMaglev:
		for range min(hashWalk, len(h.table)) {
			if try(i) {
				return h.members[i].Endpoint, nil
			}
			if pos++; pos == uint64(len(h.table)) {
				pos = 0
			}
			i = int(h.table[pos])
		}
	case HashRing:
		for range min(hashWalk, len(h.ring.points)) {
			if try(i) {
				return h.members[i].Endpoint, nil
			}
			if pos++; pos == uint64(len(h.ring.points)) {
				pos = 0
			}
			i = h.ring.member(int(pos))
		}
	}
	n := len(h.members)
	for k := range n {
		j := first + k
		if j >= n {
			j -= n
		}
		if try(j) {
			return h.members[j].Endpoint, nil
		}
	}
	if spare >= 0 {
		return h.members[spare].Endpoint, nil
	}
	return nil, ErrFull
}

// check tells whether member i may take the work. *load caches the total
// in-flight work for the rest of the pick; -1 means not yet known.
func (h *Hash) check(i int, load *int64) int {
	m := &h.members[i]
	if h.limited && m.full() {
		return isFull
	}
	if h.factor == 0 {
		return accept
	}
	in := m.Endpoint.Inflight()
	if in <= 0 {
		return accept // every bound is at least 1
	}
	if *load < 0 {
		*load = h.totalLoad()
	}
	t := max(*load, in)
	// in < ceil(f/100 × (t+1) × w/W)  ⇔  in × 100 × W < f × (t+1) × w
	if uint64(in)*100*h.weights < h.factor*uint64(t+1)*uint64(m.Weight) {
		return accept
	}
	return overBound
}

// totalLoad returns the in-flight work of the set, exact for small sets.
func (h *Hash) totalLoad() int64 {
	if len(h.members) > exactLoad && h.checks.Add(1)%h.refresh != 1%h.refresh {
		return h.load.Load()
	}
	var t int64
	for i := range h.members {
		t += h.members[i].Endpoint.Inflight()
	}
	t = max(t, 0)
	h.load.Store(t)
	return t
}

var _ Picker = (*Hash)(nil)
