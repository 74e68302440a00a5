package poll

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestUntilReturnsOnceCondHolds: Until asks again until cond holds, then
// returns without failing.
func TestUntilReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	Until(t, time.Second, time.Millisecond, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}

// fatalTB records what Fatalf says and ends the goroutine, as
// testing.T's does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestUntilFailsAfterTimeout: a cond that never holds fails the test,
// naming what it waited for, once the timeout passed and not before.
func TestUntilFailsAfterTimeout(t *testing.T) {
	f := &fatalTB{TB: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(f, 50*time.Millisecond, time.Millisecond, "nothing", func() bool { return false })
	}()
	<-done
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("failed after %v, before the 50ms timeout", took)
	}
	if f.msg != "timed out waiting for nothing" {
		t.Errorf("Fatalf said %q, want \"timed out waiting for nothing\"", f.msg)
	}
}
