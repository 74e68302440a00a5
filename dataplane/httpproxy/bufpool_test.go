package httpproxy

import "testing"

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
