package node

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// forEachChunk is how many calls one goroutine of forEach claims at a time:
// enough that claiming costs nothing next to them, few enough that a
// goroutine left with big clusters does not finish long after the others.
const forEachChunk = 64

// forEach calls f(i) for every i in [0, n), on as many goroutines as the
// process has cores (GOMAXPROCS), and returns when every call has. The
// calls must not depend on one another's order.
func forEach(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+forEachChunk-1)/forEachChunk)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				end := int(next.Add(forEachChunk))
				start := end - forEachChunk
				if start >= n {
					return
				}
				for i := start; i < min(end, n); i++ {
					f(i)
				}
			}
		})
	}
	wg.Wait()
}
