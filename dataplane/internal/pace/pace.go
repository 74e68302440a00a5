// Package pace paces an accept loop while many new connections are being
// set up, so that a burst of connections waits in the kernel's accept
// queue rather than as goroutines.
//
// Without it, a burst faster than the node sets connections up (a few tens
// of microseconds each, mostly the kernel's) turns into as many goroutines
// at once, each holding a stack (a dial is deep) and the runtime's record
// of a goroutine, which is never freed, and each dialing an endpoint
// connection whose poll descriptor the runtime keeps for good: most of the
// memory an idle connection seemed to cost, long after the burst. With it,
// the burst waits in the kernel's accept queue, which costs the process
// nothing. HAProxy bounds its accepts per event-loop turn the same way
// (tune.maxaccept).
//
// Batch, the package's other pacing, holds a write until the goroutines
// already runnable have run, so that one poll round's writes follow its
// reads.
package pace

import "sync/atomic"

// After is how many connections may be setting up before Gate.Go waits
// for a barrier each time.
const After = 64

// Gate counts the connections setting up; the zero value is ready.
type Gate struct {
	n atomic.Int32
}

// Go runs f on a new goroutine, counted as setting up a connection until
// f calls setUp (once the connection runs on its own: its first request
// answered, parked, handed on) or returns, whichever comes first; setUp
// may be called from any goroutine, more than once.
//
// While After or more are setting up, Go first waits until the runtime
// has run what is queued and polled the network once (Barrier). The
// barrier waits for the CPU only, never for the network: setups waiting on
// a slow endpoint or a slow client go on counting, but every barrier ends
// as soon as the runtime is idle, so accepting goes on at the pace the
// node can take.
func (g *Gate) Go(f func(setUp func())) {
	if g.n.Load() >= After {
		Barrier()
	}
	g.n.Add(1)
	go func() {
		var once atomic.Bool
		setUp := func() {
			if once.CompareAndSwap(false, true) {
				g.n.Add(-1)
			}
		}
		defer setUp()
		f(setUp)
	}()
}

// InFlight is how many connections are setting up.
func (g *Gate) InFlight() int { return int(g.n.Load()) }
