package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The measurements in this file repeat a scenario many times and print
// percentiles. They take a while, so they run only when asked for:
//
//	make measure        (SLUICE_MEASURE=1 go test ./e2e -run Measure -v)
//
// They assert only what the ordinary tests assert (every socket closes);
// the figures are for people, not for pass/fail.

func measuring(t *testing.T) {
	if os.Getenv("SLUICE_MEASURE") == "" {
		t.Skip("set SLUICE_MEASURE=1 (make measure) to run the measurements")
	}
}

// measureRuns is how many times each scenario repeats; SLUICE_MEASURE_RUNS
// overrides it.
func measureRuns() int {
	if n, err := strconv.Atoi(os.Getenv("SLUICE_MEASURE_RUNS")); err == nil && n > 0 {
		return n
	}
	return 20
}

// TestMeasureRemovalUnderLoad measures DESIGN problem 2's promise: the
// time from `apply` (an endpoint removed) to the last socket to it closed,
// with 500 busy TCP sessions on it, for drain_timeout 0 and 300ms. Each run
// opens 500 sessions that heartbeat every 100ms through a node to one
// endpoint, then applies a snapshot that replaces it; the clock starts
// before the Apply call (so it includes storing the version and streaming
// it) and stops when the endpoint saw its last socket close.
func TestMeasureRemovalUnderLoad(t *testing.T) {
	measuring(t)
	const sessions = 500
	runs := measureRuns()
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	snap := func(drain time.Duration, name, addr string) string {
		return fmt.Sprintf(`
clusters:
  - name: db
    drain_timeout: %v
    endpoints:
      - { name: %s, address: %s }
listeners:
  - { name: db, address: %s, protocol: TCP, default_cluster: db }
`, drain, name, addr, listen)
	}
	for _, drain := range []time.Duration{0, 300 * time.Millisecond} {
		var took []time.Duration
		for range runs {
			a, b := startEchoBackend(t), startEchoBackend(t)
			waitVersion(t, dp, c.apply(t, snap(drain, "a", a.addr)))
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range sessions {
				conn, err := net.DialTimeout("tcp", listen, testTimeout)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					heartbeat(conn, 100*time.Millisecond, stop)
				}()
			}
			waitFor(t, "every session to reach the endpoint", func() bool { return a.open.Load() == sessions })
			time.Sleep(150 * time.Millisecond) // every session beats at least once

			start := time.Now()
			c.apply(t, snap(drain, "b", b.addr))
			waitFor(t, "every socket to the removed endpoint to close", func() bool { return a.open.Load() == 0 })
			took = append(took, time.Unix(0, a.lastClose.Load()).Sub(start))
			close(stop)
			wg.Wait()
		}
		t.Logf("drain_timeout %v, %d busy sessions, %d runs: apply→last socket closed p50 %v p99 %v (min %v, max %v)",
			drain, sessions, runs, pct(took, 50), pct(took, 99), slices.Min(took), slices.Max(took))
		if lo := slices.Min(took); lo < drain {
			t.Errorf("drain_timeout %v: a socket closed %v after the apply, before the drain timeout", drain, lo)
		}
	}
}

// heartbeat writes a line every interval and reads its echo, until stop is
// closed or the connection ends.
func heartbeat(conn net.Conn, interval time.Duration, stop <-chan struct{}) {
	r := bufio.NewReader(conn)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		conn.SetDeadline(time.Now().Add(testTimeout))
		if _, err := conn.Write([]byte("beat\n")); err != nil {
			return
		}
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
	}
}

// pct returns the p-th percentile of d (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	return s[max(i-1, 0)].Round(100 * time.Microsecond)
}
