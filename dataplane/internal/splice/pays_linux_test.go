package splice

import (
	"fmt"
	"net"
	"testing"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestOnThisHost: a peer at a loopback address or at the connection's own
// address is on this host, however the address is written; any other is
// not.
func TestOnThisHost(t *testing.T) {
	for _, tc := range []struct {
		local, remote string
		want          bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.8.9.10", true},
		{"10.0.0.5", "127.0.0.1", true},
		{"::1", "::1", true},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", true},
		{"10.0.0.5", "10.0.0.5", true}, // the host's own address
		{"::ffff:10.0.0.5", "10.0.0.5", true},
		{"2001:db8::1", "2001:db8::1", true},
		{"10.0.0.5", "10.0.0.6", false},
		{"::ffff:10.0.0.5", "::ffff:10.0.0.6", false},
		{"2001:db8::1", "2001:db8::2", false},
	} {
		if got := onThisHost(net.ParseIP(tc.local), net.ParseIP(tc.remote)); got != tc.want {
			t.Errorf("from %s to %s: on this host %v, want %v", tc.local, tc.remote, got, tc.want)
		}
	}
}

// TestPaysNotOnLoopback: under Auto, bytes from a loopback peer are not
// worth splicing; under Always they are, under Never none are.
func TestPaysNotOnLoopback(t *testing.T) {
	c, s := loopback.Pair(t)
	defer SetMode(Auto)
	for _, tc := range []*net.TCPConn{c, s} {
		for m, want := range map[Mode]bool{Auto: false, Always: true, Never: false} {
			SetMode(m)
			if got := Pays(tc); got != want {
				t.Errorf("mode %d, %v to %v: Pays %v, want %v", m, tc.LocalAddr(), tc.RemoteAddr(), got, want)
			}
		}
	}
}

// TestParseMode: the three names, and nothing else.
func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"auto": Auto, "always": Always, "never": Never} {
		if m, err := ParseMode(s); m != want || err != nil {
			t.Errorf("ParseMode(%q) = %d, %v; want %d", s, m, err, want)
		}
	}
	for _, s := range []string{"", "Auto", "on", "off"} {
		if _, err := ParseMode(s); err == nil || err.Error() != fmt.Sprintf("%q is not auto, always or never", s) {
			t.Errorf("ParseMode(%q): error %v", s, err)
		}
	}
}
