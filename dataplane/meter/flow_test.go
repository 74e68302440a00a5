package meter

import (
	"sync"
	"testing"
)

// TestFlowSettlesEachByteOnce: settles that race each other and the
// writer take every byte once between them.
func TestFlowSettlesEachByteOnce(t *testing.T) {
	var f Flow
	var settled [4]uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range settled {
		wg.Go(func() {
			for {
				settled[i] += f.Settle()
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	for range 100000 {
		f.Add(3)
	}
	close(stop)
	wg.Wait()
	sum := f.Settle()
	for _, n := range settled {
		sum += n
	}
	if sum != 300000 || f.Total() != 300000 {
		t.Errorf("settled %d of a total %d; want 300000 each", sum, f.Total())
	}
	if n := f.Settle(); n != 0 {
		t.Errorf("a settle with nothing new took %d", n)
	}
}
