package lb

import (
	"math/bits"
	"slices"
)

// Ring sizing: a member has perWeight points per unit of weight (weights
// divided by their GCD first), the largest power of two up to
// ringMaxPerWeight that would keep the ring within ringMaxPoints with
// every member in it (so 10,000 members of equal weight get 64 points
// each). A member's share of the circle deviates from its weight by about
// 1/sqrt(its points): 1.5% with 4096 points, 12% with 64.
//
// The number of points of a member must not depend on the other members'
// state: if one member going down gave the survivors more points, those
// would take keys from each other. So the GCD and the sum that set
// perWeight are taken over the whole set as configured, members down,
// backups and those without weight included, at their full weights
// (Member.Full): health changes and slow starts move only the keys of the
// member they concern, and a slow start's ramp adds points to that member
// alone (its points are always a prefix of its full set). A change of
// the configured set moves keys between the others only when it changes
// the GCD of the weights, or when the sum of the weights crosses a power
// of two above ringMaxPoints/ringMaxPerWeight (256).
const (
	ringMaxPerWeight = 4096
	ringMaxPoints    = 1 << 20
)

// hashRing is a ketama-style consistent hash ring (D. Karger et al.,
// "Consistent Hashing and Random Trees", STOC 1997,
// https://dl.acm.org/doi/10.1145/258533.258660; libketama's layout, as
// HAProxy's "consistent" hash-type): each member owns a number of points on
// a 64-bit circle proportional to its weight, and a key belongs to the
// first point at or after its hash. Removing one member of n hands only
// its own arcs, about 1/n of the keys, to the points that follow them.
//
// A point is one uint64: the high bits are its position, the low idxBits
// the member index, so the ring is one sorted slice. A bucket index over
// the top bits of the position narrows each lookup to a handful of points,
// a few cache misses even for a ring of a million points.
type hashRing struct {
	points  []uint64
	idxBits uint
	shift   uint     // 64 - bucket bits
	buckets []uint32 // buckets[b] is the first point whose top bits are ≥ b
}

// newHashRing builds the ring of members, the eligible members of all
// (see the sizing above).
func newHashRing(all, members Set) hashRing {
	g := uint32(0)
	for i := range all {
		g = gcd(g, all[i].fullWeight())
	}
	var total uint64
	for i := range all {
		total += uint64(all[i].fullWeight() / g)
	}
	perWeight := uint64(ringMaxPerWeight)
	for perWeight > 1 && perWeight*total > ringMaxPoints {
		perWeight /= 2
	}
	idxBits := uint(max(1, bits.Len(uint(len(members)-1))))
	mask := uint64(1)<<idxBits - 1
	var size uint64
	for _, m := range members {
		size += ringPoints(m.Weight, g, perWeight)
	}
	points := make([]uint64, 0, size)
	for i, m := range members {
		n := ringPoints(m.Weight, g, perWeight)
		seed := HashString(m.Endpoint.Name)
		for j := range n {
			points = append(points, mix64(seed+j*0x9e3779b97f4a7c15)&^mask|uint64(i))
		}
	}
	slices.Sort(points)
	bucketBits := uint(max(1, bits.Len(uint(len(points)))-3))
	r := hashRing{points: points, idxBits: idxBits, shift: 64 - bucketBits}
	r.buckets = make([]uint32, 1<<bucketBits+1)
	p := 0
	for b := range r.buckets {
		for p < len(points) && points[p]>>r.shift < uint64(b) {
			p++
		}
		r.buckets[b] = uint32(p)
	}
	return r
}

// ringPoints is how many points a member of weight w has on a ring of
// perWeight points per g of weight: at least one, so that a slow start's
// first step puts the member on the ring.
func ringPoints(w, g uint32, perWeight uint64) uint64 {
	return max(1, uint64(w)*perWeight/uint64(g))
}

// search returns the index of the first point at or after hash x, wrapping
// around the circle.
func (r *hashRing) search(x uint64) int {
	key := x &^ (uint64(1)<<r.idxBits - 1)
	b := x >> r.shift
	lo, hi := int(r.buckets[b]), int(r.buckets[b+1])
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

// member returns the member index of point j.
func (r *hashRing) member(j int) int {
	return int(r.points[j] & (uint64(1)<<r.idxBits - 1))
}
