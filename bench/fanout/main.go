// Command fanout measures snapshot fan-out: N simulated nodes hold real
// gRPC streams on loopback to a control plane, which publishes a new
// version; the time from publish to the last node's ACK, and the control
// plane's memory per connected node, are compared between Sluice's
// discovery server and go-control-plane's snapshot cache (SotW ADS)
// serving an equivalent payload in the same run. It also measures Sluice's
// delta path: a one-endpoint change of a large snapshot, sent whole or as
// a delta.
//
// It is its own module so that Sluice does not depend on go-control-plane.
// `make bench-fanout` runs it. Each system runs in its own server process
// (so one's garbage and goroutines do not weigh on the other), and the
// nodes of each run in a helper process (so the nodes' CPU and memory are
// not the control plane's; on one machine they still share its cores).
//
// FANOUT_VERBOSE=1 prints the ACK count every second of a slow wait;
// FANOUT_CPUPROFILE=FILE profiles a server process's timed rounds.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

type config struct {
	role, system, addr                    string
	nodes, clusters, endpoints, listeners int
	change                                string
	deltas, decode                        bool
	rounds                                int
}

func main() {
	var cfg config
	var fleet string
	var deltaNodes, deltaClusters int
	var skipFanout, skipDelta bool
	flag.StringVar(&cfg.role, "role", "orchestrate", "orchestrate, server or nodes (the last two are started by the first)")
	flag.StringVar(&cfg.system, "system", "sluice", "server/nodes: sluice or go-control-plane")
	flag.StringVar(&cfg.addr, "addr", "", "nodes: the control plane's address")
	flag.IntVar(&cfg.nodes, "nodes", 1000, "server/nodes: how many nodes")
	flag.IntVar(&cfg.clusters, "clusters", 100, "clusters in the snapshot")
	flag.IntVar(&cfg.endpoints, "endpoints", 2, "endpoints per cluster")
	flag.IntVar(&cfg.listeners, "listeners", 10, "listeners in the snapshot")
	flag.StringVar(&cfg.change, "change", "all", "what each new version changes: all (every weight) or one (one endpoint's weight)")
	flag.BoolVar(&cfg.deltas, "deltas", false, "Sluice nodes accept deltas")
	flag.BoolVar(&cfg.decode, "decode", false, "nodes decode every response whole, as real nodes do (default: only its envelope)")
	flag.IntVar(&cfg.rounds, "rounds", 5, "versions published after the first, each timed")
	flag.StringVar(&fleet, "fleet", "1000,10000", "orchestrate: fleet sizes of the fan-out comparison")
	flag.IntVar(&deltaNodes, "delta-nodes", 1000, "orchestrate: nodes of the delta measurement")
	flag.IntVar(&deltaClusters, "delta-clusters", 10000, "orchestrate: clusters of the delta measurement (10 endpoints each)")
	flag.BoolVar(&skipFanout, "skip-fanout", false, "orchestrate: skip the comparison with go-control-plane")
	flag.BoolVar(&skipDelta, "skip-delta", false, "orchestrate: skip the delta measurement")
	flag.Parse()
	raiseFileLimit()

	var err error
	switch cfg.role {
	case "nodes":
		err = runNodes(cfg)
	case "server":
		var res *result
		if res, err = runServer(cfg); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(res)
		}
	case "orchestrate":
		if !skipFanout {
			err = fanout(cfg, fleet)
		}
		if err == nil && !skipDelta {
			err = deltaPath(cfg, deltaNodes, deltaClusters)
		}
	default:
		err = fmt.Errorf("unknown role %q", cfg.role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft limit on open files to the hard one: every
// node is a connection, so 10k nodes need 10k descriptors in the server and
// as many in the helper. Children inherit it.
func raiseFileLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// serve runs one server process and returns its result.
func serve(cfg config) (*result, error) {
	args := []string{"-role=server", "-system=" + cfg.system,
		"-nodes=" + strconv.Itoa(cfg.nodes), "-clusters=" + strconv.Itoa(cfg.clusters),
		"-endpoints=" + strconv.Itoa(cfg.endpoints), "-listeners=" + strconv.Itoa(cfg.listeners),
		"-change=" + cfg.change, "-deltas=" + strconv.FormatBool(cfg.deltas),
		"-decode=" + strconv.FormatBool(cfg.decode), "-rounds=" + strconv.Itoa(cfg.rounds)}
	fmt.Fprintf(os.Stderr, "running %s with %d nodes, %d clusters (deltas %v)...\n", cfg.system, cfg.nodes, cfg.clusters, cfg.deltas)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s, %d nodes: %w", cfg.system, cfg.nodes, err)
	}
	var res result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &res) == nil && res.System != "" {
			return &res, nil
		}
	}
	return nil, fmt.Errorf("%s, %d nodes: no result in %q", cfg.system, cfg.nodes, out)
}

func fanout(base config, fleet string) error {
	cfg := base
	fmt.Printf("\nFan-out: %d clusters x %d endpoints, %d listeners; every weight changes each version; nodes %s\n",
		cfg.clusters, cfg.endpoints, cfg.listeners, map[bool]string{false: "read the envelope only", true: "decode everything"}[cfg.decode])
	fmt.Printf("%-7s %-17s %9s %13s %11s %12s %10s\n", "nodes", "system", "payload", "connect+v1", "last ACK", "(min..max)", "mem/node")
	var rows []string
	for _, f := range strings.Split(fleet, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("-fleet: %w", err)
		}
		cfg.nodes = n
		var res [2]*result
		for i, sys := range []string{"sluice", "go-control-plane"} {
			cfg.system = sys
			if res[i], err = serve(cfg); err != nil {
				return err
			}
			r := res[i]
			fmt.Printf("%-7d %-17s %8.1fk %12.2fs %10.3fs %12s %7.1f KiB\n", n, sys, float64(r.PayloadBytes)/1000, r.Connect,
				median(r.Rollouts), spread(r.Rollouts), r.MemPerNode/1024)
		}
		s, g := res[0], res[1]
		rows = append(rows, fmt.Sprintf("%-7d go-control-plane / sluice: time to last ACK %.1fx, memory per node %.1fx",
			n, median(g.Rollouts)/median(s.Rollouts), g.MemPerNode/s.MemPerNode))
	}
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Println("(target: time >= 2x, memory >= 2x)")
	return nil
}

func deltaPath(base config, nodes, clusters int) error {
	cfg := base
	cfg.system, cfg.nodes, cfg.clusters, cfg.endpoints, cfg.listeners, cfg.change = "sluice", nodes, clusters, 10, 100, "one"
	if cfg.rounds > 3 {
		cfg.rounds = 3
	}
	fmt.Printf("\nDelta path (sluice): %d clusters x %d endpoints, %d listeners; each version changes one endpoint's weight; %d nodes\n",
		cfg.clusters, cfg.endpoints, cfg.listeners, cfg.nodes)
	fmt.Printf("%-7s %11s %12s %14s %12s\n", "sent as", "last ACK", "(min..max)", "bytes pushed", "per node")
	var res [2]*result
	for i, deltas := range []bool{false, true} {
		cfg.deltas = deltas
		r, err := serve(cfg)
		if err != nil {
			return err
		}
		res[i] = r
		pushed := r.PushedBytes[len(r.PushedBytes)-1]
		fmt.Printf("%-7s %10.3fs %12s %13.1fM %10.0f B\n", map[bool]string{false: "whole", true: "delta"}[deltas],
			median(r.Rollouts), spread(r.Rollouts), float64(pushed)/1e6, float64(pushed)/float64(cfg.nodes))
	}
	fmt.Printf("whole / delta: time to last ACK %.1fx, bytes %.0fx\n",
		median(res[0].Rollouts)/median(res[1].Rollouts),
		float64(res[0].PushedBytes[len(res[0].PushedBytes)-1])/float64(res[1].PushedBytes[len(res[1].PushedBytes)-1]))
	return nil
}

func spread(xs []float64) string {
	if len(xs) == 0 {
		return ""
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("%.3f..%.3f", lo, hi)
}
