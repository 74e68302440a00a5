// Package units writes quantities for people to read: byte counts and
// ages, the same way in sluicectl's tables and on a node's status page, and
// shares as percents.
package units

import (
	"fmt"
	"time"
)

// Bytes is n in binary units with one decimal: 512B, 1.5KiB, 3.0MiB.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Age is how long ago t was, in at most two units: 42s, 5m03s, 3h07m,
// 2d04h.
func Age(t, now time.Time) string {
	d := max(now.Sub(t), 0)
	s := int64(d / time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", s)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s/3600%24)
}

// Percent is a share (0.05) as a percent with three significant digits:
// 5%, 0.125%. A share under one in a billion is 0%: it is the rate a
// rollout is given to allow no errors at all (0 means its default).
func Percent(share float64) string {
	if share < 1e-9 {
		return "0%"
	}
	return fmt.Sprintf("%.3g%%", share*100)
}
