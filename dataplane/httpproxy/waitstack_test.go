//go:build linux && !race

package httpproxy

import (
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestWaitingStackStartsSmall: a connection waiting for its next request
// keeps its goroutine's stack small enough that the runtime goes on
// starting new goroutines with its smallest stack, 2 KiB.
//
// The runtime starts each new goroutine with a stack as large as the
// average stack the last garbage collection scanned, plus a guard of 928
// bytes, rounded up to a power of two; in a node with many clients most
// of what it scans are connections waiting for their next request. When
// the wait's frame grew by 240 bytes (790dc07), the average crossed the
// line: every new connection's goroutine started with 4 KiB, and the
// memory per idle keep-alive connection in `make bench` rose from about
// 1.7 to 2.4 KiB (BENCHMARKS.md, "Spread"). This test fails on such a
// change: it measures what one waiting connection adds to the stacks a
// collection scans (910 bytes at a112659), whatever else runs in the
// process, and wants that and the guard within 2 KiB. With the wait's
// frame 128 bytes larger it passes, with 256 it fails, where `make bench`
// saw the row jump.
//
// It needs the race detector off, which doubles the guard: `make test`
// runs it so.
func TestWaitingStackStartsSmall(t *testing.T) {
	const (
		minStack   = 2048 // the smallest stack a goroutine starts with
		stackGuard = 928  // what the runtime adds to the average (64-bit Linux)
		n          = 500
	)
	scan := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}}
	scanned := func() uint64 {
		runtime.GC()
		metrics.Read(scan)
		return scan[0].Value.Uint64()
	}
	if metrics.Read(scan); scan[0].Value.Kind() != metrics.KindUint64 {
		t.Skip("the runtime does not report the stack its collections scan")
	}
	// Served as the node serves them, but waiting on their goroutines, as
	// they do for up to parkAfter before they park. No test of this
	// package runs in parallel with it.
	idlePark.once.Do(idlePark.start)
	parking := idlePark.err
	idlePark.err = errors.New("parking off for this test")
	t.Cleanup(func() { idlePark.err = parking })
	addr := loopback.FixedBackend(t, benchResponse)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
	before := scanned()
	buf := make([]byte, len(benchResponse))
	for range n {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	p.waitIdle(n)
	per := (scanned() - before) / n
	if per+stackGuard > minStack {
		t.Errorf("a connection waiting for a request has %d bytes of stack: with the runtime's guard of %d, over %d, so new goroutines would start with twice that", per, stackGuard, minStack)
	}
}
