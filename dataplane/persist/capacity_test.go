package persist

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// A table that is far from full keeps every client, whatever their
// addresses: here sites numbered in the second octet (10.N.0.1) and IPv6
// hosts that differ only in their subnet (2001:db8:0:N::1), addresses that
// share their last bytes.
func TestTableKeepsClientsBelowSize(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		client func(i int) netip.Addr
		n      int
	}{
		{"sites", 1000, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i), 0, 1}) }, 200},
		{"subnets", 1000, func(i int) netip.Addr {
			var b [16]byte
			copy(b[:], netip.MustParseAddr("2001:db8::1").AsSlice())
			b[6], b[7] = byte(i>>8), byte(i)
			return netip.AddrFrom16(b)
		}, 200},
		{"small table", 50, func(i int) netip.Addr {
			// Addresses with no pattern in any byte.
			r := rand.New(rand.NewPCG(uint64(i), 1))
			return netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		}, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, clock := newTestTable(tt.size, time.Hour)
			a := upstream.New("web", "a", "10.0.0.1:80")
			for i := range tt.n {
				clock.advance(time.Millisecond)
				tab.Put(tt.client(i), a)
			}
			lost := 0
			for i := range tt.n {
				if tab.Get(tt.client(i)) != a {
					lost++
				}
			}
			if lost > 0 {
				t.Errorf("table of size %d lost %d of %d clients", tt.size, lost, tt.n)
			}
		})
	}
}

// Clients added from many goroutines at once leave the table at its size.
func TestTableBoundedConcurrent(t *testing.T) {
	const size = 100
	tab := NewTable(size, time.Hour)
	a := upstream.New("web", "a", "10.0.0.1:80")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				tab.Put(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}), a)
			}
		})
	}
	wg.Wait()
	if n := tab.Len(); n > size {
		t.Errorf("table of size %d holds %d entries", size, n)
	}
}
