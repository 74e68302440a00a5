package node

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/sluice-lb/sluice/internal/scale"
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

// TestBigApplyHoldsGCOff: an apply of the target's size (10k clusters,
// 100k endpoints) runs without a garbage collection, however much it
// allocates, and leaves the collector as it found it; so does one that is
// refused.
func TestBigApplyHoldsGCOff(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	spec := scale.Target([]string{"127.0.0.1:1"}, "", "")
	spec.CheckEvery = 0 // no checks to start
	snap := scale.Build(spec)
	n := newNode(t)
	cycles := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	runtime.GC()
	metrics.Read(cycles)
	before := cycles[0].Value.Uint64()
	if err := n.Apply("1", snap); err != nil {
		t.Fatal(err)
	}
	metrics.Read(cycles)
	if got := cycles[0].Value.Uint64() - before; got != 0 {
		t.Errorf("%d garbage collections during an apply of %d endpoints, want none", got, endpointCount(snap))
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent %d after the apply, want 100, as before", got)
	}

	snap.Clusters = append(snap.Clusters, snap.Clusters[0]) // a duplicate name
	if err := n.Apply("2", snap); err == nil {
		t.Fatal("a snapshot with a duplicate cluster was applied")
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent %d after a refused apply, want 100, as before", got)
	}
}
