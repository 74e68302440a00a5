package stats

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type sink struct {
	sluicev1.UnimplementedStatsServiceServer
	reports chan *sluicev1.StatsReport
}

func (s *sink) Report(st grpc.ClientStreamingServer[sluicev1.StatsReport, sluicev1.ReportSummary]) error {
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		s.reports <- r
	}
}

// TestRecordNeverBlocks: a full queue drops and counts; what was queued
// reaches the control plane with the drop count.
func TestRecordNeverBlocks(t *testing.T) {
	r := NewReporter(4, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range 10 {
		r.Record(&conntrack.ConnInfo{Listener: "l", Requests: uint64(i)})
	}
	if r.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6 (queue of 4, 10 records)", r.Dropped())
	}

	s := &sink{reports: make(chan *sluicev1.StatsReport, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterStatsServiceServer(srv, s)
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, conn, "n1"); close(done) }()
	defer func() { cancel(); <-done }()

	var got []*sluicev1.ConnRecord
	var dropped uint64
	deadline := time.After(5 * time.Second)
	first := true
	for len(got) < 4 {
		select {
		case rep := <-s.reports:
			if first && rep.GetNodeId() != "n1" {
				t.Errorf("first report names node %q, want n1", rep.GetNodeId())
			}
			first = false
			got = append(got, rep.GetRecords()...)
			dropped += rep.GetDropped()
		case <-deadline:
			t.Fatalf("got %d records, want 4", len(got))
		}
	}
	if dropped != 6 {
		t.Errorf("reported dropped = %d, want 6", dropped)
	}
	for i, rec := range got {
		if rec.GetRequests() != uint64(i) || rec.GetListener() != "l" {
			t.Errorf("record %d = %v, want listener l with %d requests (queue order)", i, rec, i)
		}
	}
	if r.Sent() != 4 {
		t.Errorf("Sent = %d, want 4", r.Sent())
	}
}
