package pace

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

const testTimeout = 5 * time.Second

// TestBarrier: the barrier returns, also when the runtime is busy with
// goroutines that only yield.
func TestBarrier(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for range 100 {
			Barrier()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("Barrier did not return")
	}
}

// TestGateCountsAndPaces: Go counts each setup until f returns, and with
// After or more stuck it still starts the next ones (the barrier waits for
// the CPU, not for them).
func TestGateCountsAndPaces(t *testing.T) {
	var g Gate
	release := make(chan struct{})
	var started sync.WaitGroup
	const stuck = 2 * After
	started.Add(stuck)
	for range stuck {
		g.Go(func(func()) {
			started.Done()
			<-release
		})
	}
	started.Wait()
	if n := g.InFlight(); n != stuck {
		t.Errorf("InFlight = %d with %d setups blocked, want %d", n, stuck, stuck)
	}
	ran, leave := make(chan struct{}), make(chan struct{})
	go g.Go(func(setUp func()) {
		setUp()
		setUp()
		close(ran)
		<-leave
	})
	select {
	case <-ran:
	case <-time.After(testTimeout):
		t.Fatal("Go beside stuck setups did not run f")
	}
	// One that called setUp no longer counts, though f still runs.
	if n := g.InFlight(); n != stuck {
		t.Errorf("InFlight = %d after the last setup called setUp twice, want %d", n, stuck)
	}
	close(leave)
	close(release)
	deadline := time.Now().Add(testTimeout)
	for g.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("InFlight = %d after every f returned, want 0", g.InFlight())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchPutsWritesAfterTheRound: goroutines readied together, each
// reading then writing, do all their reads before any write when each
// calls Batch before writing; without it each would write right after its
// own read.
func TestBatchPutsWritesAfterTheRound(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 8
	var (
		mu  sync.Mutex
		log []string
		wg  sync.WaitGroup
	)
	record := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	ready := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			record("read")
			Batch()
			record("write")
		}()
	}
	time.Sleep(10 * time.Millisecond) // all n wait on ready
	close(ready)
	wg.Wait()
	for i, s := range log {
		want := "write"
		if i < n {
			want = "read"
		}
		if s != want {
			t.Fatalf("step %d was a %s, want a %s; the steps: %v", i, s, want, log)
		}
	}
}
