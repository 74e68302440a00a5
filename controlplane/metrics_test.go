package controlplane

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	dpstats "github.com/sluice-lb/sluice/dataplane/stats"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// scrape fetches /metrics and parses it with Prometheus' own text parser.
func (cp *testCP) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + cp.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the value of the family's metric whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("/metrics has no %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("/metrics has no %s%v", name, want)
	return 0
}

// TestMetrics: what /metrics says follows what nodes do: a push and its
// ACK, a NACK, a node that lags, stats records.
func TestMetrics(t *testing.T) {
	ctx := testContext(t)
	cp := startCP(t, t.TempDir())

	m := cp.scrape(t)
	for name, want := range map[string]float64{
		"sluice_cp_nodes_connected": 0, "sluice_cp_pushes_total": 0, "sluice_cp_acks_total": 0,
		"sluice_cp_nacks_total": 0, "sluice_cp_snapshot_version": 0, "sluice_cp_stats_records_received_total": 0,
	} {
		if got := value(t, m, name, nil); got != want {
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

	m = cp.scrape(t)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_cp_nodes_connected", nil, 1},
		{"sluice_cp_nodes_out_of_date", nil, 1}, // it refused 2 and runs 1
		{"sluice_cp_snapshot_version", nil, 2},
		{"sluice_cp_pushes_total", nil, 2},
		{"sluice_cp_acks_total", nil, 1},
		{"sluice_cp_nacks_total", nil, 1},
		{"sluice_cp_push_answer_seconds", map[string]string{"result": "ack"}, 1},
		{"sluice_cp_push_answer_seconds", map[string]string{"result": "nack"}, 1},
		{"sluice_cp_stats_records_received_total", nil, 3},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
