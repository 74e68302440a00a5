package store

import (
	"context"
	"sync"
)

// Notifier fans a rising sequence of version numbers out to watchers, keeping
// for each watcher only the newest number it has not read yet; the sequence
// goes back only at a Reset. A Store calls Notify after a version becomes
// durable (the embedded store after its commit; an etcd store from its watch
// on the current-version key) and serves Watch from Subscribe. Notify never
// blocks on a watcher.
//
// The zero value is ready to use.
type Notifier struct {
	mu     sync.Mutex
	last   uint64
	subs   map[chan uint64]func() bool // watcher -> stop of its context.AfterFunc
	closed bool
}

// Notify announces version v. Numbers not above the last announced one are
// ignored, so watchers see versions only rise.
func (n *Notifier) Notify(v uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || v <= n.last {
		return
	}
	n.last = v
	for ch := range n.subs {
		offer(ch, v)
	}
}

// offer puts v in ch (capacity 1), replacing an unread older number. Only the
// notifier sends on ch, under its mutex, so after the drain the send cannot
// block.
func offer(ch chan uint64, v uint64) {
	select {
	case ch <- v:
	default:
		select {
		case <-ch:
		default:
		}
		ch <- v
	}
}

// Reset announces v even when it is below the last number announced: the
// store went back (its etcd was replaced by an empty one, or restored from
// a backup), and v is where it is now. Numbers rise from v again. Version
// 0, nothing stored, is not sent; a watcher keeps what it has.
func (n *Notifier) Reset(v uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.last = v
	if v == 0 {
		return
	}
	for ch := range n.subs {
		offer(ch, v)
	}
}

// Subscribe returns a channel as described by Store.Watch.
func (n *Notifier) Subscribe(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return ch
	}
	if n.last != 0 {
		ch <- n.last
	}
	if n.subs == nil {
		n.subs = make(map[chan uint64]func() bool)
	}
	n.subs[ch] = context.AfterFunc(ctx, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	})
	return ch
}

// Close closes every watcher's channel; later Subscribes get a closed channel.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	for ch, stop := range n.subs {
		stop()
		close(ch)
	}
	n.subs = nil
}
