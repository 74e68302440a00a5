package fleet

import (
	"slices"
	"testing"
)

// TestObserve: the observer hears of every change of a node's state, and
// not of a node merely seen (a stale answer), nor of a superseded stream.
func TestObserve(t *testing.T) {
	r := NewRegistry()
	var heard []string
	r.Observe(func(id string) { heard = append(heard, id) })
	expect := func(when string, want ...string) {
		t.Helper()
		if !slices.Equal(heard, want) {
			t.Errorf("%s: observer heard %q, want %q", when, heard, want)
		}
		heard = nil
	}

	s := r.Connect(node("n1"), "peer", 0)
	expect("connect", "n1")
	s.Sent(1)
	s.Acked(1)
	s.Nacked(2, "bad")
	expect("sent, ACK, NACK", "n1", "n1", "n1")
	s.Seen()
	expect("seen")
	if !r.Draining("n1", "") {
		t.Fatal("Draining did not mark n1")
	}
	r.Draining("n1", "")
	expect("draining twice", "n1")

	newer := r.Connect(node("n1"), "peer2", 1)
	expect("reconnect", "n1")
	s.Acked(3)
	s.Disconnect()
	expect("the superseded session reports")
	newer.Disconnect()
	expect("disconnect", "n1")
}
