package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
)

// Errors of work that could not wait for a free slot. Both are answered 503
// on HTTP listeners; a TCP session is closed.
var (
	errQueueFull    = errors.New("every endpoint is full and the queue too")
	errQueueTimeout = errors.New("every endpoint stayed full for the whole queue timeout")
	errQueueLeft    = errors.New("the work's listener or stream ended while it waited in the queue")
	errClientClosed = errors.New("the client closed its connection while its request waited in the queue")
	// errQueueGone ends a wait whose cluster a newer snapshot removed or
	// turned queueing off for; pick answers it as lb.ErrFull.
	errQueueGone = errors.New("the cluster's queue was turned off or the cluster removed while the work waited")
)

// queue is a cluster's line of work waiting for a free slot while every
// eligible endpoint is at its max_conn (HAProxy's backend queue). Work
// leaves it in arrival order: each Release of one of the cluster's
// endpoints wakes the waiter at the head, which picks again. A queue
// outlives snapshots, so work waiting through an apply keeps its place.
type queue struct {
	mu      sync.Mutex
	max     int // 0: unbounded
	waiters []*waiter
	// n mirrors len(waiters) so that wake, called on every Release, skips
	// the lock while nothing waits. A waiter counts itself in before it
	// tries its pick and a releaser counts its work out before it loads n
	// (both sequentially consistent), so a free slot is never missed by
	// both of them.
	n atomic.Int32
	// entered numbers the waiters in the order they enter (waiter.seq).
	entered uint64
}

// waiter is one unit of work in a queue. A waker removes it from the line
// and sends on ch, both under the queue's lock: ch has room for that one
// signal, so wakers never block, and a waiter that leaves (taking the lock)
// finds the signal there if it was taken out of the line.
type waiter struct {
	ch  chan struct{}
	seq uint64 // the order it entered in
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// setMax sets the bound of the queue (max_queue of the snapshot applied
// last). Waiters beyond a lowered bound keep their place.
func (q *queue) setMax(n int) {
	q.mu.Lock()
	q.max = n
	q.mu.Unlock()
}

// enter puts a new waiter at the end of the line, or returns nil when the
// line is full.
func (q *queue) enter() *waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.max > 0 && len(q.waiters) >= q.max {
		return nil
	}
	w := waiterPool.Get().(*waiter)
	q.entered++
	w.seq = q.entered
	q.waiters = append(q.waiters, w)
	q.n.Add(1)
	return w
}

// requeue puts w, woken but unable to get a slot, back at the head.
func (q *queue) requeue(w *waiter) {
	q.mu.Lock()
	q.waiters = append(q.waiters, nil)
	copy(q.waiters[1:], q.waiters)
	q.waiters[0] = w
	q.n.Add(1)
	q.mu.Unlock()
}

// leave takes w out of the line for good. A w that was woken but is not
// going to use its wake-up (or has already got a slot another way) passes
// it on, so that no free slot is left unclaimed while work waits.
func (q *queue) leave(w *waiter) {
	q.mu.Lock()
	found := false
	for i, o := range q.waiters {
		if o == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			q.n.Add(-1)
			found = true
			break
		}
	}
	q.mu.Unlock()
	if !found {
		select {
		case <-w.ch:
		default:
		}
		q.wake()
	}
	waiterPool.Put(w)
}

// wake hands a free slot to the waiter at the head of the line, if any. It
// is called on every Release of the cluster's endpoints, so its empty case
// is one atomic load.
func (q *queue) wake() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	if len(q.waiters) == 0 {
		q.mu.Unlock()
		return
	}
	w := q.waiters[0]
	q.waiters[0] = nil
	q.waiters = q.waiters[1:]
	q.n.Add(-1)
	w.ch <- struct{}{}
	q.mu.Unlock()
}

// wakeAll wakes every waiter, to pick again after the cluster's picker
// changed (an endpoint came up, a weight or max_conn changed).
func (q *queue) wakeAll() {
	q.mu.Lock()
	for _, w := range q.waiters {
		w.ch <- struct{}{}
	}
	q.waiters = nil
	q.n.Store(0)
	q.mu.Unlock()
}

// len is the number of waiters.
func (q *queue) len() int { return int(q.n.Load()) }

// wait runs try until it succeeds, fails with anything but full, timeout
// passes, or done is closed; try is called again each time the waiter is
// woken. watch, if not nil, starts watching the work's client once the
// work does wait (clientWatcher.WatchClient): it waits no more once the
// client closed. Work that waits for one endpoint (persistence), rather
// than for any, sets one: woken by a slot it cannot use, it keeps its
// place and hands the wake-up on to the waiter behind it.
func (q *queue) wait(timeout time.Duration, done <-chan struct{}, watch func() (<-chan struct{}, func()), one bool, try func() error) error {
	w := q.enter()
	if w == nil {
		return errQueueFull
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var gone <-chan struct{} // nil: not watched
	woken := false           // by a free slot, which try is to take
	for {
		// Entered first, tried second: a slot freed in between wakes
		// this waiter (or one ahead of it) instead of being missed.
		err := try()
		if err != lb.ErrFull {
			q.leave(w)
			return err
		}
		if woken && one {
			// The slot was another endpoint's: one waiting for any
			// behind it may take it.
			q.wakeBehind(w)
		}
		if watch != nil {
			var stop func()
			gone, stop = watch()
			defer stop()
			watch = nil
		}
		select {
		case <-w.ch:
		case <-done:
		case <-gone:
		case <-timer.C:
			q.leave(w)
			return errQueueTimeout
		}
		// Woken, or the work's listener or client went: one that went,
		// even as it was woken, leaves the slot to another.
		select {
		case <-done:
			q.leave(w)
			return errQueueLeft
		case <-gone:
			q.leave(w)
			return errClientClosed
		default:
		}
		q.requeue(w)
		woken = true
	}
}

// wakeBehind wakes the first waiter in line that entered after w, which
// was woken for a slot it could not use. Only later ones: two waiters for
// two full endpoints would otherwise hand one wake-up back and forth.
func (q *queue) wakeBehind(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range q.waiters {
		if o.seq > w.seq {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			q.n.Add(-1)
			o.ch <- struct{}{}
			return
		}
	}
}
