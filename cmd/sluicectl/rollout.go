package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/internal/units"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// parseCanary reads --canary (10% or 2), --canary-window,
// --canary-max-errors and --canary-deadline. Out-of-range shares are left
// to the control plane, which refuses them with the reason (and logs it).
func parseCanary(share string, window time.Duration, maxErrors string, deadline time.Duration) (*sluicev1.Canary, error) {
	if window < time.Second || window > 24*time.Hour {
		// 0 would mean the default, 30s, to the control plane.
		return nil, fmt.Errorf("--canary-window %v: want 1s to 24h, how long the canaries must run the version", window)
	}
	if deadline < time.Second || deadline > 24*time.Hour {
		return nil, fmt.Errorf("--canary-deadline %v: want 1s to 24h, how long the rollout may wait for its canaries", deadline)
	}
	c := &sluicev1.Canary{Window: durationpb.New(window), ProgressDeadline: durationpb.New(deadline)}
	p, percent := strings.CutSuffix(share, "%")
	n, err := strconv.ParseUint(p, 10, 32)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--canary %q: want a percent such as 10%% or a count of nodes such as 2", share)
	case percent && (n < 1 || n > 100):
		// The control plane would refuse it, after the usage was checked.
		return nil, fmt.Errorf("--canary %s: want a percent from 1%% to 100%% of the group", share)
	case n < 1:
		return nil, fmt.Errorf("--canary %s: want a count of 1 node or more, or a percent such as 10%%", share)
	case percent:
		c.Percent = uint32(n)
	default:
		c.Nodes = uint32(n)
	}
	rate, ok := strings.CutSuffix(maxErrors, "%")
	r, err := strconv.ParseFloat(rate, 64)
	if !ok || err != nil || r < 0 || r > 100 {
		return nil, fmt.Errorf("--canary-max-errors %q: want a percent from 0%% to 100%%, such as 5%%", maxErrors)
	}
	c.MaxErrorRate = r / 100
	if r == 0 {
		c.MaxErrorRate = 1e-12 // "no errors at all"; 0 means the default
	}
	return c, nil
}

func groupArg(g string) string {
	if g == "" || g == defaultGroup {
		return ""
	}
	return " --group " + g
}

func cmdRollout(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("rollout", "rollout status|resume|abort [--group NAME] [-o text|json]", `
Follow and steer a node group's staged rollout (apply --canary).

  status  the new version, its canaries and what each runs, and what the
          rollout waits for: the canaries' ACKs, or the rest of its window
          with their error rate so far; or why it halted
  resume  start the canary phase of a halted rollout again
  abort   drop the rollout: the canaries go back to the group's snapshot

A halted rollout keeps the group from other applies until it is resumed or
aborted; endpoint edits (drain, set-weight, ...) go to both snapshots.`)
	group := groupFlag(fs)
	o := outputFlag(fs, "text", "json")
	pos, st := c.parseArgs(fs, args, "status|resume|abort")
	if st >= 0 {
		return st
	}
	req := &sluicev1.RolloutRequest{Group: *group, Author: author()}
	callCtx, cancel := c.call(ctx)
	defer cancel()
	var (
		resp *sluicev1.RolloutStatus
		err  error
	)
	switch pos[0] {
	case "status":
		resp, err = client.GetRollout(callCtx, req)
	case "resume":
		resp, err = client.ResumeRollout(callCtx, req)
	case "abort":
		resp, err = client.AbortRollout(callCtx, req)
	default:
		return c.usageError(fs, "want status, resume or abort, not %q", pos[0])
	}
	if err != nil {
		return c.rpcError("rollout "+pos[0], err)
	}
	if *o == "json" {
		return c.printJSON(resp)
	}
	if resp.GetDoneVersion() != 0 {
		fmt.Fprintf(c.stdout, "applied version %d\n", resp.GetDoneVersion())
	}
	c.printRollout(resp)
	return 0
}

func (c *cli) printRollout(st *sluicev1.RolloutStatus) {
	r := st.GetRollout()
	if r == nil {
		fmt.Fprintf(c.stdout, "group %s: no rollout\n", st.GetGroup())
		return
	}
	fmt.Fprintf(c.stdout, "group %s: rollout of version %d, %s\n", st.GetGroup(), r.GetVersion(), st.GetPhase())
	least := ""
	if n := r.GetMinRequests(); n > 0 {
		least = fmt.Sprintf(", at least %d requests", n)
	}
	deadline := ""
	if d := r.GetProgressDeadline(); d != nil {
		deadline = fmt.Sprintf("; progress deadline %v", d.AsDuration())
	}
	fmt.Fprintf(c.stdout, "started %s by %s; window %v, error limit %s%s%s\n",
		r.GetStarted().AsTime().Local().Format(time.RFC3339), orDash(r.GetAuthor()), r.GetWindow().AsDuration(), units.Percent(r.GetMaxErrorRate()), least, deadline)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CANARY\tSTATE\tAPPLIED\tLAST-NACK")
	byID := map[string]*sluicev1.NodeStatus{}
	for _, n := range st.GetCanaries() {
		byID[n.GetId()] = n
	}
	for _, id := range r.GetCanaries() {
		n, ok := byID[id]
		if !ok {
			fmt.Fprintf(tw, "%s\tunknown\t-\t-\n", id)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id, nodeState(n), versionText(n.GetAckedVersion()), nackText(n))
	}
	tw.Flush()
}

// waitRollout follows the rollout resp started until it is promoted and
// the group's nodes run it (exit 0; as waitApplied, f.minNodes of them at
// least), it halts (exit 2, with the reason), or f.timeout passes (exit 3).
//
// An endpoint edit during the rollout gives the rollout a new version, newer
// than the group's, so the rollout is followed by its start time, and its
// end is a promotion when the group's version passed the rollout's last one.
func (c *cli) waitRollout(ctx context.Context, client sluicev1.ConfigServiceClient, resp *sluicev1.ApplyResponse, f waitFor) int {
	start, parent := time.Now(), ctx
	deadline := start.Add(f.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	group, started := resp.GetGroup(), resp.GetVersion()
	latest := started   // the rollout's version as last seen
	var since time.Time // the rollout's start, once seen
	ours := func(r *sluicev1.Rollout) bool {
		if r == nil || r.GetVersion() < latest {
			return false
		}
		return since.IsZero() || r.GetStarted().AsTime().Equal(since)
	}
	last := ""
	for {
		callCtx, callCancel := c.call(ctx)
		st, err := client.GetRollout(callCtx, &sluicev1.RolloutRequest{Group: group})
		callCancel()
		if err != nil && ctx.Err() == nil && time.Now().Before(deadline) {
			return c.rpcError("apply", err)
		}
		r := st.GetRollout()
		mine := err == nil && ours(r)
		if mine {
			latest, since = r.GetVersion(), r.GetStarted().AsTime()
		}
		switch {
		case err != nil:
		case mine && r.GetState() == sluicev1.RolloutState_ROLLOUT_STATE_HALTED:
			fmt.Fprintf(c.stderr, "sluicectl apply: the rollout of version %d halted: %s\n", started, r.GetReason())
			return exitNacked
		case !mine:
			// Promoted (or aborted, or replaced): the group's version says.
			gs, err := client.ListGroups(ctx, &sluicev1.ListGroupsRequest{})
			if err != nil {
				return c.rpcError("apply", err)
			}
			for _, g := range gs.GetGroups() {
				if g.GetName() == group && g.GetVersion() > latest {
					fmt.Fprintf(c.stdout, "the canaries passed: version %d goes to every node\n", g.GetVersion())
					// When the control plane sent it is not known here:
					// "in under 1ms" would time this poll, not the nodes.
					return c.waitApplied(ctx, client, "apply", group, g.GetVersion(), time.Time{}, waitFor{time.Until(deadline), f.minNodes})
				}
			}
			fmt.Fprintf(c.stderr, "sluicectl apply: the rollout of version %d ended without reaching the group (aborted?)\n", started)
			return exitNacked
		default:
			if st.GetPhase() != last {
				last = st.GetPhase()
				fmt.Fprintf(c.stdout, "rollout: %s\n", last)
			}
		}
		select {
		case <-time.After(maxPoll): // a rollout's phases take seconds
		case <-ctx.Done():
			why, code := stopped(parent, start, f.timeout)
			fmt.Fprintf(c.stderr, "sluicectl apply: %s: the rollout of version %d is still at: %s\n", why, started, last)
			return code
		}
	}
}
