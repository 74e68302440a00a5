package rules

import "net/netip"

// SourceSet is a list of addresses and prefixes, written as match.source
// takes them (snapshot.ParseSource), compiled for lookups that are a
// binary search however long the list. Listeners use it for the peers
// they trust with PROXY headers.
type SourceSet struct{ set *ipSet }

// CompileSources compiles sources; its error names each one that does
// not parse.
func CompileSources(sources []string) (*SourceSet, error) {
	set, err := newIPSet(sources)
	if err != nil {
		return nil, err
	}
	return &SourceSet{set}, nil
}

// Contains reports whether a is in the set; an IPv4-mapped IPv6 address
// counts as IPv4.
func (s *SourceSet) Contains(a netip.Addr) bool { return s.set.contains(a) }
