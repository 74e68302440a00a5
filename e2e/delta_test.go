package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestDeltaLargeSnapshot: a node that runs a 2000-cluster snapshot gets a
// one-weight change as a delta of a few hundred bytes, not the whole
// snapshot again; it applies it, and traffic follows the new weights. Both
// sides' /metrics say so.
func TestDeltaLargeSnapshot(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	listen := freeAddr(t)

	snap := &sluicev1.Snapshot{
		Clusters: []*sluicev1.Cluster{{
			Name:     "web",
			LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN,
			Endpoints: []*sluicev1.Endpoint{
				{Name: "a", Address: a.addr, Weight: proto.Uint32(1)},
				{Name: "b", Address: b.addr, Weight: proto.Uint32(1)},
			},
		}},
		Listeners: []*sluicev1.Listener{{Name: "public", Address: listen, Protocol: sluicev1.Protocol_PROTOCOL_HTTP, DefaultCluster: "web"}},
	}
	for i := range 1999 {
		snap.Clusters = append(snap.Clusters, &sluicev1.Cluster{
			Name: fmt.Sprintf("filler-%04d", i),
			Endpoints: []*sluicev1.Endpoint{
				{Name: "e1", Address: fmt.Sprintf("10.%d.%d.1:8080", i/256, i%256)},
				{Name: "e2", Address: fmt.Sprintf("10.%d.%d.2:8080", i/256, i%256)},
			},
		})
	}
	apply := func(s *sluicev1.Snapshot) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := c.api.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: s, Author: "e2e"})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return resp.GetVersion()
	}
	v1 := apply(snap)
	dp, err := dataplane.Start(dataplane.Options{
		ControlPlane: c.addr,
		Node:         &sluicev1.Node{Id: "node-1"},
		AdminAddr:    "127.0.0.1:0",
		Logger:       quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dp.Close)
	waitVersion(t, dp, v1)

	client := &http.Client{Timeout: testTimeout}
	count := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			name, err := get(client, "http://"+listen+"/")
			if err != nil {
				t.Fatal(err)
			}
			got[name]++
		}
		return got
	}
	if got := count(20); got["a"] != 10 || got["b"] != 10 {
		t.Fatalf("weights 1:1 sent %v, want 10 each", got)
	}

	snap.Clusters[0].Endpoints[0].Weight = proto.Uint32(3)
	v2 := apply(snap)
	waitVersion(t, dp, v2)
	// Smooth weighted round robin: every 4 requests, 3 to a and 1 to b.
	if got := count(40); got["a"] != 30 || got["b"] != 10 {
		t.Errorf("weights 3:1 sent %v, want 30 to a and 10 to b", got)
	}

	node := promtext.Scrape(t, "http://"+dp.AdminAddr().String()+"/metrics")
	if got := node.Value("sluice_discovery_responses_total", "snapshot"); got != 1 {
		t.Errorf("node: whole snapshots received = %v, want 1 (the first)", got)
	}
	if got := node.Value("sluice_discovery_responses_total", "delta"); got != 1 {
		t.Errorf("node: deltas received = %v, want 1 (the weight change)", got)
	}
	full, delta := node.Value("sluice_discovery_received_bytes_total", "snapshot"), node.Value("sluice_discovery_received_bytes_total", "delta")
	t.Logf("node received %.0f bytes of snapshot, then %.0f bytes of delta", full, delta)
	if full < 100_000 || delta > 1000 {
		t.Errorf("node received %.0f bytes of snapshot and %.0f of delta; want > 100 kB and < 1 kB", full, delta)
	}

	cp := promtext.Scrape(t, "http://"+c.http+"/metrics")
	if got := cp.Value("sluice_cp_delta_pushes_total"); got != 1 {
		t.Errorf("control plane: delta pushes = %v, want 1", got)
	}
	if got := cp.Value("sluice_cp_pushes_total"); got != 2 {
		t.Errorf("control plane: pushes = %v, want 2", got)
	}
	if got := cp.Value("sluice_cp_pushed_bytes_total", "delta"); got == 0 || got > 1000 {
		t.Errorf("control plane: delta bytes pushed = %v, want a few hundred", got)
	}
	if st := c.nodeStatus(t, "node-1"); st.GetAckedVersion() != v2 {
		t.Errorf("control plane shows node-1 on %d, want %d", st.GetAckedVersion(), v2)
	}
}
