package node

import (
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/scale"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// scaleBackends starts n loopback backends for the rest of the test.
func scaleBackends(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for range n {
		b, err := scale.StartBackend()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(b.Close)
		addrs = append(addrs, b.Addr)
	}
	return addrs
}

func quietNode() *Node {
	return New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// TestApplyUnderTraffic is the unit-size version of the apply target
// (DESIGN.md: zero failed requests during an apply): 1,000 clusters of 10
// endpoints, re-applied again and again with weights moved and clusters
// replaced, while HTTP requests and TCP sessions flow through the node's
// listeners to real backends. Not one may fail. It asserts no timing;
// BenchmarkApplyScale and `make bench-scale` measure.
func TestApplyUnderTraffic(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	spec := scale.Target(scaleBackends(t, 4), loopback.FreeAddr(t), loopback.FreeAddr(t))
	spec.Clusters = 1000
	spec.CheckInterval = time.Second
	n := newNode(t)
	snap := scale.Build(spec)
	if err := n.Apply("0", snap); err != nil {
		t.Fatal(err)
	}
	traffic := scale.StartTraffic(spec.HTTPAddr, spec.TCPAddr, scale.TrafficSpec{Workers: 2, PerConn: 20})
	defer traffic.Stop()
	time.Sleep(50 * time.Millisecond)
	for gen := 1; gen <= rounds; gen++ {
		snap, _ = scale.Next(spec, snap, gen, scale.NormalChange)
		if err := n.Apply(strconv.Itoa(gen), snap); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	traffic.Stop()
	for _, l := range []struct {
		name string
		c    *scale.Counts
	}{{"HTTP", &traffic.HTTP}, {"TCP", &traffic.TCP}} {
		t.Logf("%s: %v", l.name, l.c)
		if l.c.Failed.Load() != 0 || l.c.OK.Load() == 0 {
			t.Errorf("%s through the node during %d applies: %v; want none failed", l.name, rounds, l.c)
		}
	}
	if got := len(n.Endpoints()); got != spec.Clusters*spec.Endpoints {
		t.Errorf("%d endpoints after the applies, want %d", got, spec.Clusters*spec.Endpoints)
	}
}

// BenchmarkApplyScale times Node.Apply at the size of the apply target in
// DESIGN.md (scale.Target: 10,000 clusters, 100,000 endpoints, a tenth
// health checked) with -benchtime=Nx for a few rounds:
//
//	cold          the first apply, on a node that just started; and
//	              (ms-all-pickers) until the Maglev pickers Apply defers
//	              are built too
//	reapply       the normal re-apply: a snapshot rebuilt from a delta
//	              (unchanged clusters shared with the running one), a few
//	              weights moved, a few clusters replaced
//	receive-delta that, from the encoded DiscoveryResponse on: decode,
//	              rebuild from the delta, validate, apply
//	receive-full  the same change sent whole (a node reconnecting): decode
//	              the 100k endpoints, validate, apply
//
// Profile one with -run '^$' -bench 'ApplyScale/reapply' -cpuprofile.
func BenchmarkApplyScale(b *testing.B) {
	spec := scale.Target(scaleBackends(b, 8), "", "")
	b.Run("cold", func(b *testing.B) {
		snap := scale.Build(spec)
		var applied, built time.Duration
		for b.Loop() {
			n := quietNode()
			spec.HTTPAddr, spec.TCPAddr = loopback.FreeAddr(b), loopback.FreeAddr(b)
			snap.Listeners = scale.Build(scale.Spec{HTTPAddr: spec.HTTPAddr, TCPAddr: spec.TCPAddr}).Listeners
			start := time.Now()
			if err := n.Apply("0", snap); err != nil {
				b.Fatal(err)
			}
			applied += time.Since(start)
			// What Apply deferred, built now rather than in the
			// background: the time until the node runs every picker.
			for _, c := range n.clusters {
				if d, ok := c.picker.Load().Picker.(*deferredPicker); ok {
					d.once.Do(d.do)
				}
			}
			built += time.Since(start)
			b.StopTimer()
			n.Close()
			runtime.GC()
			b.StartTimer()
		}
		b.ReportMetric(float64(applied.Microseconds())/1000/float64(b.N), "ms/op")
		b.ReportMetric(float64(built.Microseconds())/1000/float64(b.N), "ms-all-pickers/op")
	})
	for _, mode := range []string{"reapply", "receive-delta", "receive-full"} {
		b.Run(mode, func(b *testing.B) {
			spec.HTTPAddr, spec.TCPAddr = loopback.FreeAddr(b), loopback.FreeAddr(b)
			n := quietNode()
			defer n.Close()
			snap := scale.Build(spec)
			if err := n.Apply("0", snap); err != nil {
				b.Fatal(err)
			}
			// Let the background work of the first apply (deferred
			// pickers, the first checks' spread) get going.
			time.Sleep(time.Second)
			gen := 0
			for b.Loop() {
				b.StopTimer()
				gen++
				next, delta := scale.Next(spec, snap, gen, scale.NormalChange)
				version := strconv.Itoa(gen)
				var wire []byte
				switch mode {
				case "receive-delta":
					delta.BaseVersion = n.Version()
					wire = marshal(b, &sluicev1.DiscoveryResponse{VersionInfo: version, Delta: delta})
				case "receive-full":
					wire = marshal(b, &sluicev1.DiscoveryResponse{VersionInfo: version, Snapshot: next})
				}
				b.StartTimer()
				switch mode {
				case "reapply":
					if err := n.Apply(version, next); err != nil {
						b.Fatal(err)
					}
				default:
					resp := &sluicev1.DiscoveryResponse{}
					if err := proto.Unmarshal(wire, resp); err != nil {
						b.Fatal(err)
					}
					got := resp.GetSnapshot()
					if d := resp.GetDelta(); d != nil {
						var err error
						if got, err = discovery.ApplyDelta(snap, d); err != nil {
							b.Fatal(err)
						}
					}
					if err := n.Apply(resp.GetVersionInfo(), got); err != nil {
						b.Fatal(err)
					}
					next = got
				}
				snap = next
			}
			reportMS(b)
		})
	}
}

func marshal(tb testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// reportMS adds ms/op, the unit of the target.
func reportMS(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}
