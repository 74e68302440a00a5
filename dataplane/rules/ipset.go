package rules

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"

	"github.com/sluice-lb/sluice/snapshot"
)

// ipSet is a list of IP prefixes compiled into sorted, disjoint address
// ranges, one list per family, so that looking up an address is a binary
// search however long the list (a blacklist of 100,000 prefixes takes 17
// steps).
type ipSet struct {
	v4 []span[uint32]
	v6 []span[u128]
}

// span is the addresses lo to hi, both included.
type span[T any] struct{ lo, hi T }

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

func v6Number(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// newIPSet parses sources as snapshot.ParseSource does.
func newIPSet(sources []string) (*ipSet, error) {
	s := &ipSet{}
	var errs []error
	for _, src := range sources {
		p, err := snapshot.ParseSource(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.Addr().Is4() {
			b := p.Addr().As4()
			lo := binary.BigEndian.Uint32(b[:])
			size := uint32(1)<<(32-p.Bits()) - 1 // 1<<32 is 0: all ones for /0
			s.v4 = append(s.v4, span[uint32]{lo, lo | size})
			continue
		}
		lo := v6Number(p.Addr())
		hi := lo
		host := 128 - p.Bits()
		switch {
		case host >= 128:
			hi = u128{^uint64(0), ^uint64(0)}
		case host >= 64:
			hi.lo = ^uint64(0)
			hi.hi |= (uint64(1) << (host - 64)) - 1
		case host > 0:
			hi.lo |= (uint64(1) << host) - 1
		}
		s.v6 = append(s.v6, span[u128]{lo, hi})
	}
	s.v4 = mergeSpans(s.v4, cmp.Compare[uint32], func(a uint32) (uint32, bool) { return a + 1, a != ^uint32(0) })
	s.v6 = mergeSpans(s.v6, u128.cmp, u128.next)
	return s, errors.Join(errs...)
}

// mergeSpans sorts spans and joins those that overlap or touch.
func mergeSpans[T any](spans []span[T], compare func(a, b T) int, next func(T) (T, bool)) []span[T] {
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span[T]) int { return compare(a.lo, b.lo) })
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if after, ok := next(last.hi); !ok || compare(sp.lo, after) <= 0 {
			// Overlaps or touches (or last already reaches the top).
			if compare(sp.hi, last.hi) > 0 {
				last.hi = sp.hi
			}
			continue
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}

// contains reports whether a (IPv4-mapped IPv6 counts as IPv4) is in the
// set.
func (s *ipSet) contains(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return find(s.v4, binary.BigEndian.Uint32(b[:]), cmp.Compare[uint32])
	case a.Is6():
		return find(s.v6, v6Number(a), u128.cmp)
	}
	return false
}

// find reports whether x falls in one of the sorted, disjoint spans.
func find[T any](spans []span[T], x T, compare func(a, b T) int) bool {
	lo, hi := 0, len(spans)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch {
		case compare(x, spans[mid].lo) < 0:
			hi = mid
		case compare(x, spans[mid].hi) > 0:
			lo = mid + 1
		default:
			return true
		}
	}
	return false
}
