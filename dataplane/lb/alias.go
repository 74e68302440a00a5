package lb

import (
	"math/bits"
	"math/rand/v2"
)

// aliasTable draws a member index at random in proportion to the members'
// weights in O(1), with Vose's alias method (M. D. Vose, "A linear algorithm
// for generating random numbers with a given distribution", IEEE TSE 1991;
// https://www.keithschwarz.com/darts-dice-coins/): column i is taken with
// probability keep/2^32 and otherwise gives way to its alias. The table is
// built in integer arithmetic, so it is exact to 2^-32.
type aliasTable []aliasEntry

type aliasEntry struct {
	keep  uint32 // column i keeps the draw when the coin is below keep
	alias uint32
}

func newAliasTable(members Set) aliasTable {
	n := uint64(len(members))
	var total uint64
	for _, m := range members {
		total += uint64(m.Weight)
	}
	// Scaled so the average column is exactly total.
	p := make([]uint64, n)
	var small, large []uint32
	for i, m := range members {
		p[i] = uint64(m.Weight) * n
		if p[i] < total {
			small = append(small, uint32(i))
		} else {
			large = append(large, uint32(i))
		}
	}
	t := make(aliasTable, n)
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		hi, lo := bits.Mul64(p[s], 1<<32)
		keep, _ := bits.Div64(hi, lo, total)
		t[s] = aliasEntry{keep: uint32(keep), alias: l}
		p[l] -= total - p[s]
		if p[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left is exactly average (or off by rounding): keeps itself.
	for _, i := range append(small, large...) {
		t[i] = aliasEntry{keep: ^uint32(0), alias: i}
	}
	return t
}

// draw returns a random member index, weighted. It uses the goroutine-safe
// top-level math/rand/v2 source, which is per-thread in the runtime and
// needs no lock: the high half of one 64-bit draw picks the column
// (Lemire's multiply-shift), the low half is the coin.
func (t aliasTable) draw() int {
	r := rand.Uint64()
	i := (r >> 32) * uint64(len(t)) >> 32
	e := t[i]
	if uint32(r) < e.keep {
		return int(i)
	}
	return int(e.alias)
}
