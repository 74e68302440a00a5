package snapshot

import "testing"

func TestClosest(t *testing.T) {
	for _, tt := range []struct {
		s          string
		candidates []string
		want       string
	}{
		{"wbe1", []string{"web1", "web2", "sorry"}, "web1"}, // a swapped pair
		{"weigth", []string{"weight", "backup", "name"}, "weight"},
		{"web3", []string{"web1", "web2"}, ""}, // either, or a new one
		{"web9", []string{"web1"}, "web1"},     // the one near name
		{"htp2", []string{"http2", "tls"}, "http2"},
		{"WEB1", []string{"web1", "web2"}, "web1"},            // case aside
		{"api", []string{"web1", "web2"}, ""},                 // nothing near
		{"web1", []string{"web1", "web2"}, ""},                // no typo at all
		{"statik", []string{"static", "static2"}, "static"},   // one nearest
		{"cache", []string{"cache1", "cache2", "caches"}, ""}, // three at 1
		{"a", []string{"c", "web"}, ""},                       // no letter kept
		{"ab", []string{"ac"}, "ac"},
		{"x", []string{"xy"}, "xy"},
	} {
		if got := Closest(tt.s, tt.candidates); got != tt.want {
			t.Errorf("Closest(%q, %q) = %q, want %q", tt.s, tt.candidates, got, tt.want)
		}
	}
}

func TestClosestName(t *testing.T) {
	for _, tt := range []struct {
		s          string
		candidates []string
		want       string
	}{
		{"wbe1", []string{"web1", "api"}, "web1"},
		{"web9", []string{"web1"}, ""},            // another instance, not a typo
		{"node-2", []string{"node-1"}, ""},        // likewise
		{"web10", []string{"web1", "api"}, ""},    // likewise
		{"wbe9", []string{"web9", "api"}, "web9"}, // a typo that keeps the digits
		{"web3", []string{"web1", "web2"}, ""},    // as Closest: a tie
	} {
		if got := ClosestName(tt.s, tt.candidates); got != tt.want {
			t.Errorf("ClosestName(%q, %q) = %q, want %q", tt.s, tt.candidates, got, tt.want)
		}
	}
}
