package snapshot

import (
	"strconv"
	"testing"
)

func TestParseWeight(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0", 0, true}, {"3", 3, true}, {"256", 256, true}, {"007", 7, true},
		{"257", 0, false}, {"-1", 0, false}, {"2.5", 0, false}, {"1e2", 0, false},
		{"", 0, false}, {" 3", 0, false}, {`"3"`, 0, false}, {"4294967296", 0, false},
	} {
		if got, ok := ParseWeight(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("ParseWeight(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzParseWeight: a weight read is one a snapshot accepts, and reads
// back as the same number.
func FuzzParseWeight(f *testing.F) {
	for _, s := range []string{"0", "256", "257", "-1", "2.5", "+3", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, ok := ParseWeight(s)
		if !ok {
			if w != 0 {
				t.Errorf("ParseWeight(%q) refused, but gave %d", s, w)
			}
			return
		}
		if w > MaxWeight {
			t.Errorf("ParseWeight(%q) = %d, past %d", s, w, MaxWeight)
		}
		if back, err := strconv.ParseUint(s, 10, 64); err != nil || back != uint64(w) {
			t.Errorf("ParseWeight(%q) = %d, but it reads as %d (%v)", s, w, back, err)
		}
	})
}
