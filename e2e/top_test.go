package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/units"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// nodeReport returns node id's last endpoint report as the control plane
// has it, by cluster/endpoint, and when it came.
func (c *cp) nodeReport(t *testing.T, id string) (time.Time, map[string]*sluicev1.EndpointStats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.api.GetStats(ctx, &sluicev1.GetStatsRequest{NodeId: id})
	if err != nil || len(resp.GetNodes()) > 1 {
		t.Fatalf("GetStats of %s: %v, %v", id, resp, err)
	}
	eps := map[string]*sluicev1.EndpointStats{}
	if len(resp.GetNodes()) == 0 {
		return time.Time{}, eps
	}
	n := resp.GetNodes()[0]
	for _, ep := range n.GetEndpoints() {
		eps[ep.GetCluster()+"/"+ep.GetEndpoint()] = ep
	}
	return n.GetReportedAt().AsTime(), eps
}

// reportTime is when node id last reported its endpoints.
func (c *cp) reportTime(t *testing.T, id string) time.Time {
	t.Helper()
	at, _ := c.nodeReport(t, id)
	return at
}

// nextReport waits for a report of node id newer than since and returns
// it as nodeReport does.
func (c *cp) nextReport(t *testing.T, id string, since time.Time) (time.Time, map[string]*sluicev1.EndpointStats) {
	t.Helper()
	var at time.Time
	var eps map[string]*sluicev1.EndpointStats
	waitFor(t, "a new report of "+id, func() bool {
		at, eps = c.nodeReport(t, id)
		return at.After(since)
	})
	return at, eps
}

// lastFrame returns the last frame of top's output that contains want.
func lastFrame(out, want string) string {
	frames := strings.Split(out, "sluicectl top · ")
	for i := len(frames) - 1; i >= 0; i-- {
		if strings.Contains(frames[i], want) {
			return frames[i]
		}
	}
	return ""
}

// TestTopRates: sluicectl top, its stdout a pipe, prints frame after frame;
// the rates of the frame after a burst of traffic are the requests, errors
// and bytes of the burst over the time between the node's two reports, and
// --once prints one frame with rates and exits.
func TestTopRates(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	failing := errorBackend(t, http.StatusInternalServerError, "broken")
	web, api := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints:
      - { name: a, address: %s, weight: 3 }
      - { name: b, address: %s }
  - name: api
    endpoints: [{ name: e, address: %s }]
listeners:
  - { name: web, address: %s, protocol: HTTP, default_cluster: web }
  - { name: api, address: %s, protocol: HTTP, default_cluster: api }
`, a.addr, b.addr, failing, web, api)))
	waitFor(t, "the node's first report", func() bool {
		_, eps := c.nodeReport(t, "node-1")
		return len(eps) == 3
	})

	top := start(t, "sluicectl", "--cp", c.addr, "top", "--interval", "100ms", "--node", "node-1")
	waitFor(t, "top to show rates", func() bool { return strings.Contains(top.out.String(), "rates over ") })
	// The node reports every second: the burst goes out right after a
	// report, and again should it straddle two (the next report would
	// then lack part of it), so that one pair of reports holds it whole.
	burst := func() {
		if got := count(t, "http://"+web+"/", 8, nil); got["a"] != 6 || got["b"] != 2 {
			t.Fatalf("answers %v, want a:6 b:2", got)
		}
		for range 4 {
			if _, err := get(http.DefaultClient, "http://"+api+"/"); err == nil || !strings.HasPrefix(err.Error(), "status 500") {
				t.Fatalf("a request to the failing endpoint: %v, want status 500", err)
			}
		}
	}
	var before, after time.Time
	var was, now map[string]*sluicev1.EndpointStats
	for attempt := 1; ; attempt++ {
		before, was = c.nextReport(t, "node-1", c.reportTime(t, "node-1"))
		burst()
		after, now = c.nextReport(t, "node-1", before)
		if now["web/a"].GetRequests() == was["web/a"].GetRequests()+6 && now["web/b"].GetRequests() == was["web/b"].GetRequests()+2 &&
			now["api/e"].GetResponses_5Xx() == was["api/e"].GetResponses_5Xx()+4 {
			break
		}
		if attempt == 3 {
			t.Fatalf("three bursts each straddled two reports")
		}
	}
	window := after.Sub(before)
	head := fmt.Sprintf("rates over %s)", window.Round(time.Millisecond))
	secs := window.Seconds()
	rate := func(n uint64) string { return fmt.Sprintf("%.1f", float64(n)/secs) }
	bytesRate := func(key string, f func(*sluicev1.EndpointStats) uint64) string {
		return units.Bytes(uint64(float64(f(now[key])-f(was[key]))/secs+0.5)) + "/s"
	}
	in, sent := (*sluicev1.EndpointStats).GetBytesIn, (*sluicev1.EndpointStats).GetBytesOut
	// CLUSTER/ENDPOINT HEALTH WEIGHT ACTIVE REQ/S ERR/S IN/S OUT/S
	rows := map[string]string{}
	for _, tt := range []struct {
		key, health, weight, reqs, errs string
	}{
		{"web/a", "UP", "3", rate(6), rate(0)},
		{"web/b", "UP", "1", rate(2), rate(0)},
		{"api/e", "UP", "1", rate(4), rate(4)},
	} {
		rows[tt.key] = strings.Join([]string{tt.key, tt.health, tt.weight, "0", tt.reqs, tt.errs, bytesRate(tt.key, in), bytesRate(tt.key, sent)}, " ")
	}
	nodeLine := fmt.Sprintf("%s: %s req/s, %s err/s", head, rate(12), rate(4))
	// Other pairs of reports may span the same time, so the frame of this
	// pair is the one that shows its rates.
	shows := func(frame string) bool {
		if !strings.Contains(frame, "node-1 (connected, reported ") || !strings.Contains(frame, nodeLine) {
			return false
		}
		for key, want := range rows {
			if strings.Join(fields(frame, key), " ") != want {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(testTimeout)
	for !slices.ContainsFunc(strings.Split(top.out.String(), "sluicectl top · "), shows) {
		if time.Now().After(deadline) {
			t.Fatalf("no frame of top shows the burst: want %q and rows %q; the last over the same time:\n%s",
				nodeLine, rows, lastFrame(top.out.String(), head))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := top.out.String(); strings.Contains(out, "\x1b[") {
		t.Errorf("top wrote terminal control sequences to a pipe: %q", out)
	}

	stdout, stderr, code := ctl(t, c.addr, "top", "--once", "--cluster", "web")
	if code != 0 || strings.Count(stdout, "sluicectl top · ") != 1 || !strings.Contains(stdout, "rates over ") ||
		fields(stdout, "web/a") == nil || fields(stdout, "api/e") != nil {
		t.Errorf("top --once --cluster web: exit %d, stdout %q, stderr %q; want one frame with rates, web's endpoints only", code, stdout, stderr)
	}
}
