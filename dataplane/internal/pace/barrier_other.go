//go:build !unix

package pace

import "runtime"

// Barrier would wait until the runtime polled the network; where a
// pipe cannot be waited on through the poller it lets other goroutines run
// first.
func Barrier() { runtime.Gosched() }
