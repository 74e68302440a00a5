package node

import (
	"net"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/internal/scale"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// gcPercent reads the GC percent back.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// TestHoldGCNests: holds that overlap keep the collector off until the
// last is released, which restores the setting from before the first;
// releasing twice counts once.
func TestHoldGCNests(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(123))
	first := holdGC()
	second := holdGC()
	if got := gcPercent(); got != -1 {
		t.Fatalf("GC percent %d while held, want -1 (off)", got)
	}
	first()
	first()
	if got := gcPercent(); got != -1 {
		t.Errorf("GC percent %d with one hold of two released (once twice), want -1 (off)", got)
	}
	second()
	if got := gcPercent(); got != 123 {
		t.Errorf("GC percent %d once both were released, want 123, as before", got)
	}
}

// holdsTaken is how many times the collector was held off so far.
func holdsTaken() int {
	gcHold.Lock()
	defer gcHold.Unlock()
	return gcHold.taken
}

// TestBigApplyHoldsGCOff: an apply of the target's size (10k clusters,
// 100k endpoints) runs without a garbage collection, however much it
// allocates, and leaves the collector as it found it; so does one refused
// after its compile. A delta to the big node compiles a cluster, and does
// not hold the collector.
func TestBigApplyHoldsGCOff(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	spec := scale.Target([]string{"127.0.0.1:1"}, "", "")
	spec.CheckEvery = 0 // no checks to start
	snap := scale.Build(spec)
	n := newNode(t)

	// Refused once compiled: its listener's address is taken.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	refused := proto.Clone(snap).(*sluicev1.Snapshot)
	refused.Listeners = append(refused.Listeners, &sluicev1.Listener{
		Name: "taken", Address: taken.Addr().String(), Protocol: sluicev1.Protocol_PROTOCOL_TCP, DefaultCluster: snap.Clusters[0].Name,
	})
	held := holdsTaken()
	if err := n.Apply("0", refused); err == nil || !strings.Contains(err.Error(), "listener taken") {
		t.Fatalf("a snapshot with a listener on a taken address: %v, want it refused at the bind", err)
	}
	if got := holdsTaken() - held; got != 1 {
		t.Errorf("the refused apply held the collector %d times, want once", got)
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent %d after a refused apply, want 100, as before", got)
	}

	cycles := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	runtime.GC()
	metrics.Read(cycles)
	before := cycles[0].Value.Uint64()
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	metrics.Read(cycles)
	if got := cycles[0].Value.Uint64() - before; got != 0 {
		t.Errorf("%d garbage collections during an apply of %d clusters, want none", got, len(snap.Clusters))
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent %d after the apply, want 100, as before", got)
	}

	// A delta as discovery makes one: a new message for the cluster it
	// changes, the others shared.
	held = holdsTaken()
	first := proto.Clone(snap.Clusters[0]).(*sluicev1.Cluster)
	first.Endpoints[0].Weight = proto.Uint32(7)
	snap.Clusters[0] = first
	if err := n.Apply("2", snap); err != nil {
		t.Fatal(err)
	}
	if got := (*n.current.Load())[first.Name].members[0].Weight; got != 7 {
		t.Fatalf("after the delta, %s's first endpoint has weight %d, want 7", first.Name, got)
	}
	if got := holdsTaken() - held; got != 0 {
		t.Errorf("a delta of one cluster to the big node held the collector %d times, want none", got)
	}
}
