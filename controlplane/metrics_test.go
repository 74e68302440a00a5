package controlplane

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	dpstats "github.com/sluice-lb/sluice/dataplane/stats"
	"github.com/sluice-lb/sluice/internal/promtext"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestMetrics: what /metrics says follows what nodes do: a push and its
// ACK, a NACK, a node that lags, stats records.
func TestMetrics(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())

	url := "http://" + cp.HTTPAddr().String() + "/metrics"
	m := promtext.Scrape(t, url)
	for name, want := range map[string]float64{
		"sluice_cp_nodes_connected": 0, "sluice_cp_pushes_total": 0, "sluice_cp_acks_total": 0,
		"sluice_cp_nacks_total": 0, "sluice_cp_snapshot_version": 0, "sluice_cp_stats_records_received_total": 0,
	} {
		if got := m.Value(name); got != want {
			t.Errorf("at start %s = %v, want %v", name, got, want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}

	cp.apply(ctx, t, snap(t, 1))
	n := cp.connect(ctx, t, "edge-1", "")
	n.ack(n.next(ctx))
	cp.waitNode(ctx, t, "edge-1", "ACK of 1", func(s *sluicev1.NodeStatus) bool { return s.GetAckedVersion() == 1 })
	cp.apply(ctx, t, snap(t, 2))
	n.nack(n.next(ctx), "1", "bind: address already in use")
	cp.waitNode(ctx, t, "edge-1", "NACK of 2", func(s *sluicev1.NodeStatus) bool { return s.GetNackedVersion() == 2 })

	rep := dpstats.NewReporter(16, slog.New(slog.DiscardHandler))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rep.Run(rctx, cp.conn, "edge-1"); close(done) }()
	for range 3 {
		rep.Record(&conntrack.ConnInfo{Listener: "public"})
	}
	for cp.stats.Counters().Received < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the control plane did not receive 3 records")
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop()
	<-done

	m = promtext.Scrape(t, url)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sluice_cp_nodes_connected", nil, 1},
		{"sluice_cp_nodes_out_of_date", nil, 1}, // it refused 2 and runs 1
		{"sluice_cp_snapshot_version", nil, 2},
		{"sluice_cp_pushes_total", nil, 2},
		{"sluice_cp_acks_total", nil, 1},
		{"sluice_cp_nacks_total", nil, 1},
		{"sluice_cp_push_answer_seconds", []string{"ack"}, 1},
		{"sluice_cp_push_answer_seconds", []string{"nack"}, 1},
		{"sluice_cp_stats_records_received_total", nil, 3},
	} {
		if got := m.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
