package discovery

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// BenchmarkFanout measures one rollout: from Publish of a new version of a
// 100-cluster snapshot (2 endpoints each, 10 listeners; about 7 KB) until the
// fleet registry has recorded the ACK of every stream.
//
// The nodes run in a helper process (this test binary running
// TestFanoutHelperProcess), one connection per node, each ACKing a response
// as soon as it has it. With nodes=decode they are generated clients that
// decode the whole snapshot, as sluice-dp does; on one machine the 10k nodes'
// decoding then shares the CPUs with the control plane and dominates. With
// nodes=skim they read only version_info and nonce, which leaves the control
// plane's own cost. B/node is the control plane process's heap and stack
// growth per connected, idle node (gRPC's per-connection transport is most of
// it).
func BenchmarkFanout(b *testing.B) {
	for _, streams := range []int{1000, 10000} {
		for _, nodes := range []string{"decode", "skim"} {
			b.Run(fmt.Sprintf("streams=%d/nodes=%s", streams, nodes), func(b *testing.B) { benchFanout(b, streams, nodes) })
		}
	}
}

func benchSnapshot(seed uint32) *sluicev1.Snapshot {
	s := testSnapshot(100, 2, seed)
	s.Listeners = s.Listeners[:10]
	return s
}

func benchFanout(b *testing.B, streams int, nodes string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ts := startServer(b)
	snaps := [2]*sluicev1.Snapshot{benchSnapshot(1), benchSnapshot(2)}
	if err := ts.disc.Publish(1, snaps[1]); err != nil {
		b.Fatal(err)
	}

	before := memInUse()
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFanoutHelperProcess$", "-test.bench=^$")
	helper.Env = append(os.Environ(),
		"SLUICE_FANOUT_ADDR="+ts.addr,
		"SLUICE_FANOUT_STREAMS="+strconv.Itoa(streams),
		"SLUICE_FANOUT_NODES="+nodes)
	helper.Stderr = os.Stderr
	stdin, err := helper.StdinPipe() // closing it stops the helper
	if err != nil {
		b.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		helper.Wait()
	}()

	waitAll := func(version uint64) {
		for {
			if applied, _ := ts.fleet.Count(version); applied == streams {
				return
			}
			select {
			case <-ctx.Done():
				applied, connected := ts.fleet.Count(version)
				b.Fatalf("version %d: %d of %d streams (%d connected) ACKed: %v", version, applied, streams, connected, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitAll(1)
	perNode := float64(memInUse()-before) / float64(streams)

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		version := uint64(i + 2)
		if err := ts.disc.Publish(version, snaps[i%2]); err != nil {
			b.Fatal(err)
		}
		waitAll(version)
	}
	b.StopTimer()
	b.ReportMetric(perNode, "B/node")
}

// TestFanoutHelperProcess is BenchmarkFanout's fleet of nodes; it runs only
// when the benchmark starts it.
func TestFanoutHelperProcess(t *testing.T) {
	addr := os.Getenv("SLUICE_FANOUT_ADDR")
	if addr == "" {
		t.Skip("runs only as BenchmarkFanout's helper process")
	}
	streams, _ := strconv.Atoi(os.Getenv("SLUICE_FANOUT_STREAMS"))
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if os.Getenv("SLUICE_FANOUT_NODES") == "skim" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(skimCodec{encoding.GetCodecV2(protoenc.Name)})))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin) // the benchmark closes stdin when done
		cancel()
	}()
	var wg sync.WaitGroup
	for i := range streams {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := sluicev1.NewDiscoveryServiceClient(conn).StreamSnapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "node-" + strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for {
				r, err := stream.Recv()
				if err != nil {
					return
				}
				if err := stream.Send(&sluicev1.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}

// skimCodec is a client codec that decodes only the envelope of a
// DiscoveryResponse, leaving the snapshot undecoded.
type skimCodec struct{ encoding.CodecV2 }

func (c skimCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*sluicev1.DiscoveryResponse)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if val, m := protowire.ConsumeBytes(b); m > 0 && typ == protowire.BytesType {
			switch num {
			case 1:
				r.VersionInfo = string(val)
			case 2:
				r.Nonce = string(val)
			}
		}
		b = b[n:]
	}
	return nil
}

func memInUse() uint64 {
	// Twice: sync.Pool caches (gRPC's buffers) survive one collection.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
