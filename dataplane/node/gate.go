package node

import (
	"sync"
	"sync/atomic"
	"time"
)

// connGate caps the client connections held at once: a listener's
// max_connections (HAProxy's maxconn on a frontend), or the node's over
// all its listeners (sluice-dp --max-connections, HAProxy's global
// maxconn). An accept loop takes a slot for each connection (see
// listener.serve) and every connection gives its slot back when it ends.
// While every slot is taken the loop waits, so new connections wait in
// the kernel's accept queue rather than as goroutines and sockets of the
// node's.
type connGate struct {
	mu   sync.Mutex
	open int // slots taken: open connections, and a listener's accept under way
	max  int // 0: no cap
	// free is closed, and cleared, when a slot frees or the cap changes;
	// nil while nothing waits.
	free chan struct{}
	// full counts the times an accept loop found every slot taken: in the
	// listener's meter (countIn), or a count of the gate's own.
	full   *atomic.Uint64
	warned time.Time // when enter last called its onFull
}

// fullWarnEvery is how often, at most, a full gate has its accept loops
// say so (enter's onFull).
const fullWarnEvery = time.Minute

// enter takes a slot, waiting while every one is taken, until quit closes:
// then it returns false and takes nothing. When it finds every slot taken,
// and did not within fullWarnEvery, it calls onFull (if not nil) with the
// cap and the times the gate was found full, before it waits.
func (g *connGate) enter(quit <-chan struct{}, onFull func(max int, times uint64)) bool {
	g.mu.Lock()
	waited := false
	for g.max > 0 && g.open >= g.max {
		if !waited {
			waited = true
			times := g.counterLocked().Add(1)
			if onFull != nil && time.Since(g.warned) >= fullWarnEvery {
				g.warned = time.Now()
				max := g.max
				g.mu.Unlock()
				onFull(max, times)
				g.mu.Lock()
				continue
			}
		}
		if g.free == nil {
			g.free = make(chan struct{})
		}
		free := g.free
		g.mu.Unlock()
		select {
		case <-free:
		case <-quit:
			return false
		}
		g.mu.Lock()
	}
	g.open++
	g.mu.Unlock()
	return true
}

// leave gives back a slot enter took.
func (g *connGate) leave() {
	g.mu.Lock()
	g.open--
	g.wakeLocked()
	g.mu.Unlock()
}

// setMax sets the cap; 0 lifts it. Connections beyond a lowered cap stay
// open, and no new one is accepted until enough of them end.
func (g *connGate) setMax(n int) {
	g.mu.Lock()
	g.max = n
	g.wakeLocked()
	g.mu.Unlock()
}

// countIn has the gate count the times it is found full in c from now on.
func (g *connGate) countIn(c *atomic.Uint64) {
	g.mu.Lock()
	g.full = c
	g.mu.Unlock()
}

// counterLocked is where the gate counts the times it is found full.
func (g *connGate) counterLocked() *atomic.Uint64 {
	if g.full == nil {
		g.full = new(atomic.Uint64)
	}
	return g.full
}

// limits reads the cap and how often an accept loop found it reached.
func (g *connGate) limits() (max int, full uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max, g.counterLocked().Load()
}

func (g *connGate) wakeLocked() {
	if g.free != nil {
		close(g.free)
		g.free = nil
	}
}
