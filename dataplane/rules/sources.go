package rules

import "net/netip"

// Sources is a list of addresses and CIDR prefixes, read as a match's
// source list is (snapshot.ParseSource) and looked up the same way, for
// what else needs such a list: the peers a listener trusts with forwarding
// headers (httpproxy.Config.TrustedPeers) and with PROXY headers.
type Sources struct{ set *ipSet }

// NewSources compiles list; an entry that does not parse is an error.
func NewSources(list []string) (*Sources, error) {
	set, err := newIPSet(list)
	if err != nil {
		return nil, err
	}
	return &Sources{set: set}, nil
}

// Contains reports whether a (IPv4-mapped IPv6 counts as IPv4) is in the
// list.
func (s *Sources) Contains(a netip.Addr) bool { return s.set.contains(a) }
