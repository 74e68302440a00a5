package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestReadsAskOtherReplicas: conns, stats and top through one replica
// show what the nodes of the others reported there too, asking each at
// the name the first answer gives; a replica that cannot be asked is
// named with the reason, and the command exits 1.
func TestReadsAskOtherReplicas(t *testing.T) {
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(time.Unix(1_800_000_000+int64(s), 0)) }
	b := &fakeCP{
		records: []*sluicev1.ConnRecord{
			{NodeId: "dp-2", Listener: "public", ClientAddress: "10.2.2.2:50002", Start: at(30)},
			{NodeId: "dp-2", Listener: "public", ClientAddress: "10.2.2.2:50001", Start: at(10)},
		},
		statsOut: &sluicev1.GetStatsResponse{Nodes: []*sluicev1.NodeStats{
			{NodeId: "dp-1", Connected: true, Replica: "whoever asked"},
			{NodeId: "dp-2", Connected: true, ReportedAt: timestamppb.Now(), Endpoints: []*sluicev1.EndpointStats{
				{Cluster: "web", Endpoint: "web2", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Weight: 1, Requests: 77}}},
		}},
	}
	bAddr := startCP(t, ticking{b})
	const dead = "127.0.0.1:1" // nothing listens on port 1
	a := &fakeCP{
		records: []*sluicev1.ConnRecord{
			{NodeId: "dp-1", Listener: "public", ClientAddress: "10.1.1.1:50002", Start: at(20)},
			{NodeId: "dp-1", Listener: "public", ClientAddress: "10.1.1.1:50001", Start: at(0)},
		},
		elsewhere: []string{bAddr},
		statsOut: &sluicev1.GetStatsResponse{Nodes: []*sluicev1.NodeStats{
			{NodeId: "dp-1", Connected: true, ReportedAt: timestamppb.Now(), Endpoints: []*sluicev1.EndpointStats{
				{Cluster: "web", Endpoint: "web1", Health: sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, Weight: 1, Requests: 5}}},
			{NodeId: "dp-2", Connected: true, Replica: bAddr},
		}},
	}
	aAddr := startCP(t, ticking{a})

	// Both replicas' records, newest first, within --limit; the other
	// replica is asked with the same filters.
	code, stdout, stderr := sluicectl(t, aAddr, "conns", "--limit", "3", "--listener", "public")
	var clients []string
	for _, row := range tableRows(stdout)[1:] {
		clients = append(clients, row[3])
	}
	if want := "10.2.2.2:50002 10.1.1.1:50002 10.2.2.2:50001"; code != 0 || stderr != "" || strings.Join(clients, " ") != want {
		t.Errorf("conns --limit 3: status %d, stderr %q, clients %q; want 0 and %s\n%s", code, stderr, clients, want, stdout)
	}
	if got := b.conns[len(b.conns)-1]; got.GetLimit() != 3 || got.GetListener() != "public" {
		t.Errorf("the other replica was asked %v, want limit 3 and listener public", got)
	}
	code, stdout, _ = sluicectl(t, aAddr, "conns", "-o", "json")
	if code != 0 || strings.Count(stdout, `"client_address"`) != 4 || !strings.Contains(stdout, `"reported_elsewhere": []`) {
		t.Errorf("conns -o json: status %d, want 4 records and no replica left unasked:\n%s", code, stdout)
	}

	// stats: the other replica's node with what it reported there.
	code, stdout, stderr = sluicectl(t, aAddr, "stats")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "dp-2 (connected, reported") || !strings.Contains(stdout, "web/web2") ||
		strings.Contains(stdout, "which has its stats") {
		t.Errorf("stats: status %d, stderr %q; want dp-2's endpoints from its replica:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = sluicectl(t, aAddr, "top", "--once")
	if code != 0 || !strings.Contains(stdout, "web/web2") || !strings.Contains(stdout, "web/web1") {
		t.Errorf("top --once: status %d; want both nodes' endpoints:\n%s", code, stdout)
	}

	// Replicas that cannot be asked: what the others have, and why not.
	a.mu.Lock()
	a.elsewhere = []string{bAddr, dead, "cp-c"}
	a.mu.Unlock()
	code, stdout, stderr = sluicectl(t, aAddr, "conns")
	want := "sluicectl conns: replica " + dead + " could not be asked: dial tcp " + dead + ": connect: connection refused\n" +
		"sluicectl conns: replica cp-c could not be asked: its name is not a HOST:PORT address to call it at; ask it with --cp\n"
	if code != 1 || stderr != want || len(tableRows(stdout)) != 5 {
		t.Errorf("conns with two replicas unasked: status %d, stderr %q, stdout:\n%s\nwant 1, 4 records and %q", code, stderr, stdout, want)
	}
	code, stdout, _ = sluicectl(t, aAddr, "conns", "-o", "json")
	if code != 1 || !strings.Contains(stdout, `"reported_elsewhere": [`) || !strings.Contains(stdout, `"cp-c"`) || strings.Contains(stdout, `"`+bAddr+`"`) {
		t.Errorf("conns -o json: status %d, want reported_elsewhere to keep only the replicas not asked:\n%s", code, stdout)
	}
	a.mu.Lock()
	a.statsOut.Nodes[1].Replica = dead
	a.mu.Unlock()
	code, stdout, stderr = sluicectl(t, aAddr, "stats")
	want = "sluicectl stats: replica " + dead + " could not be asked: dial tcp " + dead + ": connect: connection refused\n"
	if code != 1 || stderr != want || !strings.Contains(stdout, "dp-2 (connected to replica "+dead+", which has its stats)") {
		t.Errorf("stats with dp-2's replica down: status %d, stderr %q; want 1, %q and the line naming it:\n%s", code, stderr, want, stdout)
	}
	code, stdout, _ = sluicectl(t, aAddr, "top", "--once")
	if code != 0 || !strings.Contains(stdout, strings.TrimPrefix(want, "sluicectl stats: ")) {
		t.Errorf("top --once with dp-2's replica down: status %d; want the frame to say why:\n%s", code, stdout)
	}
}

// ticking serves f's stats as nodes that report every second would: each
// node with endpoints reported at the last whole second, 10 more requests
// a second (top shows rates after two reports).
type ticking struct{ *fakeCP }

func (t ticking) GetStats(ctx context.Context, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	resp, err := t.fakeCP.GetStats(ctx, req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	resp = proto.Clone(resp).(*sluicev1.GetStatsResponse)
	t.mu.Unlock()
	at := time.Now().Truncate(time.Second)
	for _, n := range resp.GetNodes() {
		if len(n.GetEndpoints()) > 0 {
			n.ReportedAt = timestamppb.New(at)
			for _, ep := range n.GetEndpoints() {
				ep.Requests = uint64(at.Unix()%100000) * 10
			}
		}
	}
	return resp, nil
}
