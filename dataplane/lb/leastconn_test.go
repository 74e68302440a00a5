package lb

import (
	"fmt"
	"testing"
)

func TestLeastConnPrefersIdle(t *testing.T) {
	s := testSet("a:1", "b:1", "c:1")
	p := NewLeastConn(s)
	s[0].Endpoint.Acquire()
	s[2].Endpoint.Acquire()
	for range 10 {
		if ep, _ := p.Pick(Request{}); ep.Name != "b" {
			t.Fatalf("Pick = %s, want the idle b", ep.Name)
		}
	}
	s[1].Endpoint.Acquire()
	s[1].Endpoint.Acquire()
	for range 10 { // b now holds 2, a and c 1 each
		if ep, _ := p.Pick(Request{}); ep.Name == "b" {
			t.Fatalf("Pick = b, the busiest")
		}
	}
}

// TestLeastConnTiesRotate checks that idle endpoints take turns.
func TestLeastConnTiesRotate(t *testing.T) {
	p := NewLeastConn(testSet("a:1", "b:1", "c:1"))
	got := sequence(t, p, 6)
	if got != "bcabca" {
		t.Errorf("sequence = %q, want %q (each idle endpoint in turn)", got, "bcabca")
	}
}

// TestLeastConnWeighted holds every pick: in-flight work then follows the
// weights exactly (within one request), since the lightest per weight wins.
func TestLeastConnWeighted(t *testing.T) {
	s := testSet("a:3", "b:1", "c:2")
	p := NewLeastConn(s)
	for range 600 {
		ep, _ := p.Pick(Request{})
		ep.Acquire()
	}
	for _, m := range s {
		want := int64(600 * m.Weight / 6)
		if got := m.Endpoint.Inflight(); got < want-1 || got > want+1 {
			t.Errorf("%s holds %d, want %d±1", m.Endpoint.Name, got, want)
		}
	}
}

// TestTwoChoicesAvoidLoaded checks the power of two choices, in RANDOM
// and in LEAST_CONN over a large set: with half the endpoints loaded, one
// random draw lands on a loaded one half of the time, the better of two
// only when both are (a quarter).
func TestTwoChoicesAvoidLoaded(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		build func(Set) Picker
		want  float64
	}{
		{"RANDOM draws=1", 10, func(s Set) Picker { return NewRandom(s, 1) }, 0.5},
		{"RANDOM draws=2", 10, func(s Set) Picker { return NewRandom(s, 2) }, 0.25},
		{"RANDOM draws=3", 10, func(s Set) Picker { return NewRandom(s, 3) }, 0.125},
		{"LEAST_CONN large set", 200, NewLeastConn, 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spec []string
			for i := range tt.n {
				spec = append(spec, fmt.Sprintf("e%d:1", i))
			}
			s := testSet(spec...)
			loaded := map[string]bool{}
			for i := 0; i < tt.n; i += 2 {
				for range 10 {
					s[i].Endpoint.Acquire()
				}
				loaded[s[i].Endpoint.Name] = true
			}
			p := tt.build(s)
			const picks = 20000
			hits := 0
			for range picks {
				ep, _ := p.Pick(Request{})
				if loaded[ep.Name] {
					hits++
				}
			}
			if got := float64(hits) / picks; got < tt.want-0.02 || got > tt.want+0.02 {
				t.Errorf("share of loaded endpoints = %.3f, want %.3f±0.02", got, tt.want)
			}
		})
	}
}
