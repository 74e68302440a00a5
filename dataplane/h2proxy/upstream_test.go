package h2proxy

import (
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestReceiveBufferChangeStartsNewPool: once an endpoint's receive buffer
// changes, its requests go to a new pool (dialed with the new buffer), and
// the janitor takes the old pool for stale, so it closes that pool's
// connections as they fall idle.
func TestReceiveBufferChangeStartsNewPool(t *testing.T) {
	u := NewUpstream(nil)
	defer u.Close()
	ep := upstream.New("c", "e", "127.0.0.1:9")
	var none netip.AddrPort
	before := u.pool(ep, none, none)
	if again := u.pool(ep, none, none); again != before {
		t.Fatal("two requests with nothing changed got different pools")
	}
	var oldKey poolKey
	u.mu.Lock()
	for k, p := range u.pools {
		if p == before {
			oldKey = k
		}
	}
	u.mu.Unlock()
	if u.stale(oldKey) {
		t.Error("the pool in use is stale")
	}

	ep.SetReceiveBuffer(64 << 10)
	after := u.pool(ep, none, none)
	if after == before {
		t.Error("after the receive buffer changed, requests still go to the pool of the old one")
	}
	if !u.stale(oldKey) {
		t.Error("after the receive buffer changed, the old pool is not stale: its idle connections would live on")
	}
}
