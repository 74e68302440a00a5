package stats

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// BenchmarkIngest measures how many connection records the control plane
// takes in per second: nodes stream reports of 512 records (the node's
// batch) over real gRPC on loopback into the stats server and its ring.
// Run at one core: go test -run x -bench Ingest -cpu 1 ./controlplane/stats
func BenchmarkIngest(b *testing.B) {
	for _, nodes := range []int{1, 8} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := NewServer(NewRing(DefaultRingSize), nil, nil)
			gs := grpc.NewServer()
			sluicev1.RegisterStatsServiceServer(gs, srv)
			go gs.Serve(lis)
			defer gs.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := sluicev1.NewStatsServiceClient(conn)
			const batch = 512
			recs := make([]*sluicev1.ConnRecord, batch)
			for i := range recs {
				recs[i] = &sluicev1.ConnRecord{
					Listener: "public", ClientAddress: "127.0.0.1:40000", Cluster: "web", Endpoint: "web1",
					Start: timestamppb.Now(), Duration: durationpb.New(3 * time.Millisecond),
					BytesIn: 512, BytesOut: 4096, Requests: 1,
					CloseReason: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED,
				}
			}
			ctx := context.Background()
			streams := make([]grpc.ClientStreamingClient[sluicev1.StatsReport, sluicev1.ReportSummary], nodes)
			for i := range streams {
				if streams[i], err = client.Report(ctx); err != nil {
					b.Fatal(err)
				}
				if err := streams[i].Send(&sluicev1.StatsReport{NodeId: fmt.Sprintf("node-%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			before := srv.Counters().Received
			b.ResetTimer()
			start := time.Now()
			reports := b.N/batch + 1
			for i := range reports {
				if err := streams[i%nodes].Send(&sluicev1.StatsReport{Records: recs}); err != nil {
					b.Fatal(err)
				}
			}
			want := before + uint64(reports*batch)
			for srv.Counters().Received < want {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(reports*batch)/time.Since(start).Seconds(), "records/s")
			for _, s := range streams {
				s.CloseAndRecv()
			}
		})
	}
}
