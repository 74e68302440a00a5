package node

import "sync"

// connGate caps the client connections a listener holds at once, its
// max_connections (HAProxy's maxconn on a frontend). The accept loop takes
// a slot before each accept and every connection gives its slot back when
// it ends. While every slot is taken the loop waits, so new connections
// wait in the kernel's accept queue rather than as goroutines and sockets
// of the node's.
type connGate struct {
	mu     sync.Mutex
	open   int // slots taken: open connections, and the accept under way
	max    int // 0: no cap
	closed bool
	// free is closed, and cleared, when a slot frees, the cap changes or
	// the gate closes; nil while nothing waits.
	free chan struct{}
	full uint64 // times the accept loop found every slot taken
}

// enter takes a slot, waiting while every one is taken; onFull, if not
// nil, runs once before such a wait. It returns false, taking nothing,
// once the gate is closed.
func (g *connGate) enter(onFull func()) bool {
	g.mu.Lock()
	waited := false
	for !g.closed && g.max > 0 && g.open >= g.max {
		if !waited {
			waited = true
			g.full++
			if onFull != nil {
				g.mu.Unlock()
				onFull()
				g.mu.Lock()
				continue
			}
		}
		if g.free == nil {
			g.free = make(chan struct{})
		}
		free := g.free
		g.mu.Unlock()
		<-free
		g.mu.Lock()
	}
	ok := !g.closed
	if ok {
		g.open++
	}
	g.mu.Unlock()
	return ok
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

// close ends a wait in enter, and every later enter fails.
func (g *connGate) close() {
	g.mu.Lock()
	g.closed = true
	g.wakeLocked()
	g.mu.Unlock()
}

// limits reads the cap and how often the accept loop found it reached.
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
