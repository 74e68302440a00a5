package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
)

// TestQueueUnderChurn: waiters that time out, leave with their listener,
// or get a slot, while slots are freed one by one and all at once, leave
// the queue empty, every pooled waiter's signal drained, and no slot
// unclaimed: a wake-up that comes as its waiter leaves is passed on, not
// left in the pooled waiter for its next user.
func TestQueueUnderChurn(t *testing.T) {
	const slots, workers, rounds = 2, 16, 300
	var q queue
	var used atomic.Int32
	try := func() error {
		for {
			n := used.Load()
			if n >= slots {
				return lb.ErrFull
			}
			if used.CompareAndSwap(n, n+1) {
				return nil
			}
		}
	}
	release := func() {
		used.Add(-1)
		q.wake()
	}
	gone := make(chan struct{})
	close(gone)
	var wg sync.WaitGroup
	var served atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var done <-chan struct{}
				if (w+i)%5 == 0 {
					done = gone // its listener was removed
				}
				err := q.wait(time.Duration(i%3)*100*time.Microsecond, done, nil, i%2 == 0, try)
				switch {
				case err == nil:
					served.Add(1)
					if i%7 == 0 {
						q.wakeAll()
					}
					release()
				case errors.Is(err, errQueueTimeout), errors.Is(err, errQueueLeft):
				default:
					t.Errorf("wait: %v", err)
					return
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(testTimeout):
		t.Fatal("waiters are stuck: a wake-up was lost")
	}
	if q.len() != 0 || len(q.waiters) != 0 || used.Load() != 0 {
		t.Errorf("after all left: len %d, %d in line, %d slots used; want 0 0 0", q.len(), len(q.waiters), used.Load())
	}
	if served.Load() == 0 {
		t.Error("no waiter got a slot")
	}
	// Every pooled waiter comes back with an empty signal channel.
	for range workers {
		w := waiterPool.Get().(*waiter)
		select {
		case <-w.ch:
			t.Fatal("a pooled waiter holds a stale wake-up")
		default:
		}
	}
}

// TestQueuePassesAWakeItCannotUse: work waiting for one endpoint (a
// persistent client's, full) at the head of the line, woken by a slot of
// another, hands the wake-up to the work behind it, which takes the slot,
// rather than leave it unclaimed until the queue timeout.
func TestQueuePassesAWakeItCannotUse(t *testing.T) {
	// Both wait far longer than the test: without the hand-off the work
	// behind would be served only when the stuck waiter left, so it is
	// not served at all, rather than late on a busy machine.
	const long = time.Hour
	var q queue
	var free atomic.Bool
	stuckIn := make(chan struct{})
	stuck := make(chan error, 1)
	leave := make(chan struct{})
	go func() {
		stuck <- q.wait(long, leave, nil, true, func() error {
			select {
			case <-stuckIn:
			default:
				close(stuckIn)
			}
			return lb.ErrFull // its endpoint stays full
		})
	}()
	<-stuckIn
	served := make(chan error, 1)
	go func() {
		served <- q.wait(long, nil, nil, false, func() error {
			if free.CompareAndSwap(true, false) {
				return nil
			}
			return lb.ErrFull
		})
	}()
	for q.len() != 2 {
		time.Sleep(time.Millisecond)
	}
	free.Store(true)
	q.wake() // the head of the line is the stuck waiter
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("the waiter behind: %v, want the free slot", err)
		}
	case <-time.After(testTimeout):
		t.Error("the waiter behind never got the free slot: the stuck waiter kept the wake-up")
	}
	close(leave)
	if err := <-stuck; err != errQueueLeft {
		t.Errorf("the stuck waiter: %v, want to have left the queue", err)
	}
}
