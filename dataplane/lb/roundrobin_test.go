package lb

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

func testSet(spec ...string) Set {
	// spec entries: "name:weight", "name:weight:backup", "name:weight:down"
	var s Set
	for _, e := range spec {
		parts := strings.Split(e, ":")
		var w uint32
		fmt.Sscan(parts[1], &w)
		m := Member{Endpoint: upstream.New("c", parts[0], "127.0.0.1:1"), Weight: w}
		for _, f := range parts[2:] {
			switch f {
			case "backup":
				m.Backup = true
			case "down":
				m.Down = true
			}
		}
		s = append(s, m)
	}
	return s
}

func sequence(t *testing.T, p Picker, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		ep, err := p.Pick()
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		b.WriteString(ep.Name)
	}
	return b.String()
}

func TestRoundRobinSequence(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		n    int
		want string
	}{
		{"equal", testSet("a:1", "b:1", "c:1"), 6, "abcabc"},
		{"smooth 5:1:1", testSet("a:5", "b:1", "c:1"), 7, "aabacaa"},
		{"2:1", testSet("a:2", "b:1"), 6, "abaaba"},
		{"weight 0 is out", testSet("a:1", "b:0", "c:1"), 4, "acac"},
		{"down is out", testSet("a:1", "b:1:down", "c:1"), 4, "acac"},
		{"backup unused while a primary is up", testSet("a:1:down", "b:1", "s:1:backup"), 3, "bbb"},
		{"first backup when all primaries down", testSet("a:1:down", "s:1:backup", "t:1:backup"), 3, "sss"},
		{"backup without weight", testSet("a:1:down", "s:0:backup"), 2, "ss"},
		{"down backup skipped", testSet("a:1:down", "s:1:backup:down", "t:1:backup"), 2, "tt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sequence(t, NewRoundRobin(tt.set), tt.n); got != tt.want {
				t.Errorf("sequence = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRoundRobinNoEndpoint(t *testing.T) {
	for _, s := range []Set{nil, testSet("a:0"), testSet("a:1:down", "b:1:backup:down")} {
		if _, err := NewRoundRobin(s).Pick(); err != ErrNoEndpoint {
			t.Errorf("Pick over %v: err = %v, want ErrNoEndpoint", s, err)
		}
	}
}

// TestRoundRobinLargeWeights checks that the locked path (sum of weights
// beyond the precomputed schedule) gives the same proportions.
func TestRoundRobinLargeWeights(t *testing.T) {
	var spec []string
	for i := range 40 {
		spec = append(spec, fmt.Sprintf("e%d:%d", i, 100+i%3*50))
	}
	rr := NewRoundRobin(testSet(spec...)).(*RoundRobin)
	if rr.schedule != nil {
		t.Fatalf("sum %d should not be precomputed", rr.total)
	}
	counts := map[string]int{}
	for range int(rr.total) {
		ep, _ := rr.Pick()
		counts[ep.Name]++
	}
	for _, m := range rr.members {
		if got := counts[m.Endpoint.Name]; got != int(m.Weight) {
			t.Errorf("%s picked %d times in one cycle, want %d", m.Endpoint.Name, got, m.Weight)
		}
	}
}

func BenchmarkRoundRobinPick(b *testing.B) {
	p := NewRoundRobin(testSet("a:2", "b:1", "c:3"))
	b.ReportAllocs()
	for b.Loop() {
		p.Pick()
	}
}
