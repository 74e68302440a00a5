package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluice-lb/sluice/internal/ratemeter"
	"github.com/sluice-lb/sluice/internal/units"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// onceWait bounds how long top --once waits for every connected node's
// rates: a node reports its counters every second (stats.EndpointsEvery),
// so two reports come within a few seconds even on a busy node.
const onceWait = 12 * time.Second

// oncePoll is how often top --once asks again while it waits for a
// node's second report: it waits for reports, not for a redraw, so
// --interval does not pace it.
const oncePoll = 250 * time.Millisecond

// Terminal control sequences top uses on a terminal: the alternate screen
// (left as it was found on exit, as top(1) does), cursor hidden, and clear.
const (
	enterScreen = "\x1b[?1049h\x1b[?25l"
	leaveScreen = "\x1b[?25h\x1b[?1049l"
	clearScreen = "\x1b[H\x1b[2J"
)

func cmdTop(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("top", "top [--interval D] [--node ID] [--group GROUP] [--cluster NAME] [--once]", `
A refreshing view of the fleet, like top(1): per node and endpoint, health,
weight, requests and sessions in progress (ACTIVE), and rates: requests per
second, errors per second (5xx answers and failed connects), and bytes per
second received from (IN/S) and sent to (OUT/S) the endpoint. Rates come
from the counters of a node's last two reports to the control plane, which
a node sends every second (sooner on a change of health): a rate shows "-"
until top has seen two of the node's reports, and each node's line says
the window its rates are over. Until every node's rates are known, top asks
again every 250ms (for up to 12s) rather than every --interval, so the
second frame has them within about a second.

On a terminal, the frame is redrawn every --interval until Ctrl-C, which
restores the screen. When stdout is not a terminal (a pipe, a file), frames
are printed one after another, each under a timestamped line, without
screen control. --once prints a single frame and exits: it waits (up to
12s) until every connected node has reported twice, so that its rates are
known. A failed call ends top with status 1, except on a terminal, where
the frame shows the error and top keeps trying. A node connected to another
control-plane replica on the same etcd reports its stats there, and top
asks that replica, as stats does; when it cannot, the frame says why and
the node's line names that replica.`)
	interval := fs.Duration("interval", 2*time.Second, "refresh every `D`")
	node := fs.String("node", "", "only node `ID`")
	group := groupFilter(fs)
	cluster := fs.String("cluster", "", "only the endpoints of cluster `NAME`")
	once := fs.Bool("once", false, "print one frame, with rates, and exit")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if *interval <= 0 {
		return c.usageError(fs, "--interval must be positive, not %s", *interval)
	}
	if st := c.checkGroup(ctx, client, "top", *group); st >= 0 {
		return st
	}
	screen := !*once && isTerminal(c.stdout)
	if screen {
		fmt.Fprint(c.stdout, enterScreen)
		defer fmt.Fprint(c.stdout, leaveScreen)
	}
	v := &topView{cp: c.cp, interval: *interval, meters: map[string]*ratemeter.Meter{}}
	// Until every node's rates are known, top asks again every oncePoll
	// (for up to onceWait) rather than a whole --interval later.
	warming, printed := true, false
	giveUp := time.Now().Add(onceWait)
	for {
		resp, unasked, err := c.fleetStats(ctx, client, &sluicev1.GetStatsRequest{NodeId: *node, Cluster: *cluster})
		if err == nil {
			keepGroup(resp, *group)
		}
		switch {
		case ctx.Err() != nil:
			return 0 // Ctrl-C
		case err != nil && (*once || !screen):
			if screen {
				fmt.Fprint(c.stdout, leaveScreen)
				screen = false
			}
			return c.rpcError("top", err)
		}
		var frame bytes.Buffer
		complete := v.render(&frame, resp, unasked, err, clock())
		warming = warming && !complete && time.Now().Before(giveUp)
		switch {
		case *once && !warming:
			c.stdout.Write(frame.Bytes())
			return 0
		case *once:
		case screen:
			fmt.Fprint(c.stdout, clearScreen)
			c.stdout.Write(frame.Bytes())
		case !printed || !warming:
			// Printed one after another, frames still without rates wait.
			fmt.Fprintln(c.stdout, frame.String())
			printed = true
		}
		wait := *interval
		if warming {
			wait = min(wait, oncePoll)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(wait):
		}
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// topView is what top remembers between frames: each node's meter of its
// endpoints' counters, read at each new report.
type topView struct {
	cp       string
	interval time.Duration
	meters   map[string]*ratemeter.Meter // by node id
}

// render writes one frame of resp (or of err, when the call failed) as of
// now, with why the replicas in unasked could not be asked (fleetStats).
// It reports whether every connected node shown has rates.
func (v *topView) render(w io.Writer, resp *sluicev1.GetStatsResponse, unasked []string, err error, now time.Time) bool {
	fmt.Fprintf(w, "sluicectl top · %s · %s · every %s\n", v.cp, now.Local().Format("15:04:05"), v.interval)
	if err != nil {
		fmt.Fprintf(w, "\ncannot get stats: %v\n", err)
		return false
	}
	if why := resp.GetIncomplete(); why != "" {
		fmt.Fprintf(w, "\n%s\n", why)
	}
	for _, why := range unasked {
		fmt.Fprintf(w, "\n%s\n", why)
	}
	if len(resp.GetNodes()) == 0 {
		fmt.Fprintln(w, "\nno node has reported endpoint stats")
		return false
	}
	complete := true
	for _, n := range resp.GetNodes() {
		if n.GetReplica() != "" {
			fmt.Fprintf(w, "\n%s\n", elsewhere(n))
			delete(v.meters, n.GetNodeId()) // its counters here will be stale
			continue
		}
		m := v.meters[n.GetNodeId()]
		if m == nil {
			m = &ratemeter.Meter{}
			v.meters[n.GetNodeId()] = m
		}
		cur := make(map[string]ratemeter.Counters, len(n.GetEndpoints()))
		for _, ep := range n.GetEndpoints() {
			cur[ep.GetCluster()+"/"+ep.GetEndpoint()] = ratemeter.Counters{Requests: ep.GetRequests(), BytesIn: ep.GetBytesIn(),
				BytesOut: ep.GetBytesOut(), Errors: ep.GetResponses_5Xx() + ep.GetConnectErrors()}
		}
		m.Read(n.GetReportedAt().AsTime(), cur, 0)
		rates, window := m.Rates()

		var total ratemeter.Rate
		for _, r := range rates {
			total.Requests += r.Requests
			total.Errors += r.Errors
			total.BytesIn += r.BytesIn
			total.BytesOut += r.BytesOut
		}
		state := "connected"
		if !n.GetConnected() {
			state = "disconnected"
		}
		fmt.Fprintf(w, "\n%s (%s, reported %s ago", n.GetNodeId(), state, units.Age(n.GetReportedAt().AsTime(), now))
		if window > 0 {
			fmt.Fprintf(w, ", rates over %s): %s req/s, %s err/s, in %s, out %s\n", window.Round(time.Millisecond),
				perSecond(total.Requests), perSecond(total.Errors), bytesPerSecond(total.BytesIn), bytesPerSecond(total.BytesOut))
		} else {
			fmt.Fprintln(w, ", rates after its next report)")
			complete = complete && !n.GetConnected()
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLUSTER/ENDPOINT\tHEALTH\tWEIGHT\tACTIVE\tREQ/S\tERR/S\tIN/S\tOUT/S")
		for _, ep := range n.GetEndpoints() {
			weight := fmt.Sprint(ep.GetWeight())
			if ep.GetBackup() {
				weight += " (backup)"
			}
			key := ep.GetCluster() + "/" + ep.GetEndpoint()
			reqs, errs, in, out := "-", "-", "-", "-"
			if r, ok := rates[key]; ok {
				reqs, errs, in, out = perSecond(r.Requests), perSecond(r.Errors), bytesPerSecond(r.BytesIn), bytesPerSecond(r.BytesOut)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", key, healthText(ep.GetHealth()), weight, ep.GetActive(), reqs, errs, in, out)
		}
		tw.Flush()
	}
	return complete
}

func perSecond(v float64) string { return fmt.Sprintf("%.1f", v) }

func bytesPerSecond(v float64) string { return units.Bytes(uint64(v+0.5)) + "/s" }
