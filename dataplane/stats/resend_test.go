package stats

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// serveSink serves s on ln until the returned stop is called.
func serveSink(t *testing.T, s *sink, ln net.Listener) (stop func()) {
	t.Helper()
	srv := grpc.NewServer()
	sluicev1.RegisterStatsServiceServer(srv, s)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return srv.Stop
}

// TestBatchSurvivesControlPlaneRestart: the records of connections that
// ended while the control plane restarted reach it once it is back. The
// queue had room for them: nothing overflowed, so nothing is dropped or
// counted as dropped, even though the stream they were first sent on
// had broken.
func TestBatchSurvivesControlPlaneRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := &sink{reports: make(chan *sluicev1.StatsReport, 64)}
	stopFirst := serveSink(t, s, ln)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	r := NewReporter(0, quiet())
	run(t, r, conn)
	if rep := s.next(t); rep.GetNodeId() != "n1" {
		t.Fatalf("first report names %q, want n1", rep.GetNodeId())
	}

	// The control plane goes away; the node sees its connection drop.
	stopFirst()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	for st := conn.GetState(); st == connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatal("the connection to the stopped control plane stays ready")
		}
	}

	// Connections end meanwhile; the reporter tries to send them on the
	// broken stream, then waits to reconnect.
	for i := range 3 {
		r.Record(&conntrack.ConnInfo{Listener: "l", Requests: uint64(i + 1)})
	}
	time.Sleep(3 * DefaultInterval)

	// The control plane is back, at the same address.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	serveSink(t, s, ln2)

	var got []*sluicev1.ConnRecord
	deadline := time.After(defaultTestTimeout)
	for len(got) < 3 {
		select {
		case rep := <-s.reports:
			got = append(got, rep.GetRecords()...)
		case <-deadline:
			t.Fatalf("after the control plane came back it got %d of the 3 records; the node counts %d dropped", len(got), r.Dropped())
		}
	}
	for i, rec := range got {
		if rec.GetRequests() != uint64(i+1) {
			t.Errorf("record %d has %d requests, want %d (in order, each once)", i, rec.GetRequests(), i+1)
		}
	}
	if d := r.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0: the queue never overflowed", d)
	}
}
