// Package health runs active health checks against endpoints, in the manner
// of HAProxy's "check inter 2s fall 3 rise 2".
//
// A Checker runs one goroutine per checked endpoint. The state of an
// endpoint is kept by address key across snapshots, so an endpoint that
// survives an apply keeps its state, and a change of check settings does not
// send a down endpoint back into rotation.
package health

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// State is what checks know of an endpoint.
type State uint8

const (
	// Unknown: no check has concluded yet. Pickers treat it as up, so a
	// node that just started does not fail over to backups before it
	// knows better (DESIGN problem 4).
	Unknown State = iota
	Up
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "UP"
	case Down:
		return "DOWN"
	}
	return "UNKNOWN"
}

// Spec says how to check one endpoint.
type Spec struct {
	// Key identifies the endpoint across snapshots (cluster/name@address).
	Key      string
	Addr     string
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Rise     int
}

// Checker runs the checks of every endpoint of a node and calls onChange,
// from its own goroutine, after any endpoint goes down or comes back up. onChange must
// not block for long: checks of other endpoints wait for it.
type Checker struct {
	onChange func(key string)

	mu      sync.Mutex
	running map[string]*probe
	states  map[string]State
}

type probe struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}
}

// NewChecker returns a Checker that runs nothing until Reconcile.
func NewChecker(onChange func(key string)) *Checker {
	return &Checker{onChange: onChange, running: map[string]*probe{}, states: map[string]State{}}
}

// State returns the state of the endpoint with the given key; Unknown for an
// endpoint that is not checked.
func (c *Checker) State(key string) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.states[key]
}

// Reconcile makes the set of running checks equal to specs: new endpoints
// start being checked, removed ones stop, and changed settings restart the
// endpoint's check while keeping its state.
func (c *Checker) Reconcile(specs []Spec) {
	want := make(map[string]Spec, len(specs))
	for _, s := range specs {
		want[s.Key] = s
	}
	var stop []*probe
	c.mu.Lock()
	for key, p := range c.running {
		if s, ok := want[key]; !ok || s != p.spec {
			stop = append(stop, p)
			delete(c.running, key)
			if !ok {
				delete(c.states, key)
			}
		}
	}
	for key, s := range want {
		if _, ok := c.running[key]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &probe{spec: s, cancel: cancel, done: make(chan struct{})}
		c.running[key] = p
		go c.run(ctx, p)
	}
	c.mu.Unlock()
	for _, p := range stop {
		p.cancel()
		<-p.done
	}
}

// Stop ends every check.
func (c *Checker) Stop() { c.Reconcile(nil) }

func (c *Checker) run(ctx context.Context, p *probe) {
	defer close(p.done)
	s := p.spec
	// The first check runs soon, spread over a tenth of the interval so a
	// large cluster is not checked in one burst.
	wait := time.Duration(rand.Int64N(int64(s.Interval)/10 + 1))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var ok, fail int
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if c.checkTCP(ctx, s) {
			ok, fail = ok+1, 0
		} else {
			ok, fail = 0, fail+1
		}
		c.mu.Lock()
		cur := c.states[s.Key]
		next := cur
		switch {
		case ok >= s.Rise, cur == Unknown && ok > 0:
			// Like HAProxy, an endpoint starts as up: its first
			// successful check confirms it without waiting for rise.
			next = Up
		case fail >= s.Fall:
			next = Down
		}
		current := c.running[s.Key] == p
		if current {
			c.states[s.Key] = next
		}
		c.mu.Unlock()
		// Only going down or coming back from down changes what pickers
		// may choose; UNKNOWN -> UP does not, so it rebuilds nothing
		// (a rebuild restarts the round-robin sequence).
		if current && (next == Down) != (cur == Down) && c.onChange != nil {
			c.onChange(p.spec.Key)
		}
		// Jitter of ±5% keeps a fleet from checking in lockstep.
		j := int64(s.Interval) / 20
		timer.Reset(s.Interval + time.Duration(rand.Int64N(2*j+1)-j))
	}
}

func (c *Checker) checkTCP(ctx context.Context, s Spec) bool {
	d := net.Dialer{Timeout: s.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
