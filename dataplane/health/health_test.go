package health

import (
	"net"
	"testing"
	"time"
)

const testTimeout = 5 * time.Second

func waitState(t *testing.T, c *Checker, key string, want State) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for c.State(key) != want {
		if time.Now().After(deadline) {
			t.Fatalf("state of %s = %v, want %v", key, c.State(key), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckerFallAndRise(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	changes := make(chan struct{}, 16)
	c := NewChecker(func(string) { changes <- struct{}{} })
	defer c.Stop()
	spec := Spec{Key: "c/e@" + addr, Addr: addr, Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond, Fall: 3, Rise: 2}
	c.Reconcile([]Spec{spec})
	waitState(t, c, spec.Key, Up)

	ln.Close()
	start := time.Now()
	waitState(t, c, spec.Key, Down)
	if took := time.Since(start); took < 2*spec.Interval {
		t.Errorf("went down after %v, before fall=3 checks could fail", took)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr, err)
	}
	defer ln.Close()
	waitState(t, c, spec.Key, Up)
	if len(changes) != 2 {
		t.Errorf("onChange called %d times, want 2 (down, up; unknown -> up changes no picker)", len(changes))
	}
}

func TestCheckerKeepsStateAcrossReconcile(t *testing.T) {
	// Nothing listens on this address: the endpoint goes down.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := NewChecker(nil)
	defer c.Stop()
	spec := Spec{Key: "c/e@" + addr, Addr: addr, Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 1, Rise: 5}
	c.Reconcile([]Spec{spec})
	waitState(t, c, spec.Key, Down)

	spec.Interval = time.Hour // changed settings restart the check...
	c.Reconcile([]Spec{spec})
	if got := c.State(spec.Key); got != Down {
		t.Errorf("after reconcile state = %v, want DOWN kept", got)
	}
	c.Reconcile(nil) // ...and removal forgets it.
	if got := c.State(spec.Key); got != Unknown {
		t.Errorf("after removal state = %v, want UNKNOWN", got)
	}
}
