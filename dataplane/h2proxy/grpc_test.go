package h2proxy

import (
	"strconv"
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1S", time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"99999999H", time.Duration(1<<63 - 1), true},
		{"12345678n", 12345678, true},
		{"5u", 5 * time.Microsecond, true},
		{"2M", 2 * time.Minute, true},
		{"123456789S", 0, false}, // 9 digits
		{"S", 0, false},
		{"1s", 0, false},
		{"-1S", 0, false},
		{"", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseGRPCTimeout: whatever the header holds, the parser does not
// panic, accepts only digits and a unit, and never returns a negative
// timeout.
func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1S", "100m", "99999999H", "0n", "x", "12345678u", "1H2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseGRPCTimeout(v)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative %v", v, d)
		}
		if _, err := strconv.ParseUint(v[:len(v)-1], 10, 64); err != nil || len(v) > 9 {
			t.Fatalf("%q accepted", v)
		}
	})
}

func TestGRPCAnswerEncoding(t *testing.T) {
	for status, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 413: 2, 431: 2, 501: 2} {
		if got := grpcCode(status); got != want {
			t.Errorf("grpcCode(%d) = %d, want %d", status, got, want)
		}
	}
	if got, want := grpcMessage("50% off: naïve\r\n"), "50%25 off: na%C3%AFve%0D%0A"; got != want {
		t.Errorf("grpcMessage = %q, want %q", got, want)
	}
}
