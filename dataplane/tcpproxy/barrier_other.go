//go:build !unix

package tcpproxy

import "runtime"

// netpollBarrier would wait until the runtime polled the network; where a
// pipe cannot be waited on through the poller it lets other goroutines run
// first.
func netpollBarrier() { runtime.Gosched() }
