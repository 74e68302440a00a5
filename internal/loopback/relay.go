package loopback

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay forwards every TCP connection made to Addr to a target address,
// as a network between a client and its server would, until the test cuts
// it (Cut) or makes it fall silent (Silence).
type Relay struct {
	Addr   string
	silent atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

// NewRelay starts a relay to target on a fresh loopback port; it is cut
// when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	r := &Relay{}
	r.Addr = Serve(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		if !r.hold(c, up) {
			c.Close()
			up.Close()
			return
		}
		go r.pass(up, c)
		r.pass(c, up)
	})
	t.Cleanup(r.Cut)
	return r
}

// Cut closes every relayed connection and refuses new ones, as a peer
// that went away would: both ends see their connection closed.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// Mend ends a Cut, as a partition that heals: the relay takes new
// connections again. Those that Cut closed stay closed.
func (r *Relay) Mend() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = false
}

// Silence makes the relay pass nothing more either way while it keeps
// every connection open, as a partition or a crashed host would: each end
// hears nothing, and learns it only from its own timeouts.
func (r *Relay) Silence() { r.silent.Store(true) }

// hold records a relayed connection's two ends; false once cut.
func (r *Relay) hold(c, up net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.cut {
		r.conns = append(r.conns, c, up)
	}
	return !r.cut
}

// pass copies src to dst until src fails, dropping what it reads while
// the relay is silent; it then closes dst, which ends the other direction.
func (r *Relay) pass(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if r.silent.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
