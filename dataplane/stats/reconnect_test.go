package stats

import (
	"testing"
	"time"
)

// The waits before a broken stream is reopened are spread over half to one
// and a half times reconnectWait, so that the nodes of a fleet whose
// control plane restarted do not all reopen in the same instant.
func TestReconnectDelaySpreads(t *testing.T) {
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 200 {
		d := reconnectDelay()
		if d < reconnectWait/2 || d >= reconnectWait*3/2 {
			t.Fatalf("wait %v outside [%v, %v)", d, reconnectWait/2, reconnectWait*3/2)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// 200 draws over a second: the spread is far wider than a tenth.
	if hi-lo < reconnectWait/2 {
		t.Errorf("200 waits spread over %v only (%v to %v)", hi-lo, lo, hi)
	}
}
