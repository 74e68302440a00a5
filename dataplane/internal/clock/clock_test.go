package clock

import (
	"strings"
	"testing"
	"time"
)

func TestNowIsMonotonicAndNearTimeNow(t *testing.T) {
	a := time.Now()
	n := Now()
	b := time.Now()
	if n.Before(a) || n.After(b) {
		t.Fatalf("Now %v is not between %v and %v", n, a, b)
	}
	// The monotonic reading is kept: a deadline from Now compares on it.
	if s := n.String(); !strings.Contains(s, " m=+") {
		t.Fatalf("Now carries no monotonic reading: %s", s)
	}
	if d := time.Until(n.Add(time.Second)); d <= 0 || d > time.Second {
		t.Fatalf("a second from Now is %v away", d)
	}
}

func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		_ = Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}
