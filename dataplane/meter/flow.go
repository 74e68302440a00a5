package meter

import (
	"sync/atomic"
	"time"
)

// SettleEvery is how often the bytes of an exchange that moves them for
// long (a TCP session, a WebSocket or other tunnel) are counted in the
// meters while it lasts: they show within that of moving, not only when
// it ends.
const SettleEvery = time.Second

// Flow counts the bytes of one direction of such an exchange, and which
// of them the meters counted already, so that each is counted once
// whether a settle while the exchange lasts or its end takes it.
type Flow struct {
	n, settled atomic.Int64
}

// Add counts n more bytes. Only one goroutine at a time may call it.
func (f *Flow) Add(n int64) { f.n.Store(f.n.Load() + n) }

// Total is every byte counted.
func (f *Flow) Total() uint64 { return uint64(f.n.Load()) }

// Settle returns the bytes counted since the last Settle, and takes them
// as settled.
func (f *Flow) Settle() uint64 {
	for {
		done := f.settled.Load()
		n := f.n.Load() // n only grows, and settled was an earlier n
		if n == done || f.settled.CompareAndSwap(done, n) {
			return uint64(n - done)
		}
	}
}
