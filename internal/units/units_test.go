package units

import (
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 3 << 20: "3.0MiB", 1 << 40: "1.0TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		-time.Second:                  "0s",
		42 * time.Second:              "42s",
		5*time.Minute + 3*time.Second: "5m03s",
		3*time.Hour + 7*time.Minute:   "3h07m",
		52 * time.Hour:                "2d04h",
	} {
		if got := Age(now.Add(-d), now); got != want {
			t.Errorf("Age(now-%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPercent(t *testing.T) {
	for share, want := range map[float64]string{0: "0%", 1e-12: "0%", 0.05: "5%", 0.00125: "0.125%", 1: "100%", 2.0 / 3: "66.7%"} {
		if got := Percent(share); got != want {
			t.Errorf("Percent(%v) = %q, want %q", share, got, want)
		}
	}
}
