package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/discovery"
	"github.com/sluice-lb/sluice/controlplane/fleet"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// result is what a server run reports to the orchestrator, as one JSON
// line on stdout.
type result struct {
	System       string    `json:"system"`
	Nodes        int       `json:"nodes"`
	Clusters     int       `json:"clusters"`
	Deltas       bool      `json:"deltas"`
	PayloadBytes int       `json:"payload_bytes"` // one node's copy of a version
	Connect      float64   `json:"connect_s"`     // helper start to every node ACKing version 1
	MemPerNode   float64   `json:"mem_per_node"`  // bytes of heap and stack per connected, idle node
	Rollouts     []float64 `json:"rollouts_s"`    // publish to last ACK, each round
	PushedBytes  []int64   `json:"pushed_bytes"`  // bytes pushed, each round (sluice only)
}

// rollout is one system under test: publish makes round's version current,
// acked says how many of its ACKs were seen.
type system interface {
	// prepare builds round's configuration objects, untimed.
	prepare(round int) error
	publish(round int) error
	acked() int64
	// perNode is how many ACKs one node sends for one version.
	perNode() int
	pushedBytes() int64
	// payloadSize is the encoded size of one version's resources.
	payloadSize() int
}

// runServer serves cfg.nodes nodes of cfg.system, run by a helper process,
// and prints its result.
func runServer(cfg config) (*result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sh := shape{clusters: cfg.clusters, endpoints: cfg.endpoints, listeners: cfg.listeners}
	res := &result{System: cfg.system, Nodes: cfg.nodes, Clusters: cfg.clusters, Deltas: cfg.deltas}
	var sys system
	var gs *grpc.Server
	switch cfg.system {
	case "sluice":
		s := newSluice(sh, cfg.change)
		gs = grpc.NewServer(discovery.ServerOption())
		sluicev1.RegisterDiscoveryServiceServer(gs, s.srv)
		sys = s
		defer s.srv.Close()
	case "go-control-plane":
		g := newGCP(ctx, sh, cfg.change)
		gs = grpc.NewServer()
		discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, g.srv)
		sys = g
	default:
		return nil, fmt.Errorf("unknown system %q", cfg.system)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	// Version 1 is there before the nodes come.
	if err := sys.prepare(1); err != nil {
		return nil, err
	}
	if err := sys.publish(1); err != nil {
		return nil, err
	}
	res.PayloadBytes = sys.payloadSize()
	before := memInUse()
	start := time.Now()
	helper := exec.CommandContext(ctx, os.Args[0], "-role=nodes",
		"-system="+cfg.system, "-addr="+lis.Addr().String(), "-nodes="+strconv.Itoa(cfg.nodes),
		"-clusters="+strconv.Itoa(cfg.clusters), "-deltas="+strconv.FormatBool(cfg.deltas), "-decode="+strconv.FormatBool(cfg.decode))
	helper.Stderr = os.Stderr
	stdin, err := helper.StdinPipe() // closing it stops the helper
	if err != nil {
		return nil, err
	}
	if err := helper.Start(); err != nil {
		return nil, err
	}
	defer func() {
		stdin.Close()
		helper.Wait()
	}()
	want := int64(cfg.nodes * sys.perNode())
	if err := waitAcks(ctx, sys, want, 10*time.Minute); err != nil {
		return nil, fmt.Errorf("version 1: %w", err)
	}
	res.Connect = time.Since(start).Seconds()
	time.Sleep(500 * time.Millisecond) // the nodes' last answers settle
	res.MemPerNode = float64(memInUse()-before) / float64(cfg.nodes)

	if p := os.Getenv("FANOUT_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for round := 2; round < 2+cfg.rounds; round++ {
		if err := sys.prepare(round); err != nil {
			return nil, err
		}
		runtime.GC() // not the previous round's garbage, timed
		bytes0 := sys.pushedBytes()
		start := time.Now()
		if err := sys.publish(round); err != nil {
			return nil, err
		}
		if err := waitAcks(ctx, sys, want*int64(round), 5*time.Minute); err != nil {
			return nil, fmt.Errorf("version %d: %w", round, err)
		}
		res.Rollouts = append(res.Rollouts, time.Since(start).Seconds())
		res.PushedBytes = append(res.PushedBytes, sys.pushedBytes()-bytes0)
	}
	return res, nil
}

// waitAcks waits until sys has seen n ACKs in all.
func waitAcks(ctx context.Context, sys system, n int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	verbose := os.Getenv("FANOUT_VERBOSE") != ""
	next := time.Now().Add(time.Second)
	for sys.acked() < n {
		if verbose && time.Now().After(next) {
			fmt.Fprintf(os.Stderr, "  %d of %d ACKs\n", sys.acked(), n)
			next = next.Add(time.Second)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d ACKs after %v", sys.acked(), n, limit)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Microsecond)
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

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// sluiceSystem is Sluice's discovery server, as sluice-cp runs it. Its
// snapshots are built before they are timed; Publish (marshalling
// included) is.
type sluiceSystem struct {
	srv   *discovery.Server
	snaps map[int]*sluicev1.Snapshot
	sh    shape
	chg   string
	size  int
	acks  atomic.Int64
	bytes atomic.Int64
}

func newSluice(sh shape, change string) *sluiceSystem {
	s := &sluiceSystem{sh: sh, chg: change, snaps: map[int]*sluicev1.Snapshot{}}
	s.srv = discovery.New(fleet.NewRegistry(), s, nil)
	return s
}

func (s *sluiceSystem) prepare(round int) error {
	s.snaps[round] = sluiceSnapshot(s.sh, round, s.chg)
	if s.size == 0 {
		s.size = proto.Size(s.snaps[round])
	}
	return nil
}

func (s *sluiceSystem) publish(round int) error {
	snap := s.snaps[round]
	delete(s.snaps, round)
	return s.srv.Publish(uint64(round), snap)
}

func (s *sluiceSystem) payloadSize() int   { return s.size }
func (s *sluiceSystem) acked() int64       { return s.acks.Load() }
func (s *sluiceSystem) perNode() int       { return 1 }
func (s *sluiceSystem) pushedBytes() int64 { return s.bytes.Load() }

// discovery.Observer and SizeObserver: every answer of a node counts (the
// benchmark's nodes never NACK).
func (s *sluiceSystem) Pushed()                                {}
func (s *sluiceSystem) Answered(nack bool, took time.Duration) { s.acks.Add(1) }
func (s *sluiceSystem) PushedBytes(delta bool, n int)          { s.bytes.Add(int64(n)) }

// gcpSystem is go-control-plane's snapshot cache behind its SotW ADS
// server, used as its documentation says, with every node in one group (a
// NodeHash that gives every node the same key), so one SetSnapshot serves
// the whole fleet: the cheapest way to run it.
type gcpSystem struct {
	srv     serverv3.Server
	cache   cachev3.SnapshotCache
	sh      shape
	chg     string
	size    int
	snaps   map[int]*cachev3.Snapshot
	version atomic.Int64
	acks    atomic.Int64
}

type oneGroup struct{}

func (oneGroup) ID(*corev3.Node) string { return "fleet" }

type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}

func newGCP(ctx context.Context, sh shape, change string) *gcpSystem {
	g := &gcpSystem{sh: sh, chg: change, snaps: map[int]*cachev3.Snapshot{}}
	g.cache = cachev3.NewSnapshotCache(true, oneGroup{}, nopLogger{})
	g.srv = serverv3.NewServer(ctx, g.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoverygrpc.DiscoveryRequest) error {
			// An ACK of the current version: a nonce, that version, no error.
			if req.GetResponseNonce() != "" && req.GetErrorDetail() == nil &&
				req.GetVersionInfo() == strconv.FormatInt(g.version.Load(), 10) {
				g.acks.Add(1)
			}
			return nil
		},
	})
	return g
}

func (g *gcpSystem) prepare(round int) error {
	res := envoyResources(g.sh, round, g.chg)
	if g.size == 0 {
		g.size = envoyPayloadSize(res)
	}
	snap, err := cachev3.NewSnapshot(strconv.Itoa(round), res)
	if err != nil {
		return err
	}
	g.snaps[round] = snap
	return nil
}

func (g *gcpSystem) publish(round int) error {
	snap := g.snaps[round]
	delete(g.snaps, round)
	g.version.Store(int64(round))
	return g.cache.SetSnapshot(context.Background(), "fleet", snap)
}

func (g *gcpSystem) payloadSize() int   { return g.size }
func (g *gcpSystem) acked() int64       { return g.acks.Load() }
func (g *gcpSystem) perNode() int       { return 3 } // CDS, EDS and LDS
func (g *gcpSystem) pushedBytes() int64 { return 0 }
