package rules

import (
	"net/netip"
	"testing"
)

func TestSources(t *testing.T) {
	s, err := NewSources([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.200.0.1": true, "11.0.0.1": false, "192.0.2.7": true, "192.0.2.8": false,
		"2001:db8::1": true, "2001:db9::1": false, "::ffff:10.1.0.1": true,
	} {
		if got := s.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	if _, err := NewSources([]string{"10.0.0.1/8"}); err == nil {
		t.Error("a prefix with host bits set was accepted")
	}
}
