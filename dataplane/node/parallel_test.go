package node

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestForEachCallsEachIndexOnce: Apply compiles every cluster of a
// snapshot through forEach, so a count one short or one over around its
// chunks would leave a cluster out, or compile one twice.
func TestForEachCallsEachIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 2, 4} {
		prev := runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, forEachChunk - 1, forEachChunk, forEachChunk + 1, 3*forEachChunk + 5, 10_000} {
			calls := make([]atomic.Int32, n)
			forEach(n, func(i int) { calls[i].Add(1) })
			for i := range calls {
				if got := calls[i].Load(); got != 1 {
					t.Fatalf("GOMAXPROCS=%d, n=%d: f(%d) called %d times, want 1", procs, n, i, got)
				}
			}
		}
		runtime.GOMAXPROCS(prev)
	}
}
