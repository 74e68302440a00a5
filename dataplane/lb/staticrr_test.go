package lb

import (
	"strings"
	"testing"
)

func TestStaticRRSequence(t *testing.T) {
	fromFirst(t)
	tests := []struct {
		name string
		set  Set
		n    int
		want string
	}{
		{"equal", testSet("a:1", "b:1", "c:1"), 6, "abcabc"},
		{"2:1 in runs", testSet("a:2", "b:1"), 6, "aabaab"},
		{"5:1:1 in runs", testSet("a:5", "b:1", "c:1"), 14, "aaaaabcaaaaabc"},
		{"weight 0 is out", testSet("a:1", "b:0", "c:2"), 6, "accacc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sequence(t, NewStaticRR(tt.set), tt.n); got != tt.want {
				t.Errorf("sequence = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStaticRRCycle checks exact weights over one cycle of a large set.
func TestStaticRRCycle(t *testing.T) {
	s := testSet("a:256", "b:1", "c:77", "d:128")
	got := sequence(t, NewStaticRR(s), 256+1+77+128)
	for _, m := range s {
		if n := strings.Count(got, m.Endpoint.Name); n != int(m.Weight) {
			t.Errorf("%s: %d picks in a cycle, want %d", m.Endpoint.Name, n, m.Weight)
		}
	}
}
