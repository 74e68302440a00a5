package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/scale"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// applyGap is the time between two re-applies: a busy control plane, and
// time for the node's background work (first health checks, deferred
// pickers) to go on between them, as it would.
const applyGap = 200 * time.Millisecond

// fullEvery: every fullEvery-th re-apply comes as a whole snapshot, as
// after a reconnect, instead of a delta.
const fullEvery = 5

// measureApply runs the apply part. ok is false when a request failed or
// an apply was refused.
func measureApply(clusters, endpoints, rounds int) (rows []row, ok bool) {
	var backends []string
	for range 8 {
		b, err := scale.StartBackend()
		if err != nil {
			progress("backend: %v", err)
			return nil, false
		}
		defer b.Close()
		backends = append(backends, b.Addr)
	}
	spec := scale.Target(backends, freeAddr(), freeAddr())
	spec.Clusters, spec.Endpoints = clusters, endpoints
	snap := scale.Build(spec)
	first := marshal(&sluicev1.DiscoveryResponse{VersionInfo: "0", Snapshot: snap})
	const target = "< 200 ms"
	size := fmt.Sprintf("%d clusters × %d endpoints", clusters, endpoints)
	progress("apply: %s, %d MiB encoded; cold applies", size, len(first)>>20)

	// Cold: a node that just started gets its first snapshot, in a
	// process of its own each time (the first apply of a process also
	// grows its heap from nothing).
	var colds, coldCPU, decodes, gcs []time.Duration
	for range 3 {
		cold, err := coldChild(spec)
		if err != nil {
			progress("cold apply: %v", err)
			return nil, false
		}
		colds, coldCPU, decodes, gcs = append(colds, cold.wall), append(coldCPU, cold.cpu), append(decodes, cold.decode), append(gcs, cold.gcCPU)
	}
	// The node the re-applies go to.
	runtime.GC()
	n := node.New(node.Options{})
	defer n.Close()
	if err := n.Apply("0", snap); err != nil {
		progress("apply: %v", err)
		return nil, false
	}
	time.Sleep(time.Second) // its background work gets going
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rows = append(rows,
		row{"apply cold (Node.Apply), " + size, fmt.Sprintf("%v median of 3 (%v)", ms3(median(colds)), msList(colds)), target},
		row{"  CPU of the process meanwhile (any GC too)", fmt.Sprintf("%v median (%v)", ms3(median(coldCPU)), msList(coldCPU)), ""},
		row{"  then a full collection, CPU (GC held off from 10k compiled)", fmt.Sprintf("%v median (%v)", ms3(median(gcs)), msList(gcs)), ""},
		row{"  + decode of the whole snapshot", fmt.Sprintf("%v median (%d MiB)", ms3(median(decodes)), len(first)>>20), ""},
		row{"  node heap after (Go heap in use)", fmt.Sprintf("%d MiB, %.1f KiB per endpoint", ms.HeapInuse>>20, float64(ms.HeapInuse)/1024/float64(clusters*endpoints)), ""},
	)

	progress("apply: %d re-applies under HTTP and TCP traffic, one every %v", rounds, applyGap)
	traffic := scale.StartTraffic(spec.HTTPAddr, spec.TCPAddr, scale.TrafficSpec{})
	time.Sleep(500 * time.Millisecond)
	var deltaApply, deltaCPU, deltaRecv, fullApply, fullCPU, fullRecv []time.Duration
	for gen := 1; gen <= rounds; gen++ {
		next, delta := scale.Next(spec, snap, gen, scale.NormalChange)
		version := strconv.Itoa(gen)
		full := gen%fullEvery == 0
		resp := &sluicev1.DiscoveryResponse{VersionInfo: version, Snapshot: next}
		if !full {
			delta.BaseVersion = n.Version()
			resp = &sluicev1.DiscoveryResponse{VersionInfo: version, Delta: delta}
		}
		wire := marshal(resp)
		time.Sleep(applyGap)

		got := &sluicev1.DiscoveryResponse{}
		var s *sluicev1.Snapshot
		recv, _, err := timed(func() error {
			if err := proto.Unmarshal(wire, got); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			s = got.GetSnapshot()
			if d := got.GetDelta(); d != nil {
				var err error
				if s, err = discovery.ApplyDelta(snap, d); err != nil {
					return fmt.Errorf("delta: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			progress("%v", err)
			return rows, false
		}
		wall, cpu, err := timed(func() error { return n.Apply(got.GetVersionInfo(), s) })
		if err != nil {
			progress("re-apply: %v", err)
			return rows, false
		}
		if full {
			fullApply, fullCPU, fullRecv = append(fullApply, wall), append(fullCPU, cpu), append(fullRecv, recv+wall)
		} else {
			deltaApply, deltaCPU, deltaRecv = append(deltaApply, wall), append(deltaCPU, cpu), append(deltaRecv, recv+wall)
		}
		snap = s
	}
	time.Sleep(500 * time.Millisecond)
	traffic.Stop()
	ok = traffic.HTTP.Failed.Load() == 0 && traffic.TCP.Failed.Load() == 0
	rows = append(rows,
		row{"re-apply, delta (Node.Apply)", dist(deltaApply), target},
		row{"  CPU of the applying thread", dist(deltaCPU), ""},
		row{"  receive → applied (decode, rebuild, apply)", dist(deltaRecv), target},
		row{"re-apply, whole snapshot (Node.Apply)", dist(fullApply), target},
		row{"  CPU of the applying thread", dist(fullCPU), ""},
		row{"  receive → applied (decode, apply)", dist(fullRecv), target},
		row{"failed requests during re-applies, HTTP", failedOf(&traffic.HTTP), "0"},
		row{"failed requests during re-applies, TCP", failedOf(&traffic.TCP), "0"},
	)
	return rows, ok
}

// timed runs f on a thread of its own, and returns its wall time and
// the CPU time of that thread: on a busy machine the wall time is mostly
// waiting for a CPU, the CPU time is what f cost. Work f starts on other
// goroutines, and the garbage collector's background workers, are not in
// it; the collector's assists on f's goroutine are.
func timed(f func() error) (wall, cpu time.Duration, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := rusageCPU(unix.RUSAGE_THREAD)
	t0 := time.Now()
	err = f()
	return time.Since(t0), rusageCPU(unix.RUSAGE_THREAD) - c0, err
}

// rusageCPU is the user and system CPU time getrusage reports for who
// (unix.RUSAGE_THREAD, unix.RUSAGE_SELF), 0 if it fails.
func rusageCPU(who int) time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(who, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// coldEnv, set, makes the program a node that applies one snapshot of
// the spec it holds (JSON) and reports the times (serveCold).
const coldEnv = "SLUICE_SCALE_COLD"

// coldRun is what coldChild measured.
type coldRun struct {
	wall, cpu time.Duration // of Node.Apply; cpu is the whole process's
	decode    time.Duration // of the snapshot, before
	// gcCPU is the process's CPU in a full collection right after: what
	// Apply, holding the collector off through a compile this big,
	// left for after it.
	gcCPU time.Duration
}

// coldChild measures the first apply of a node in a new process: the time
// Node.Apply takes, the process's CPU meanwhile, the decode before and a
// collection after.
func coldChild(spec scale.Spec) (coldRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return coldRun{}, err
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return coldRun{}, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), coldEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return coldRun{}, err
	}
	var us [4]int64
	if _, err := fmt.Sscan(string(out), &us[0], &us[1], &us[2], &us[3]); err != nil {
		return coldRun{}, fmt.Errorf("cold child said %q: %w", out, err)
	}
	d := func(us int64) time.Duration { return time.Duration(us) * time.Microsecond }
	return coldRun{wall: d(us[0]), cpu: d(us[1]), decode: d(us[2]), gcCPU: d(us[3])}, nil
}

// serveCold is the child of coldChild: it decodes the snapshot as a node
// gets it, applies it once, collects, and prints the microseconds of the
// apply, of the process's CPU during it, of the decode, and of the
// process's CPU during the collection.
func serveCold() {
	var spec scale.Spec
	if err := json.Unmarshal([]byte(os.Getenv(coldEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "cold:", err)
		os.Exit(1)
	}
	wire := marshal(&sluicev1.DiscoveryResponse{VersionInfo: "0", Snapshot: scale.Build(spec)})
	runtime.GC()
	resp := &sluicev1.DiscoveryResponse{}
	decode, _, err := timed(func() error { return proto.Unmarshal(wire, resp) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "cold:", err)
		os.Exit(1)
	}
	wire = nil
	n := node.New(node.Options{})
	c0 := rusageCPU(unix.RUSAGE_SELF)
	wall, _, err := timed(func() error { return n.Apply(resp.GetVersionInfo(), resp.GetSnapshot()) })
	cpu := rusageCPU(unix.RUSAGE_SELF) - c0
	if err != nil {
		fmt.Fprintln(os.Stderr, "cold:", err)
		os.Exit(1)
	}
	c0 = rusageCPU(unix.RUSAGE_SELF)
	runtime.GC()
	gcCPU := rusageCPU(unix.RUSAGE_SELF) - c0
	fmt.Println(wall.Microseconds(), cpu.Microseconds(), decode.Microseconds(), gcCPU.Microseconds())
	n.Close()
}

func failedOf(c *scale.Counts) string {
	s := fmt.Sprintf("%d of %d", c.Failed.Load(), c.Failed.Load()+c.OK.Load())
	if err := c.Err(); err != nil {
		s += " (first: " + err.Error() + ")"
	}
	return s
}

func marshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// freeAddr returns a loopback address nothing listens on, below the
// ephemeral port range: a port the kernel hands out with :0 is soon the
// local port of some outgoing connection, and listening on it fails.
func freeAddr() string {
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(22000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	panic("no free port on 127.0.0.1 below 32000")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// dist is "p50 … p90 … max … (n)" of ds.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("p50 %v  p90 %v  max %v  (%d)", ms3(s[len(s)/2]), ms3(s[len(s)*9/10]), ms3(s[len(s)-1]), len(s))
}

// ms3 is d in milliseconds, one decimal.
func ms3(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func msList(ds []time.Duration) string {
	var out []byte
	for i, d := range ds {
		if i > 0 {
			out = append(out, ", "...)
		}
		out = fmt.Appendf(out, "%.0f", float64(d.Microseconds())/1000)
	}
	return string(out)
}
