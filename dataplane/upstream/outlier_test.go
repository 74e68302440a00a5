package upstream

import (
	"context"
	"net"
	"testing"
	"time"
)

// reports records what an OutlierPolicy was told.
type reports []Cause

func (r *reports) policy(connect, fivexx uint32) *OutlierPolicy {
	return &OutlierPolicy{ConnectFailures: connect, Responses5xx: fivexx, Outlier: func(_ *Endpoint, c Cause) { *r = append(*r, c) }}
}

// A run of 5xx responses reaches the policy once per threshold's worth; any
// other status ends the run.
func TestOutlierResponses5xx(t *testing.T) {
	var got reports
	ep := New("c", "e", "127.0.0.1:1")
	ep.SetOutlierPolicy(got.policy(0, 3))
	for _, s := range []int{500, 503, 200, 502, 500, 404, 500, 500} {
		ep.Responded(s)
	}
	if len(got) != 0 {
		t.Fatalf("no 3 in a row yet, policy told %v", got)
	}
	ep.Responded(599)
	if len(got) != 1 || got[0] != Responses5xx {
		t.Fatalf("after 3 in a row: %v, want one Responses5xx", got)
	}
	ep.Responded(500)
	ep.Responded(500)
	if len(got) != 1 {
		t.Fatalf("the streak starts again after a report; got %v after 2 more", got)
	}
	ep.Responded(500)
	if len(got) != 2 {
		t.Fatalf("a second run of 3: %v, want two reports", got)
	}

	// Off: counted as stats, never reported, and the streak forgotten.
	ep.Responded(500)
	ep.Responded(500)
	ep.SetOutlierPolicy(nil)
	ep.Responded(500)
	ep.SetOutlierPolicy(got.policy(0, 3))
	ep.Responded(500)
	if len(got) != 2 {
		t.Errorf("streak survived turning the policy off: %v", got)
	}
	if n := ep.Stats().Responses5xx; n != 14 {
		t.Errorf("Responses5xx = %d, want all 14 counted", n)
	}
}

// Connects that fail in a row are reported; one that succeeds ends the run;
// one the caller gave up on counts neither way, but as a connect error
// unless its listener closed.
func TestOutlierConnectFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused from now on
	var got reports
	ep := New("c", "e", addr)
	ep.SetOutlierPolicy(got.policy(2, 0))
	ctx := context.Background()
	if _, err := ep.Dial(ctx, time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ep.Dial(canceled, time.Second); err == nil {
		t.Fatal("dial with an ended context succeeded")
	}
	closed, closeListener := context.WithCancelCause(ctx)
	closeListener(ErrListenerClosed)
	if _, err := ep.Dial(closed, time.Second); err == nil {
		t.Fatal("dial with a closed listener's context succeeded")
	}
	// An HTTP/2 stream's: its own context cancelled plainly, its
	// listener's with ErrListenerClosed.
	if _, err := ep.Dial(WithListener(canceled, closed), time.Second); err == nil {
		t.Fatal("dial with an ended context succeeded")
	}
	if len(got) != 0 {
		t.Fatalf("one real failure and one given up: policy told %v", got)
	}
	if _, err := ep.DialSession(ctx, time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	// A stream that gave up while its listener stays counts.
	if _, err := ep.Dial(WithListener(canceled, ctx), time.Second); err == nil {
		t.Fatal("dial with an ended context succeeded")
	}
	if len(got) != 1 || got[0] != ConnectFailures {
		t.Fatalf("after 2 refused connects: %v, want one ConnectFailures", got)
	}
	if n := ep.Stats().ConnectErrors; n != 4 {
		t.Errorf("ConnectErrors = %d, want 4 (the given-up ones, not the closed listeners')", n)
	}
	// 5xx do not count towards connect failures.
	ep.Responded(500)
	ep.Responded(500)
	if len(got) != 1 {
		t.Errorf("5xx with their trigger off were reported: %v", got)
	}

	// A successful connect ends the run.
	live := New("c", "live", listen(t))
	live.SetOutlierPolicy(got.policy(2, 0))
	live.streaks.connectFailures.Store(1) // one failure before
	c, err := live.Dial(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	live.Close(c)
	if n := live.streaks.connectFailures.Load(); n != 0 {
		t.Errorf("after a successful connect the streak is %d, want 0", n)
	}
}

// Counting results on the request path allocates nothing.
func TestOutlierNoAllocs(t *testing.T) {
	ep := New("c", "e", "127.0.0.1:1")
	ep.SetOutlierPolicy(&OutlierPolicy{ConnectFailures: 5, Responses5xx: 5, Outlier: func(*Endpoint, Cause) {}})
	status := 200
	allocs := testing.AllocsPerRun(1000, func() {
		ep.Responded(status)
		status ^= 200 ^ 500 // alternate, so streaks start and end
		ep.connected(status == 200)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per response, want 0", allocs)
	}
}
