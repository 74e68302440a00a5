package lb

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

func testSet(spec ...string) Set {
	// spec entries: "name:weight" then any of ":backup", ":down", ":max=N"
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
			default:
				if _, err := fmt.Sscanf(f, "max=%d", &m.MaxConn); err != nil {
					panic("testSet: bad flag " + f)
				}
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
		ep, err := p.Pick(Request{})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		b.WriteString(ep.Name)
	}
	return b.String()
}

// fromFirst has the pickers the test builds start at the first pick of
// their cycle, not at a random one (firstPick), so that their sequences
// can be written out.
func fromFirst(t *testing.T) {
	old := firstPick
	firstPick = func(uint64) uint64 { return 0 }
	t.Cleanup(func() { firstPick = old })
}

// TestRoundRobinStartsAnywhere: a new round robin, as every node builds
// one at every change of the cluster, starts at a random place in its
// cycle, so that a fleet does not send the first endpoint a burst; from
// there it runs the same cycle, every weight exact.
func TestRoundRobinStartsAnywhere(t *testing.T) {
	for name, newPicker := range map[string]func(Set) Picker{"ROUND_ROBIN": NewRoundRobin, "STATIC_RR": NewStaticRR} {
		t.Run(name, func(t *testing.T) {
			firsts := map[string]int{}
			for range 300 {
				p := newPicker(testSet("a:2", "b:1", "c:1"))
				seq := sequence(t, p, 8) // two cycles
				firsts[seq[:1]]++
				if got := map[rune]int{'a': strings.Count(seq, "a"), 'b': strings.Count(seq, "b"), 'c': strings.Count(seq, "c")}; got['a'] != 4 || got['b'] != 2 || got['c'] != 2 {
					t.Fatalf("two cycles from a random start: %q, want a 4 times, b and c twice", seq)
				}
				if seq[:4] != seq[4:] {
					t.Fatalf("%q does not repeat its cycle", seq)
				}
			}
			// Each of 300 pickers starts at a: 2 in 4; at b: 1 in 4.
			if firsts["a"] < 100 || firsts["b"] < 40 || firsts["c"] < 40 {
				t.Errorf("the first picks of 300 new pickers: %v; want each endpoint first by its weight", firsts)
			}
		})
	}
	t.Run("locked heap", func(t *testing.T) {
		var spec []string
		for i := range 2000 {
			spec = append(spec, fmt.Sprintf("e%d:%d", i, 101+i%3*50))
		}
		set := testSet(spec...)
		firsts := map[string]bool{}
		for range 20 {
			p := NewRoundRobin(set)
			if p.(*RoundRobin).schedule != nil {
				t.Fatal("2000 members of weights 101 to 201 have a schedule; want the heap")
			}
			ep, _ := p.Pick(Request{})
			firsts[ep.Name] = true
		}
		if len(firsts) < 10 {
			t.Errorf("20 new pickers started at %d endpoints (%v); want them spread", len(firsts), firsts)
		}
	})
}

func TestRoundRobinSequence(t *testing.T) {
	fromFirst(t)
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
		if _, err := NewRoundRobin(s).Pick(Request{}); err != ErrNoEndpoint {
			t.Errorf("Pick over %v: err = %v, want ErrNoEndpoint", s, err)
		}
	}
}

// TestRoundRobinLargeWeights checks that the deadline schedule (cycle
// beyond maxSmooth) and the locked heap (cycle beyond maxSchedule) give
// every member exactly its weight in each cycle.
func TestRoundRobinLargeWeights(t *testing.T) {
	tests := []struct {
		name      string
		members   int
		scheduled bool
	}{
		{"deadline schedule", 40, true},
		{"locked heap", 2000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spec []string
			for i := range tt.members {
				spec = append(spec, fmt.Sprintf("e%d:%d", i, 101+i%3*50))
			}
			rr := NewRoundRobin(testSet(spec...)).(*RoundRobin)
			if rr.total <= maxSmooth || (rr.schedule != nil) != tt.scheduled {
				t.Fatalf("sum %d: scheduled = %v, want %v", rr.total, rr.schedule != nil, tt.scheduled)
			}
			for cycle := range 2 {
				counts := map[string]int{}
				for range int(rr.total) {
					ep, _ := rr.Pick(Request{})
					counts[ep.Name]++
				}
				for _, m := range rr.members {
					if got := counts[m.Endpoint.Name]; got != int(m.Weight) {
						t.Fatalf("cycle %d: %s picked %d times, want %d", cycle, m.Endpoint.Name, got, m.Weight)
					}
				}
			}
		})
	}
}

// TestRoundRobinGCD checks that weights with a common divisor give the same
// smooth sequence as the reduced weights.
func TestRoundRobinGCD(t *testing.T) {
	fromFirst(t)
	if got, want := sequence(t, NewRoundRobin(testSet("a:250", "b:50", "c:50")), 14), "aabacaaaabacaa"; got != want {
		t.Errorf("sequence = %q, want %q", got, want)
	}
}

// TestRoundRobinSkipsFull checks that a full member's turn goes to the next
// member with a free slot, on both the scheduled and the heap path.
func TestRoundRobinSkipsFull(t *testing.T) {
	var big []string
	for i := range 20 {
		big = append(big, fmt.Sprintf("e%d:255", i))
	}
	for _, s := range []Set{testSet("a:1:max=1", "b:1", "c:1"), testSet(append([]string{"a:255:max=1"}, big...)...)} {
		p := NewRoundRobin(s)
		s[0].Endpoint.Acquire()
		for range 600 {
			ep, err := p.Pick(Request{})
			if err != nil || ep == s[0].Endpoint {
				t.Fatalf("Pick = %v, %v; want a member other than the full %s", ep.Name, err, s[0].Endpoint.Name)
			}
		}
		s[0].Endpoint.Release()
		seen := false
		for range 600 {
			ep, _ := p.Pick(Request{})
			seen = seen || ep == s[0].Endpoint
		}
		if !seen {
			t.Errorf("%s never picked again after its slot freed", s[0].Endpoint.Name)
		}
	}
}
