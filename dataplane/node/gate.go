package node

import (
	"sync"
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
	free   chan struct{}
	full   uint64    // times an accept loop found every slot taken
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
			g.full++
			if onFull != nil && time.Since(g.warned) >= fullWarnEvery {
				g.warned = time.Now()
				max, times := g.max, g.full
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

// limits reads the cap and how often an accept loop found it reached.
func (g *connGate) limits() (max int, full uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max, g.full
}

func (g *connGate) wakeLocked() {
	if g.free != nil {
		close(g.free)
		g.free = nil
	}
}
