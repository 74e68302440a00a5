package admin

import (
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestRatesNewAndRecreatedEndpoints: an endpoint that appears during a
// window, or whose counters went back because it was recreated, has no
// rate for that window; the others have theirs.
func TestRatesNewAndRecreatedEndpoints(t *testing.T) {
	r := newRates()
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	ep := func(name string, requests uint64) node.EndpointStatus {
		return node.EndpointStatus{Cluster: "web", Name: name, Stats: upstream.Stats{Requests: requests}}
	}
	if shown, window := r.observe([]node.EndpointStatus{ep("a", 10), ep("b", 50)}); len(shown) != 0 || window != 0 {
		t.Fatalf("first view: %v over %v, want no rates", shown, window)
	}
	now = now.Add(4 * time.Second)
	shown, window := r.observe([]node.EndpointStatus{ep("a", 30), ep("b", 2), ep("c", 8)})
	if window != 4*time.Second || len(shown) != 1 || shown["web/a"].Requests != 5 {
		t.Errorf("second view: %v over %v, want only web/a at 5 req/s over 4s", shown, window)
	}
}
