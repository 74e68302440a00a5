package ratemeter

import (
	"testing"
	"time"
)

// TestMeter: rates are the counters' growth over the window between two
// readings; a reading too soon after the last is ignored; a new key, or
// one whose counters went back, has no rate.
func TestMeter(t *testing.T) {
	var m Meter
	t0 := time.Unix(1000, 0)
	m.Read(t0, map[string]Counters{"a": {10, 100, 200, 1}, "b": {50, 0, 0, 0}}, time.Second)
	if rates, window := m.Rates(); len(rates) != 0 || window != 0 {
		t.Fatalf("after one reading: %v over %v, want no rates", rates, window)
	}
	m.Read(t0.Add(4*time.Second), map[string]Counters{"a": {30, 500, 1000, 5}, "b": {2, 0, 0, 0}, "c": {8, 0, 0, 0}}, time.Second)
	rates, window := m.Rates()
	if want := (Rate{5, 100, 200, 1}); window != 4*time.Second || len(rates) != 1 || rates["a"] != want {
		t.Errorf("second reading: %v over %v, want only a at %v over 4s", rates, window, want)
	}
	m.Read(t0.Add(4500*time.Millisecond), map[string]Counters{"a": {90, 500, 1000, 5}}, time.Second)
	if rates, window := m.Rates(); window != 4*time.Second || rates["a"].Requests != 5 {
		t.Errorf("reading 500ms later: %v over %v, want the last window kept", rates, window)
	}
	m.Read(t0.Add(6*time.Second), map[string]Counters{"a": {40, 500, 1000, 5}}, time.Second)
	if rates, window := m.Rates(); window != 2*time.Second || rates["a"].Requests != 5 {
		t.Errorf("reading 2s after the second: %v over %v, want a at 5 req/s over 2s", rates, window)
	}
}
