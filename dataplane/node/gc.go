package node

import (
	"runtime/debug"
	"sync"
)

// holdGCFrom is the size of a compile, in endpoints of the clusters a
// snapshot changes, from which Apply holds the garbage collector off
// while it compiles and swaps (holdGC).
const holdGCFrom = 10_000

var gcHold struct {
	sync.Mutex
	holders int
	percent int // the GC percent (GOGC) from before the first holder
	taken   int // holds taken in all, for tests
}

// holdGC turns the garbage collector off until release is called, then
// back to what it was. Holds overlap (nodes of one process): the last
// release restores the setting from before the first hold.
//
// Apply holds it through a big compile. What it allocates is mostly
// what the node keeps (the endpoints, their pickers and checks), so a
// collector running meanwhile marks a growing heap again and again, on
// the cores the apply needs: 60 of a cold apply's 165 ms at 10k clusters
// and 100k endpoints on two cores. Released, the collector runs once, at
// its own pace, beside traffic. A memory limit (GOMEMLIMIT) still holds
// throughout: the runtime collects when the heap nears it.
//
// Turning the collector off waits for a collection under way to finish
// its mark, which may take tens of milliseconds on a big heap: so Apply
// holds it for a big compile only, not for a delta to a big node.
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.holders == 0 {
		gcHold.percent = debug.SetGCPercent(-1)
	}
	gcHold.holders++
	gcHold.taken++
	gcHold.Unlock()
	return sync.OnceFunc(func() {
		gcHold.Lock()
		defer gcHold.Unlock()
		if gcHold.holders--; gcHold.holders == 0 {
			debug.SetGCPercent(gcHold.percent)
		}
	})
}

// endpointsIn is how many endpoints the clusters todo compile have.
func endpointsIn(todo []compileJob) int {
	n := 0
	for _, j := range todo {
		n += len(j.spec.GetEndpoints())
	}
	return n
}
