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
//
// The runtime takes one goroutine from its global run queue, where Gosched
// puts the caller, every 61st time it schedules, so now and then a write
// goes out inside the round: a round may fail, but not every one of ten.
func TestBatchPutsWritesAfterTheRound(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var last []string
	for range 10 {
		last = batchRound()
		if readsFirst(last) {
			return
		}
	}
	t.Fatalf("in each of 10 rounds a write came before the last read; the last round's steps: %v", last)
}

// batchRound readies 8 goroutines at once, each reading, calling Batch and
// writing, and returns the steps in the order they came.
func batchRound() []string {
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
	return log
}

// readsFirst reports whether every read in steps comes before every write.
func readsFirst(steps []string) bool {
	wrote := false
	for _, s := range steps {
		if s == "write" {
			wrote = true
		} else if wrote {
			return false
		}
	}
	return true
}
