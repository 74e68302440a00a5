package meter

import (
	"sync"
	"sync/atomic"
	"time"
)

// SettleEvery is how often the bytes of an exchange that moves them for
// long (a TCP session, a WebSocket or other tunnel) are counted in the
// meters while it lasts: they show within that of moving, not only when
// it ends.
const SettleEvery = time.Second

// Flows counts the bytes of such an exchange, Up from the client and Down
// to it, and which of them the meters counted already, so that each is
// counted once whether a settle while the exchange lasts or its end takes
// it.
type Flows struct {
	Up, Down Flow
	// mu is held by Settle from taking the bytes to counting them, so
	// that once a settle returned, every byte taken before it began is
	// in the meters, whichever settle took it.
	mu sync.Mutex
}

// Flow counts the bytes of one direction of Flows.
type Flow struct {
	n       atomic.Int64
	settled int64 // the bytes of n Settle took; under Flows.mu
}

// Add counts n more bytes. Only one goroutine at a time may call it.
func (f *Flow) Add(n int64) { f.n.Store(f.n.Load() + n) }

// Total is every byte counted.
func (f *Flow) Total() uint64 { return uint64(f.n.Load()) }

// take returns the bytes counted since it last ran, and takes them.
func (f *Flow) take() uint64 {
	n := f.n.Load()
	d := n - f.settled
	f.settled = n
	return uint64(d)
}

// EndpointMeter counts an endpoint's bytes: in from it, out to it
// (upstream.Endpoint, which counts them in its cluster's meter too).
type EndpointMeter interface {
	Transferred(in, out uint64)
}

// Settle counts the bytes counted since the last Settle in ep and in l
// (nil: none), the listener's.
func (f *Flows) Settle(ep EndpointMeter, l *Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	up, down := f.Up.take(), f.Down.take()
	if up+down == 0 {
		return
	}
	ep.Transferred(down, up)
	if l != nil {
		l.Transferred(up, down)
	}
}
