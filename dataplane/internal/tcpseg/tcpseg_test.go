package tcpseg

import "testing"

func TestFit(t *testing.T) {
	for _, tc := range []struct{ n, mss, want int }{
		{65536, 65483, 65483}, // loopback over IPv4: one segment
		{65536, 65464, 65464}, // over IPv6
		{65536, 32768, 65536}, // two, early in a connection
		{65536, 1448, 65160},  // Ethernet: 45 segments
		{69632, 65483, 65483},
		{65536, 0, 65536},     // not known
		{16384, 65483, 16384}, // less than a segment: one at most
		{65483, 65483, 65483},
	} {
		if got := Fit(tc.n, tc.mss); got != tc.want {
			t.Errorf("Fit(%d, %d) = %d, want %d", tc.n, tc.mss, got, tc.want)
		}
	}
}
