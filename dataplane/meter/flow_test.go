package meter

import (
	"sync"
	"sync/atomic"
	"testing"
)

// endpointCount counts what Settle counted as an endpoint's.
type endpointCount struct{ in, out atomic.Uint64 }

func (e *endpointCount) Transferred(in, out uint64) {
	e.in.Add(in)
	e.out.Add(out)
}

// TestFlowSettlesEachByteOnce: settles that race each other and the
// writer take every byte once between them, into the endpoint's meter
// and the listener's.
func TestFlowSettlesEachByteOnce(t *testing.T) {
	var f Flows
	var ep endpointCount
	l := NewListener("l", nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				f.Settle(&ep, l)
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	for range 100000 {
		f.Up.Add(3)
	}
	close(stop)
	wg.Wait()
	f.Settle(&ep, l)
	if in, out := l.Counts().BytesIn, ep.out.Load(); in != 300000 || out != 300000 || f.Up.Total() != 300000 {
		t.Errorf("settled %d in the listener and %d in the endpoint of a total %d; want 300000 each", in, out, f.Up.Total())
	}
	f.Settle(&ep, l)
	if n := l.Counts().BytesIn; n != 300000 {
		t.Errorf("a settle with nothing new counted %d more", n-300000)
	}
}
