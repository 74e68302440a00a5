package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Exit statuses of --wait beyond 0 (every node applied) and 1 (a call
// failed): CI pipelines gate on them.
const (
	exitNacked      = 2
	exitWaitTimeout = 3
	// exitInterrupted is a wait cut short by Ctrl-C or SIGTERM, as a
	// shell reports a command SIGINT ended (128+2).
	exitInterrupted = 130
)

// stopped says why a wait under parent ended before its nodes did: the
// user stopped it ("interrupted after 2.1s", exitInterrupted) or its
// --wait-timeout passed ("gave up after 1m0s", exitWaitTimeout).
func stopped(parent context.Context, start time.Time, timeout time.Duration) (string, int) {
	if errors.Is(parent.Err(), context.Canceled) { // not an outer wait's deadline
		return fmt.Sprintf("interrupted after %v", time.Since(start).Round(100*time.Millisecond)), exitInterrupted
	}
	return fmt.Sprintf("gave up after %v", timeout), exitWaitTimeout
}

// --wait asks the control plane about the nodes after firstPoll, then
// twice as long each time up to every maxPoll: a fleet that applies a
// version within milliseconds is told so in milliseconds, not in a
// poll's 200 ms, and a slow one is not asked more than 5 times a second.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 200 * time.Millisecond
)

// refusalSettle is how long --wait goes on, once a node refused the
// version, for the nodes that have not answered yet: nodes answer within
// milliseconds as a rule, and the report should name every node that
// refused, not those that had when it first looked.
const refusalSettle = 2 * time.Second

// waitFor is what --wait waits for: how long at most, and how many nodes
// of the group at least must have applied the version (--min-nodes).
type waitFor struct {
	timeout  time.Duration
	minNodes int
}

func (w writeFlags) until() waitFor {
	return waitFor{timeout: *w.waitTimeout, minNodes: int(min(*w.minNodes, 1<<31-1))}
}

// waitApplied polls the nodes until every connected one of group has
// applied version (or a newer one) and they are f.minNodes or more, one
// has refused it and the others answered (or refusalSettle passed), or
// f.timeout passes, and returns the exit status. The time it prints is
// since sent, when the write that made version was sent; none when sent is
// zero (not known).
// Nodes that disconnect meanwhile drop out of the wait: they will get the
// version when they come back. So do draining nodes: they refuse every
// version while they shut down.
func (c *cli) waitApplied(ctx context.Context, client sluicev1.ConfigServiceClient, cmd, group string, version uint64, sent time.Time, f waitFor) int {
	start, parent := time.Now(), ctx
	deadline := start.Add(f.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	poll := time.NewTimer(firstPoll)
	defer poll.Stop()
	every := firstPoll
	var w waited // as of the last answer
	var refusedAt time.Time
	short := -1 // how many applied when it last said they were too few
	for {
		callCtx, callCancel := c.call(ctx)
		resp, err := client.ListNodes(callCtx, &sluicev1.ListNodesRequest{})
		callCancel()
		// A call cut short by the wait's own deadline is the timeout, not
		// a failure: the deadline can pass (and gRPC refuse the call)
		// a moment before ctx says so.
		if err != nil && ctx.Err() == nil && time.Now().Before(deadline) {
			return c.rpcError(cmd, err)
		}
		if err == nil {
			w = tally(resp.GetNodes(), group, version)
			if len(w.refused) > 0 {
				if refusedAt.IsZero() {
					refusedAt = time.Now()
				}
				if len(w.behind) == 0 || time.Since(refusedAt) >= refusalSettle {
					c.printRefused(cmd, group, version, w)
					return exitNacked
				}
			} else if len(w.behind) == 0 && w.connected < f.minNodes {
				if w.connected != short {
					short = w.connected
					fmt.Fprintf(c.stderr, "sluicectl %s: %s%s applied version %d; --min-nodes asks for %d: waiting for more to connect\n",
						cmd, count(w.connected, "node"), inGroup(group), version, f.minNodes)
				}
			} else if len(w.behind) == 0 {
				took := time.Duration(-1) // not known
				if !sent.IsZero() {
					took = time.Since(sent)
				}
				c.printWaited(w, group, version, took)
				return 0
			}
		}
		select {
		case <-poll.C:
			every = min(2*every, maxPoll)
			poll.Reset(every)
		case <-ctx.Done():
			if len(w.refused) > 0 {
				c.printRefused(cmd, group, version, w)
				return exitNacked
			}
			why, code := stopped(parent, start, f.timeout)
			if len(w.behind) > 0 {
				fmt.Fprintf(c.stderr, "sluicectl %s: %s: %d of %d nodes%s have not applied version %d: %s\n",
					cmd, why, len(w.behind), w.connected, inGroup(group), version, behindText(w.behind))
			} else {
				fmt.Fprintf(c.stderr, "sluicectl %s: %s: %s%s applied version %d, fewer than the %d --min-nodes asks for\n",
					cmd, why, count(w.connected, "node"), inGroup(group), version, f.minNodes)
			}
			return code
		}
	}
}

// printRefused names each node that refused version and why, counts the
// nodes that applied it and names those that had not answered, and says
// what the refusal leaves behind.
func (c *cli) printRefused(cmd, group string, version uint64, w waited) {
	for _, n := range w.refused {
		// A node that was behind may have been sent a newer version
		// (another apply) before this one: name it.
		which := fmt.Sprintf("version %d", version)
		if v := n.GetNackedVersion(); v > version {
			which = fmt.Sprintf("version %d, which replaced version %d before it applied it", v, version)
		}
		fmt.Fprintf(c.stderr, "sluicectl %s: node %s refused %s: %s\n", cmd, n.GetId(), which, oneLine(n.GetNackError()))
	}
	applied := w.connected - len(w.refused) - len(w.behind)
	fmt.Fprintf(c.stderr, "sluicectl %s: of %s%s, %d refused version %d and %d applied it", cmd, count(w.connected, "node"), inGroup(group), len(w.refused), version, applied)
	if len(w.behind) > 0 {
		fmt.Fprintf(c.stderr, "; %d had not answered when it stopped waiting: %s", len(w.behind), behindText(w.behind))
	}
	fmt.Fprintln(c.stderr)
	c.refusedHint(cmd, group, version, w.refused)
}

// behindText names nodes with the version each applied.
func behindText(behind []*sluicev1.NodeStatus) string {
	ids := make([]string, 0, len(behind))
	for _, n := range behind {
		ids = append(ids, fmt.Sprintf("%s (applied %s)", n.GetId(), versionText(n.GetAckedVersion())))
	}
	return strings.Join(ids, ", ")
}

// refusedHint says what a refused version leaves behind and how to get out
// of it. The nodes that refused it serve on with what they ran, but it is
// still the version the group's nodes are sent: a node that starts now
// refuses it too and has nothing to serve.
func (c *cli) refusedHint(cmd, group string, version uint64, refused []*sluicev1.NodeStatus) {
	ran := refused[0].GetAckedVersion()
	for _, n := range refused[1:] {
		if n.GetAckedVersion() != ran {
			ran = 0 // they ran different versions: no one to go back to
		}
	}
	back := ""
	if ran > 0 {
		back = fmt.Sprintf(", or go back to the version they ran: sluicectl rollback %d", ran)
		if group != defaultGroup {
			back += " --group " + group
		}
	}
	fmt.Fprintf(c.stderr, "sluicectl %s: nodes that refused version %d serve on with what they ran, but a node that starts now is sent version %d and has nothing to serve; fix the snapshot and apply it again%s\n",
		cmd, version, version, back)
}

// waited is where the connected nodes stand with one version.
type waited struct {
	connected int
	behind    []*sluicev1.NodeStatus // connected, not applied, not refused
	refused   []*sluicev1.NodeStatus
	elsewhere int // connected in other groups
}

func tally(nodes []*sluicev1.NodeStatus, group string, version uint64) waited {
	var w waited
	for _, n := range nodes {
		if !n.GetConnected() || n.GetDraining() {
			continue
		}
		// A node not yet placed (group "") has not been sent anything.
		if n.GetGroup() != group && n.GetGroup() != "" {
			w.elsewhere++
			continue
		}
		if n.GetGroup() == "" && n.GetGroupProblem() != "" {
			continue // in no group: it gets nothing
		}
		w.connected++
		switch {
		case n.GetAckedVersion() >= version:
		case n.GetNackedVersion() >= version:
			w.refused = append(w.refused, n)
		default:
			w.behind = append(w.behind, n)
		}
	}
	byID := func(ns []*sluicev1.NodeStatus) {
		sort.Slice(ns, func(i, j int) bool { return ns[i].GetId() < ns[j].GetId() })
	}
	byID(w.behind)
	byID(w.refused)
	return w
}

func (c *cli) printWaited(w waited, group string, version uint64, took time.Duration) {
	if w.connected == 0 {
		in := inGroup(group)
		if w.elsewhere > 0 {
			// Nodes are connected, in other groups: name this one.
			in = " of group " + group
		}
		fmt.Fprintf(c.stderr, "sluicectl: no node%s is connected; each gets version %d when it connects\n", in, version)
		return
	}
	in := " in " + took.Round(time.Millisecond).String()
	switch {
	case took < 0:
		in = ""
	case took < time.Millisecond:
		in = " in under 1ms" // not "0s"
	}
	fmt.Fprintf(c.stdout, "%s%s applied version %d%s\n", count(w.connected, "node"), inGroup(group), version, in)
}

// inGroup is " of group NAME", or nothing for the default group.
func inGroup(group string) string {
	if group == defaultGroup {
		return ""
	}
	return " of group " + group
}
