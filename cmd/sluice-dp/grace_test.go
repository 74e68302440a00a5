package main

import (
	"testing"
	"time"
)

// TestListenerGrace: --drain-grace 0, which closes every connection at once
// on SIGTERM, closes a removed listener's at once too, rather than giving
// them the node's default; any other value is passed on as it is.
func TestListenerGrace(t *testing.T) {
	if g := listenerGrace(0); g >= 0 {
		t.Errorf("listenerGrace(0) = %v, want a negative grace (at once)", g)
	}
	if g := listenerGrace(45 * time.Second); g != 45*time.Second {
		t.Errorf("listenerGrace(45s) = %v, want 45s", g)
	}
}
