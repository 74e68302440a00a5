package lb

import (
	"math/bits"
	"slices"
)

// Ring sizing: a member has pointsPerWeight points per unit of weight
// (weights divided by their GCD first), the largest power of two up to
// ringMaxPerWeight that keeps the ring within ringMaxPoints (so 10,000
// members of equal weight get 64 points each). A member's share of the
// circle deviates from its weight by about 1/sqrt(its points): 1.5% with
// 4096 points, 12% with 64.
//
// The number of points of a member must not depend on the other members:
// if removing one member gave the survivors more points, those would take
// keys from each other. Here it changes only when the sum of the weights
// crosses a power of two above ringMaxPoints/ringMaxPerWeight (256).
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

func newHashRing(members Set) hashRing {
	g := uint32(0)
	for _, m := range members {
		g = gcd(g, m.Weight)
	}
	var total uint64
	for _, m := range members {
		total += uint64(m.Weight / g)
	}
	perWeight := uint64(ringMaxPerWeight)
	for perWeight > 1 && perWeight*total > ringMaxPoints {
		perWeight /= 2
	}
	idxBits := uint(max(1, bits.Len(uint(len(members)-1))))
	mask := uint64(1)<<idxBits - 1
	points := make([]uint64, 0, perWeight*total)
	for i, m := range members {
		n := uint64(m.Weight/g) * perWeight
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
