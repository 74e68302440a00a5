package httpproxy

import (
	"testing"
	"time"
)

// Buffers idle through a whole trim interval are released, beyond keepHot,
// and come back usable.
func TestBufClassTrimsIdleBuffers(t *testing.T) {
	c := &bufClass{size: bbSize, slab: 8}
	var bufs [][]byte
	for i := 0; i < keepHot+40; i++ {
		b := c.get()
		if len(b) != bbSize || cap(b) != bbSize {
			t.Fatalf("buffer len %d cap %d", len(b), cap(b))
		}
		b[0], b[bbSize-1] = 1, 2
		bufs = append(bufs, b)
	}
	for _, b := range bufs {
		c.put(b)
	}
	if n := c.trim(); n != 0 {
		t.Fatalf("first trim released %d buffers that were in use during the interval", n)
	}
	c.get() // a steady user keeps one buffer busy
	c.put(bufs[0])
	if n := c.trim(); n != 40-1 {
		t.Fatalf("second trim released %d, want %d (idle beyond keepHot)", n, 40-1)
	}
	if len(c.hot) != keepHot+1 {
		t.Fatalf("%d hot buffers left, want %d", len(c.hot), keepHot+1)
	}
	for range keepHot + 40 {
		b := c.get()
		b[0], b[bbSize-1] = 3, 4 // released pages fault back in
	}
}

// After a burst, a trim returns the freed heap to the OS when there is
// enough of it; not when no burst ended, and not within freeOSWait times
// what the last return took. A burst that ended within that wait is
// returned once it is over.
func TestTrimReturnsABurstsHeap(t *testing.T) {
	c := &bufClass{size: rbSize, slab: 8}
	tr := newTrimmer(c)
	var free uint64 // what the runtime would say is freed and resident
	returned := 0
	const took = 100 * time.Millisecond // each return; the wait after it is 10s
	tr.heapFree = func() uint64 { return free }
	tr.freeOS = func() time.Duration { returned++; free = 0; return took }
	burst := func() { // keepHot+8 exchanges at once, then none
		var bufs [][]byte
		for range keepHot + 8 {
			bufs = append(bufs, c.get())
		}
		for _, b := range bufs {
			c.put(b)
		}
	}
	now := time.Now()
	tick := func(want bool, what string) {
		t.Helper()
		now = now.Add(trimInterval)
		before := returned
		if got := tr.tick(now); got != want || (returned > before) != want {
			t.Fatalf("%s: tick returned the heap: said %v, did %v; want %v", what, got, returned > before, want)
		}
	}

	burst()
	free = 4 << 20
	tick(false, "buffers in use during the interval")
	tick(true, "burst ended")

	burst()
	tick(false, "buffers in use during the interval")
	free = 4 << 20
	tick(false, "within the wait after the last return")
	now = now.Add(freeOSWait*took - 3*trimInterval)
	tick(true, "the wait over: the burst that ended within it")
	free = 4 << 20
	now = now.Add(freeOSWait * took)
	tick(false, "no burst since the last return")

	burst()
	tick(false, "buffers in use during the interval")
	free = burstFree - 1
	tick(false, "burst ended, but too little freed heap resident")
	free = 4 << 20
	tick(false, "no burst since the last one, which had too little")

	burst()
	tick(false, "buffers in use during the interval")
	free = burstFree
	tick(true, "burst ended, the wait long over")
}

func TestExchangeBuffersReturn(t *testing.T) {
	x := getExchange()
	if len(x.rb) != rbSize || len(x.bb) != bbSize || cap(x.wb) != wbSize || len(x.wb) != 0 {
		t.Fatalf("buffers %d %d %d", len(x.rb), len(x.bb), cap(x.wb))
	}
	// A head too large for rb moves to a big buffer; rb goes back to its
	// class and the big one comes back with the exchange.
	x.re = len(x.rb)
	x.rb, x.rs, x.re = growRead(x.rb, 0, x.re)
	if len(x.rb) != bigBufSize || x.re != rbSize {
		t.Fatalf("grown buffer %d, window %d", len(x.rb), x.re)
	}
	x.wb = append(x.wb, make([]byte, 2*wbSize)...) // outgrows its pooled buffer
	putExchange(x)
	if x.rb != nil || x.wbPooled != nil {
		t.Fatal("buffers kept after putExchange")
	}
}

// TestBulkBuffersKeepUnconsumedBytes: moving to a big buffer for a large
// body keeps what the old one held unread (a chunk line a read ended in),
// at the front of the new one.
func TestBulkBuffersKeepUnconsumedBytes(t *testing.T) {
	x := getExchange()
	defer putExchange(x)
	n := copy(x.rb, "HEAD...\r\nab\r\n1f")
	x.rs, x.re = 9, n
	x.bulkRead()
	if len(x.rb) != bigBufSize || string(x.rb[x.rs:x.re]) != "ab\r\n1f" {
		t.Errorf("bulkRead: %d-byte buffer holding %q, want %d bytes holding the 6 unread", len(x.rb), x.rb[x.rs:x.re], bigBufSize)
	}
	n = copy(x.bb, "HTTP/1.1 200 OK\r\n\r\n3\r")
	old := x.bb
	x.bs, x.be = n-2, n
	x.bulkBuffer()
	if len(x.bb) != bigBufSize || string(x.bb[x.bs:x.be]) != "3\r" || &x.bbHead[0] != &old[0] {
		t.Errorf("bulkBuffer: %d-byte buffer holding %q, want %d bytes holding 3CR, the old one kept", len(x.bb), x.bb[x.bs:x.be], bigBufSize)
	}
	x.wb = append(x.wb[:0], "x"...)
	x.wb = x.wb[:0]
	x.bulkOutput()
	if cap(x.wb) != bigBufSize || len(x.wb) != 0 {
		t.Errorf("bulkOutput: wb %d of %d, want 0 of %d", len(x.wb), cap(x.wb), bigBufSize)
	}
}

// TestBulkBufferAfterAGiveBack: the exchange after one whose chunked body
// gave its big buffers back (bulkBufferEnd) keeps the buffer its own
// response head is in when its body takes the big one.
func TestBulkBufferAfterAGiveBack(t *testing.T) {
	x := getExchange()
	defer putExchange(x)
	// The first exchange: a burst, then slowly.
	x.bs, x.be = 0, copy(x.bb, "head 1")
	x.bulkBuffer()
	x.bulkOutput()
	x.bs, x.be = 0, 0
	x.bulkBufferEnd()
	// The next one reads its head into the endpoint read buffer.
	x.newResponse()
	head := x.bb
	n := copy(x.bb, "head 2")
	x.bs, x.be = n, n
	x.bulkBuffer()
	if &x.bbHead[0] != &head[0] || string(x.bbHead[:n]) != "head 2" {
		t.Errorf("bbHead holds %q, want the buffer head 2 is in", x.bbHead[:n])
	}
}
