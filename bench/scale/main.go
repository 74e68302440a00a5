// Command scale measures two targets of DESIGN.md on one node, and prints a
// table of what, figure and target (`make bench-scale`):
//
//   - apply: a snapshot of 10,000 clusters × 10 endpoints applied to a real
//     node.Node, cold and then re-applied again and again with a few
//     weights moved and a few clusters replaced, while HTTP and TCP
//     traffic flows through the node's listeners to loopback backends;
//     every failed request is counted, and must be none. Re-applies are
//     timed as Node.Apply and from the encoded DiscoveryResponse on
//     (decode, rebuild from a delta or not, validate, apply).
//   - idle: a node in a process of its own holding 100k idle keep-alive
//     HTTP connections (each after one request) and 20k idle TCP sessions,
//     its RSS read from /proc per connection; while it holds them, new
//     requests are timed.
//
// Everything runs on loopback; the idle part binds its clients to
// 127.0.0.2, 127.0.0.3, ... to stay clear of ephemeral port exhaustion, and
// raises RLIMIT_NOFILE itself. It changes no sysctl: it reports the ones
// that would not do (see checkSysctls). Where the hard limit is too low
// and cannot be raised, `make bench-scale-vm` runs the idle part in a
// virtual machine of its own (scripts/scale-vm.sh).
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
)

// row is one line of the table.
type row struct{ what, figure, target string }

func main() {
	if os.Getenv(childEnv) != "" {
		serveChild()
		return
	}
	if os.Getenv(coldEnv) != "" {
		slog.SetDefault(slog.New(slog.DiscardHandler))
		serveCold()
		return
	}
	var (
		clusters  = flag.Int("clusters", 10000, "clusters of the apply snapshot")
		endpoints = flag.Int("endpoints", 10, "endpoints per cluster")
		rounds    = flag.Int("rounds", 30, "re-applies under traffic")
		idleHTTP  = flag.Int("idle-http", 100000, "idle keep-alive HTTP connections to hold; 0: skip")
		idleTCP   = flag.Int("idle-tcp", 20000, "idle TCP sessions to hold; 0: skip")
		only      = flag.String("only", "", "apply or idle: run only that part")
	)
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))

	var rows []row
	failed := false
	if *only == "" || *only == "apply" {
		r, ok := measureApply(*clusters, *endpoints, *rounds)
		rows = append(rows, r...)
		failed = failed || !ok
	}
	if *only == "" || *only == "idle" {
		r, ok := measureIdle(*idleHTTP, *idleTCP)
		rows = append(rows, r...)
		failed = failed || !ok
	}
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "what\tfigure\ttarget")
	fmt.Fprintln(w, strings.Repeat("-", 40)+"\t"+strings.Repeat("-", 28)+"\t"+strings.Repeat("-", 24))
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.what, r.figure, r.target)
	}
	w.Flush()
	if failed {
		fmt.Println("\nFAILED: see above")
		os.Exit(1)
	}
}

// progress says what runs now, on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}
