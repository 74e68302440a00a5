package httpproxy

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The exchange buffers come from size-classed free lists of memory mapped
// outside the Go heap (bufpool_unix.go), for one reason: memory taken by a
// burst goes back to the operating system soon after it.
//
// Go's heap keeps what it grew to until a garbage collection frees it and
// the scavenger returns it, and a proxy that does not allocate per request
// rarely collects. A burst of new connections is served breadth first (every
// new request is read and sent before earlier responses are relayed), so it
// can hold thousands of exchanges at once; with heap buffers the process
// would keep that peak for minutes, and the memory per idle connection seen
// after a burst would be several times the real one. Here, buffers that sat
// unused through a whole trim interval are released (MADV_DONTNEED) and
// stay mapped for reuse; a steady load never releases the buffers it keeps
// using.
type bufClass struct {
	size int
	slab int // buffers mapped at once

	mu   sync.Mutex
	hot  [][]byte // resident, most recently returned last
	cold [][]byte // released to the OS or never touched; fault in on use
	low  int      // fewest hot buffers since the last trim
	out  int      // buffers taken and not yet returned
}

// keepHot is how many idle buffers per class are never released.
const keepHot = 32

// trimInterval is how long a buffer must stay unused to be released.
const trimInterval = time.Second

var (
	rbClass  = &bufClass{size: rbSize, slab: 64}
	wbClass  = &bufClass{size: wbSize, slab: 64}
	bbClass  = &bufClass{size: bbSize, slab: 64}
	bigClass = &bufClass{size: bigBufSize, slab: 4}

	trimOnce sync.Once
)

func classOf(b []byte) *bufClass {
	switch cap(b) {
	case rbSize:
		return rbClass
	case wbSize:
		return wbClass
	case bbSize:
		return bbClass
	case bigBufSize:
		return bigClass
	}
	return nil
}

// get returns a buffer of the class's size (len == cap == size).
func (c *bufClass) get() []byte {
	c.mu.Lock()
	c.out++
	if n := len(c.hot); n > 0 {
		b := c.hot[n-1]
		c.hot[n-1] = nil
		c.hot = c.hot[:n-1]
		if n-1 < c.low {
			c.low = n - 1
		}
		c.mu.Unlock()
		return b
	}
	c.low = 0
	if n := len(c.cold); n > 0 {
		b := c.cold[n-1]
		c.cold[n-1] = nil
		c.cold = c.cold[:n-1]
		c.mu.Unlock()
		return b
	}
	c.mu.Unlock()
	return c.grow()
}

// grow maps a slab, keeps all but one buffer as cold (untouched pages are
// not resident) and returns that one.
func (c *bufClass) grow() []byte {
	trimOnce.Do(func() { go trimLoop() })
	bufs := mapBuffers(c.size, c.slab)
	c.mu.Lock()
	c.cold = append(c.cold, bufs[1:]...)
	c.mu.Unlock()
	return bufs[0]
}

// put returns a buffer obtained from get.
func (c *bufClass) put(b []byte) {
	b = b[:c.size]
	c.mu.Lock()
	c.hot = append(c.hot, b)
	c.out--
	c.mu.Unlock()
}

// inUse is how many of the class's buffers are taken.
func (c *bufClass) inUse() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out
}

// trim releases the buffers that stayed hot but unused since the last trim,
// beyond keepHot, oldest first, and returns how many.
func (c *bufClass) trim() int {
	c.mu.Lock()
	n := min(c.low, len(c.hot)) - keepHot
	if n <= 0 {
		c.low = len(c.hot)
		c.mu.Unlock()
		return 0
	}
	victims := make([][]byte, n)
	copy(victims, c.hot[:n])
	rest := copy(c.hot, c.hot[n:])
	clear(c.hot[rest:])
	c.hot = c.hot[:rest]
	c.low = len(c.hot)
	c.mu.Unlock()
	for _, b := range victims {
		releaseBuffer(b)
	}
	c.mu.Lock()
	c.cold = append(c.cold, victims...)
	c.mu.Unlock()
	return n
}

// A burst's exchange states and goroutine stacks are freed into the Go
// heap, which keeps the pages resident: its scavenger returns only what
// exceeds about 110% of the heap goal, and a proxy that does not allocate
// rarely moves that goal. After a burst (the trim released buffers), when
// at least burstFree bytes of freed heap are still resident, the trim loop
// returns them to the OS. A count of released buffers is no such signal: a
// burst of 5000 new connections, each sending one request, released 190 to
// 310 of them from one trial to the next.
//
// Returning them costs two garbage collections, whose time grows with the
// live heap, so after one that took d the next waits freeOSWait × d: at
// most a hundredth of the time goes to them. A burst that ends sooner is
// returned once the wait is over, if its heap is still resident then; a
// fixed 30 s wait used to leave the heap of a burst that came within it
// resident for good.
const (
	burstFree  = 1 << 20
	freeOSWait = 100
)

func trimLoop() {
	t := newTrimmer(rbClass, wbClass, bbClass, bigClass)
	for now := range time.Tick(trimInterval) {
		t.tick(now)
	}
}

// trimmer is the trim loop's state.
type trimmer struct {
	classes  []*bufClass
	owed     bool                 // a burst ended since the last return
	next     time.Time            // no return before
	heapFree func() uint64        // bytes of freed Go heap still resident
	freeOS   func() time.Duration // returns them to the OS, saying how long it took
}

func newTrimmer(classes ...*bufClass) *trimmer {
	free := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	return &trimmer{
		classes: classes,
		heapFree: func() uint64 {
			metrics.Read(free)
			if v := free[0].Value; v.Kind() == metrics.KindUint64 {
				return v.Uint64()
			}
			return 0
		},
		freeOS: func() time.Duration {
			start := time.Now()
			// Two collections: pooled exchange states survive the first.
			runtime.GC()
			debug.FreeOSMemory()
			return time.Since(start)
		},
	}
}

// tick trims the classes and, when a burst ended since the last return
// and the wait after it is over, returns the freed heap to the OS (see
// burstFree). It says whether it did.
func (t *trimmer) tick(now time.Time) bool {
	for _, c := range t.classes {
		if c.trim() > 0 {
			t.owed = true
		}
	}
	if !t.owed || now.Before(t.next) {
		return false
	}
	if t.heapFree() < burstFree {
		t.owed = false // too little to be worth it, or the scavenger took it
		return false
	}
	t.owed = false
	t.next = now.Add(freeOSWait * t.freeOS())
	return true
}
