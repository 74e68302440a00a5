package lb

// maglevMinSize is the table size for small sets, the prime Google's Maglev
// and Envoy use by default.
const maglevMinSize = 65537

// maglevSize returns the Maglev table size for n members: the smallest
// prime at least 100 × n, and at least maglevMinSize. With M ≥ 100n every
// member's share of the table is within about 1% of its weight.
func maglevSize(n int) int {
	m := max(100*n, maglevMinSize)
	for !isPrime(m) {
		m++
	}
	return m
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// newMaglevTable fills a Maglev lookup table (D. E. Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
// https://research.google/pubs/pub44824/, section 3.4): each member walks
// its own permutation of the table slots, (offset + j × skip) mod M, given
// by hashes of its name, and in turn claims its next slot that is still
// free. Because a member's permutation does not depend on the others,
// removing one member of n moves only about 1/n of the slots.
//
// Weights follow Envoy: a member of weight w takes a turn in w out of every
// maxWeight rounds, so its share of slots is proportional to its weight.
func newMaglevTable(members Set) []uint32 {
	m := uint64(maglevSize(len(members)))
	const empty = ^uint32(0)
	table := make([]uint32, m)
	for i := range table {
		table[i] = empty
	}
	type walker struct {
		pos, skip uint64
		due       uint64 // the round in which its next turn comes, × weight
	}
	walkers := make([]walker, len(members))
	var maxW uint64
	for i, mb := range members {
		h := HashString(mb.Endpoint.Name)
		walkers[i] = walker{pos: h % m, skip: mix64(h^0x9e3779b97f4a7c15)%(m-1) + 1}
		maxW = max(maxW, uint64(mb.Weight))
	}
	filled := uint64(0)
	for round := uint64(1); filled < m; round++ {
		for i := range walkers {
			w := &walkers[i]
			weight := uint64(members[i].Weight)
			if round*weight < w.due {
				continue
			}
			w.due += maxW
			for table[w.pos] != empty {
				if w.pos += w.skip; w.pos >= m {
					w.pos -= m
				}
			}
			table[w.pos] = uint32(i)
			if filled++; filled == m {
				break
			}
		}
	}
	return table
}
