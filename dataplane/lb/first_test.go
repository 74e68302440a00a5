package lb

import (
	"strings"
	"testing"
)

// TestFirstSpills drives in-flight work and checks that FIRST fills each
// endpoint to its MaxConn before spilling to the next, and goes back to an
// earlier endpoint as soon as one of its slots frees.
func TestFirstSpills(t *testing.T) {
	s := testSet("a:1:max=2", "b:1:max=3", "c:1")
	p := NewFirst(s)
	var got strings.Builder
	for range 8 {
		ep, err := p.Pick(Request{})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		ep.Acquire()
		got.WriteString(ep.Name)
	}
	if want := "aabbbccc"; got.String() != want {
		t.Errorf("held picks = %q, want %q", got.String(), want)
	}
	s[1].Endpoint.Release() // b has a slot again
	if ep, _ := p.Pick(Request{}); ep.Name != "b" {
		t.Errorf("after b frees a slot: Pick = %s, want b", ep.Name)
	}
	s[0].Endpoint.Release() // a comes first again
	if ep, _ := p.Pick(Request{}); ep.Name != "a" {
		t.Errorf("after a frees a slot: Pick = %s, want a", ep.Name)
	}
}

func TestFirstUnlimitedTakesAll(t *testing.T) {
	s := testSet("a:1", "b:1:max=1")
	p := NewFirst(s)
	for range 100 {
		ep, _ := p.Pick(Request{})
		ep.Acquire()
		if ep.Name != "a" {
			t.Fatalf("Pick = %s, want a: without MaxConn it always has a slot", ep.Name)
		}
	}
}

func TestFirstAllFull(t *testing.T) {
	s := testSet("a:1:max=1", "b:1:max=1")
	p := NewFirst(s)
	s[0].Endpoint.Acquire()
	s[1].Endpoint.Acquire()
	if _, err := p.Pick(Request{}); err != ErrFull {
		t.Errorf("Pick err = %v, want ErrFull", err)
	}
}
