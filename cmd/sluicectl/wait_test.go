package main

import (
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// During a rolling restart a draining node refuses every version ("node is
// shutting down"); --wait leaves it out, as it does a disconnected node,
// rather than report that the fleet refused the version.
func TestWaitLeavesOutDrainingNodes(t *testing.T) {
	f := &fakeCP{}
	addr := startCP(t, f)
	if code, _, stderr := sluicectl(t, addr, "apply", "-f", quickstart); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	f.mu.Lock()
	f.nodes = []*sluicev1.NodeStatus{
		{Id: "edge-1", Connected: true, Draining: true, Group: "default", AckedVersion: 1,
			SentVersion: 2, NackedVersion: 2, NackError: "node is shutting down"},
		{Id: "edge-2", Connected: true, Group: "default", AckedVersion: 2, SentVersion: 2},
	}
	f.mu.Unlock()
	code, stdout, stderr := sluicectl(t, addr, "apply", "-f", writeFile(t, "heavier.yaml", heavier), "--wait", "--wait-timeout", "5s")
	if code != 0 || !strings.Contains(stdout, "1 node applied version 2") {
		t.Errorf("apply --wait: exit %d\nstdout: %s\nstderr: %s\nwant exit 0: the one node not draining applied version 2", code, stdout, stderr)
	}
}
