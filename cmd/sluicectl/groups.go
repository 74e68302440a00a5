package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/sluice-lb/sluice/internal/cliflag"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

func cmdGroups(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("groups", "groups [-o table|json]", `
List the node groups: name, label selector (empty: every node no other
group takes), the version its nodes are sent (the version that last changed
its snapshot; "-": nothing applied yet), how many connected nodes it has and
how many of them run that version, and the size of its snapshot. While the
control plane cannot reach its configuration store (etcd), the groups are
those of the version it sends its nodes: stderr says so, and the exit
status is 1.`)
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.ListGroups(ctx, &sluicev1.ListGroupsRequest{})
	if err != nil {
		return c.rpcError("groups", err)
	}
	if *o == "json" {
		if st := c.printJSON(resp); st != 0 {
			return st
		}
		return c.storeUnreachable("groups", resp.GetStoreUnreachable())
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSELECTOR\tVERSION\tNODES\tAPPLIED\tCLUSTERS\tLISTENERS")
	for _, g := range resp.GetGroups() {
		sel := g.GetSelector()
		if sel == "" {
			sel = "(all others)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", g.GetName(), sel, versionText(g.GetVersion()),
			g.GetNodes(), g.GetApplied(), g.GetClusters(), g.GetListeners())
	}
	tw.Flush()
	return c.storeUnreachable("groups", resp.GetStoreUnreachable())
}

func cmdGroup(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("group", "group set NAME --selector SEL | group delete NAME  [--dry-run] [--comment TEXT]", `
Define node groups. "group set" creates group NAME with label selector SEL
(it has no snapshot until "apply --group NAME") or changes the selector of
an existing one. "group delete" removes a group and its snapshot; its nodes
fall to the group with the empty selector, or keep what they run when there
is none. Each is stored as a new version.

A selector is comma-separated requirements that must all hold: "k=v",
"k!=v", "k in (a,b)", "k notin (a,b)", "k" (has the label), "!k" (has not).
A node's group is the one whose selector matches its labels (sluice-dp
--labels); the group with the empty selector takes the nodes no other
matches. A selector that would put a connected node in two groups is
refused, naming the node.`)
	sel := fs.String("selector", "", "label selector `SEL` (group set)")
	dry := fs.Bool("dry-run", false, "show the change, store nothing")
	comment := fs.String("comment", "", "`TEXT` kept in history with the version")
	pos, st := c.parseArgs(fs, args, "set|delete", "NAME")
	if st >= 0 {
		return st
	}
	var (
		resp *sluicev1.ApplyResponse
		err  error
	)
	callCtx, cancel := c.call(ctx)
	defer cancel()
	switch pos[0] {
	case "set":
		if !cliflag.Given(fs, "selector") {
			return c.usageError(fs, "group set needs --selector (\"\" for the group of all other nodes)")
		}
		resp, err = client.SetGroup(callCtx, &sluicev1.SetGroupRequest{Name: pos[1], Selector: *sel, DryRun: *dry, Comment: *comment, Author: author()})
	case "delete":
		resp, err = client.DeleteGroup(callCtx, &sluicev1.DeleteGroupRequest{Name: pos[1], DryRun: *dry, Comment: *comment, Author: author()})
	default:
		return c.usageError(fs, "want \"set\" or \"delete\", not %q", pos[0])
	}
	if err != nil {
		return c.rpcError("group "+pos[0], err)
	}
	c.printApplied(resp, *dry)
	return 0
}

// groupFilter is the --group flag of the commands that list nodes or
// their records (nodes, stats, top, conns): only those of that group.
func groupFilter(fs *flag.FlagSet) *string {
	return fs.String("group", "", "only the nodes of node `GROUP` (groups lists them)")
}

// checkGroup says that group is not a group the control plane knows, and
// returns 1, as for a --node or --cluster that is nowhere: a typo is not
// "no nodes". It returns -1 when group is known (or none was given).
func (c *cli) checkGroup(ctx context.Context, client sluicev1.ConfigServiceClient, cmd, group string) int {
	if group == "" {
		return -1
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.ListGroups(ctx, &sluicev1.ListGroupsRequest{})
	if err != nil {
		return c.rpcError(cmd, err)
	}
	var names []string
	for _, g := range resp.GetGroups() {
		if g.GetName() == group {
			return -1
		}
		names = append(names, g.GetName())
	}
	// In the words of the control plane's own refusal (conns --group).
	fmt.Fprintf(c.stderr, "sluicectl %s: %s\n", cmd, snapshot.UnknownName("group", group, "does not exist", names, "the groups are", "there is no group"))
	return 1
}

// keepGroup leaves in resp the nodes of group (all of them when it is
// ""). A node whose replica could not be asked has no group here: it
// stays, shown as on that replica, as the exit status says.
func keepGroup(resp *sluicev1.GetStatsResponse, group string) {
	if group == "" {
		return
	}
	resp.Nodes = slices.DeleteFunc(resp.Nodes, func(n *sluicev1.NodeStats) bool {
		return n.GetGroup() != group && n.GetReplica() == ""
	})
}
