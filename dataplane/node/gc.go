package node

import (
	"runtime/debug"
	"sync"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// holdGCFrom is the size of a snapshot, in endpoints, from which Apply
// holds the garbage collector off while it works (holdGC).
const holdGCFrom = 10_000

var gcHold struct {
	sync.Mutex
	holders int
	percent int // the GC percent (GOGC) from before the first holder
}

// holdGC turns the garbage collector off until release is called, then
// back to what it was. Holds overlap (nodes of one process): the last
// release restores the setting from before the first hold.
//
// Apply holds it through a big snapshot. What it allocates is mostly
// what the node keeps (the endpoints, their pickers and checks), so a
// collector running meanwhile marks a growing heap again and again, on
// the cores the apply needs: 60 of a cold apply's 165 ms at 10k clusters
// and 100k endpoints on two cores. Released, the collector runs once, at
// its own pace, beside traffic. A memory limit (GOMEMLIMIT) still holds
// throughout: the runtime collects when the heap nears it.
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.holders == 0 {
		gcHold.percent = debug.SetGCPercent(-1)
	}
	gcHold.holders++
	gcHold.Unlock()
	return sync.OnceFunc(func() {
		gcHold.Lock()
		defer gcHold.Unlock()
		if gcHold.holders--; gcHold.holders == 0 {
			debug.SetGCPercent(gcHold.percent)
		}
	})
}

// endpointCount is how many endpoints snap has, in all its clusters.
func endpointCount(snap *sluicev1.Snapshot) int {
	n := 0
	for _, c := range snap.GetClusters() {
		n += len(c.GetEndpoints())
	}
	return n
}
