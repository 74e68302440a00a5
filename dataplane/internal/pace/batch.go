package pace

import "runtime"

// Batch puts off the caller, about to write to a peer (an endpoint or a
// client), until the goroutines already runnable have run: the writes of
// one netpoll round then go out in a burst after its reads, as in an event
// loop like HAProxy's, instead of one write between every two reads.
//
// It matters when peers share the node's CPUs. A write to a sleeping peer
// wakes it, and the kernel often places the woken task on the waker's CPU.
// A node that wakes a peer once per exchange ends up sharing its core with
// the load (the peer then preempts it right away at each wake-up, since the
// node uses more than its fair share), and gets 65-78% of a core. When it
// wakes each peer once per round, the peers find its core busy less often
// and stay on their own: the node keeps 86-96% of its core, as HAProxy
// does (see BENCHMARKS.md).
//
// It costs one trip through the runtime's run queue (a fraction of a
// microsecond), so it belongs before the write that ends a phase of an
// exchange: a request head out, a response head out, or in tcpproxy the
// first send of a message that came alone. Never per piece of a burst or
// of a body.
//
// The goroutines one network poll readied run, so write, in the order the
// runtime readied them (on one P; with more, some go to other Ps): as
// `make` builds the node, the order in which their sockets became ready;
// with the stock runtime, its reverse (scripts/netpoll-fifo.sh,
// TestNetpollOrder).
func Batch() { runtime.Gosched() }
