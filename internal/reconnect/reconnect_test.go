package reconnect

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// Loop runs the stream again after each end, waiting at least min/2 and
// no more than its ceiling (bounded by max) each time, and returns once
// ctx ends.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const min, max = 10 * time.Millisecond, 40 * time.Millisecond
	var starts []time.Time
	progress := []bool{false, false, false, false, true, false}
	Loop(ctx, min, max, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", func(context.Context) (bool, error) {
		starts = append(starts, time.Now())
		if len(starts) == len(progress) {
			cancel()
			return false, ctx.Err()
		}
		return progress[len(starts)-1], errors.New("ended")
	})
	if len(starts) != len(progress) {
		t.Fatalf("%d streams, want %d", len(starts), len(progress))
	}
	// Each wait lies in [min/2, min/2+ceiling), the ceiling doubling from
	// min up to max, and back to min after the stream that progressed
	// (50ms of slack for a busy machine).
	ceilings := []time.Duration{min, 2 * min, max, max, min}
	for i, c := range ceilings {
		w := starts[i+1].Sub(starts[i])
		if w < min/2 || w > min/2+c+50*time.Millisecond {
			t.Errorf("wait %d: %v, want between %v and about %v", i, w, min/2, min/2+c)
		}
	}
}
