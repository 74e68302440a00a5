package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/internal/cliflag"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// With control-plane replicas on one etcd, a node reports its connection
// records and endpoint stats to the replica its streams are on, and only
// that replica keeps them. conns, stats and top ask the replica they reach
// first; its answer names the other replicas that have nodes, and they ask
// those too, each at its name (a replica's name is its --listen address,
// or host name and port for a wildcard one, unless --replica set another),
// with the same --ca, --cert, --key, --token and --timeout, and merge the
// answers. What could not be asked is said on stderr, with exit status 1.

// askReplicas calls ask once for each replica named, all at once, each
// through a connection to the replica's name as an address. It returns,
// in the order of names, why each replica that could not be asked was not.
func (c *cli) askReplicas(ctx context.Context, names []string, ask func(context.Context, string, sluicev1.ConfigServiceClient) error) []string {
	why := make([]string, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		conn, err := c.replica(name)
		if err != nil {
			why[i] = fmt.Sprintf("replica %s could not be asked: %v", name, err)
			continue
		}
		wg.Go(func() {
			call, cancel := c.call(ctx)
			defer cancel()
			if err := ask(call, name, sluicev1.NewConfigServiceClient(conn)); err != nil {
				why[i] = fmt.Sprintf("replica %s could not be asked: %s", name, c.replicaError(err))
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(why, func(s string) bool { return s == "" })
}

// replica returns a connection to the replica of this name, made on first
// use and kept (top asks every interval) until the command ends.
func (c *cli) replica(name string) (*grpc.ClientConn, error) {
	if conn := c.replicas[name]; conn != nil {
		return conn, nil
	}
	host, port, err := net.SplitHostPort(name)
	if err != nil || host == "" || port == "" || strings.Contains(name, ",") {
		return nil, fmt.Errorf("its name is not a HOST:PORT address to call it at; ask it with --cp")
	}
	dial, err := c.sec.dialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := dialCP(name, dial)
	if err != nil {
		return nil, err
	}
	if c.replicas == nil {
		c.replicas = map[string]*grpc.ClientConn{}
	}
	c.replicas[name] = conn
	return conn, nil
}

// closeReplicas closes the connections replica made.
func (c *cli) closeReplicas() {
	for _, conn := range c.replicas {
		conn.Close()
	}
}

// replicaError is why a call to another replica failed, in the words
// rpcError uses for the control plane asked first.
func (c *cli) replicaError(err error) string {
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Sprintf("it did not answer within %s", c.timeout)
	case codes.Unavailable:
		msg = dialError(msg)
		return msg + c.sec.hint(msg)
	}
	return fmt.Sprintf("%s (%s)", msg, st.Code())
}

// fleetConns is ListConns through every replica with nodes: the records
// of the replica asked first and of each other it names, newest first, at
// most req's limit in all. ReportedElsewhere keeps the replicas that
// could not be asked; the second result says why each could not. When the
// replica asked first could not read which replicas have nodes, each
// replica --cp lists is asked instead (see fleetNodes).
func (c *cli) fleetConns(ctx context.Context, client sluicev1.ConfigServiceClient, req *sluicev1.ListConnsRequest) (*sluicev1.ListConnsResponse, []string, error) {
	call, cancel := c.call(ctx)
	resp, err := client.ListConns(call, req)
	cancel()
	if listed := c.listedReplicas(); err == nil && resp.GetIncomplete() != "" && listed != nil {
		return c.listedConns(ctx, resp, req, listed)
	}
	if err != nil || len(resp.GetReportedElsewhere()) == 0 {
		return resp, nil, err
	}
	var asked []string
	records, problems := c.connsOf(ctx, resp.GetReportedElsewhere(), req, &asked)
	resp.Records = newestConns(append(resp.Records, records...), req.GetLimit())
	resp.ReportedElsewhere = slices.DeleteFunc(resp.ReportedElsewhere, func(name string) bool { return slices.Contains(asked, name) })
	return resp, problems, nil
}

// connsOf is ListConns of each replica named, all at once: their records,
// and why each that could not be asked was not; asked gets the names of
// those that answered.
func (c *cli) connsOf(ctx context.Context, names []string, req *sluicev1.ListConnsRequest, asked *[]string) ([]*sluicev1.ConnRecord, []string) {
	var mu sync.Mutex
	var records []*sluicev1.ConnRecord
	problems := c.askReplicas(ctx, names, func(ctx context.Context, name string, other sluicev1.ConfigServiceClient) error {
		more, err := other.ListConns(ctx, req)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		records = append(records, more.GetRecords()...)
		*asked = append(*asked, name)
		return nil
	})
	return records, problems
}

// newestConns returns the newest limit records of several replicas' (the
// default limit for 0), newest first, as one replica would list them:
// each replica's are newest first already.
func newestConns(records []*sluicev1.ConnRecord, limit uint32) []*sluicev1.ConnRecord {
	slices.SortStableFunc(records, func(a, b *sluicev1.ConnRecord) int {
		return b.GetStart().AsTime().Compare(a.GetStart().AsTime())
	})
	n := int(limit)
	if n == 0 {
		n = stats.DefaultListLimit
	}
	return records[:min(n, len(records))]
}

// fleetStats is GetStats through every replica with nodes: a node the
// replica asked first lists as connected to another (NodeStats.replica)
// is replaced by what that replica has of it. The second result says why
// each replica that could not be asked was not; its nodes keep the line
// that names it.
func (c *cli) fleetStats(ctx context.Context, client sluicev1.ConfigServiceClient, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, []string, error) {
	call, cancel := c.call(ctx)
	resp, err := client.GetStats(call, req)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	if listed := c.listedReplicas(); resp.GetIncomplete() != "" && listed != nil {
		return c.listedStats(ctx, resp, req, listed)
	}
	var names []string
	for _, n := range resp.GetNodes() {
		if r := n.GetReplica(); r != "" && !slices.Contains(names, r) {
			names = append(names, r)
		}
	}
	if len(names) == 0 {
		return resp, nil, nil
	}
	var mu sync.Mutex
	theirs := map[string]*sluicev1.NodeStats{} // by replica and node id
	problems := c.askReplicas(ctx, names, func(ctx context.Context, name string, other sluicev1.ConfigServiceClient) error {
		more, err := other.GetStats(ctx, req)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, n := range more.GetNodes() {
			if n.GetReplica() == "" {
				theirs[name+"\x00"+n.GetNodeId()] = n
			}
		}
		return nil
	})
	for i, n := range resp.Nodes {
		if mine := theirs[n.GetReplica()+"\x00"+n.GetNodeId()]; mine != nil {
			resp.Nodes[i] = mine
		}
	}
	return resp, problems, nil
}

// When the replica asked cannot read the other replicas' nodes from etcd
// (ListNodesResponse.incomplete), it lists only its own, and names no
// other replica to ask. nodes, stats and conns then ask each replica that --cp
// lists for its own, and merge them: in an etcd outage, the operator still
// sees the fleet of the replicas they know of.

// listedReplicas returns the replicas --cp lists, when it lists several.
func (c *cli) listedReplicas() []string {
	addrs, err := cliflag.ControlPlanes(c.cp)
	if err != nil || len(addrs) < 2 {
		return nil
	}
	return addrs
}

// askListed asks each replica that --cp lists, with fetch, for what it
// lists of its own nodes, and merges that into *nodes by id (key: a
// node's id, whether it is connected, when it was last heard from): a
// connected node's entry over a disconnected one's, else the one heard
// from last (where the node is now). It returns the notes to print after
// the first replica's incomplete answer: which replicas were asked, and
// why any could not be.
func askListed[N any](c *cli, ctx context.Context, listed []string, nodes *[]N, key func(N) (string, bool, time.Time), fetch func(context.Context, sluicev1.ConfigServiceClient) ([]N, error)) []string {
	var mu sync.Mutex
	var asked []string
	at := make(map[string]int, len(*nodes)) // index in *nodes, by id
	for i, n := range *nodes {
		id, _, _ := key(n)
		at[id] = i
	}
	problems := c.askReplicas(ctx, listed, func(ctx context.Context, name string, other sluicev1.ConfigServiceClient) error {
		more, err := fetch(ctx, other)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, name)
		for _, n := range more {
			id, connected, heard := key(n)
			i, ok := at[id]
			if !ok {
				at[id] = len(*nodes)
				*nodes = append(*nodes, n)
				continue
			}
			_, wasConnected, wasHeard := key((*nodes)[i])
			if connected && !wasConnected || connected == wasConnected && heard.After(wasHeard) {
				(*nodes)[i] = n
			}
		}
		return nil
	})
	slices.SortFunc(*nodes, func(a, b N) int {
		ida, _, _ := key(a)
		idb, _, _ := key(b)
		return strings.Compare(ida, idb)
	})
	if len(asked) == 0 {
		return problems
	}
	return append([]string{askedNote(asked)}, problems...)
}

// askedNote says which replicas --cp lists were asked for their own nodes
// (sorted in place).
func askedNote(asked []string) string {
	slices.Sort(asked)
	return fmt.Sprintf("so each replica --cp lists was asked for its own nodes: those of %s are listed; a replica --cp does not list is not",
		strings.Join(asked, ", "))
}

// fleetNodes is ListNodes, with the nodes of each replica --cp lists when
// the replica asked could not read the others' (see above); notes says
// what was asked, and why a replica could not be.
func (c *cli) fleetNodes(ctx context.Context, client sluicev1.ConfigServiceClient) (resp *sluicev1.ListNodesResponse, notes []string, err error) {
	call, cancel := c.call(ctx)
	resp, err = client.ListNodes(call, &sluicev1.ListNodesRequest{})
	cancel()
	listed := c.listedReplicas()
	if err != nil || resp.GetIncomplete() == "" || listed == nil {
		return resp, nil, err
	}
	key := func(n *sluicev1.NodeStatus) (string, bool, time.Time) {
		return n.GetId(), n.GetConnected(), n.GetLastSeen().AsTime()
	}
	notes = askListed(c, ctx, listed, &resp.Nodes, key, func(ctx context.Context, other sluicev1.ConfigServiceClient) ([]*sluicev1.NodeStatus, error) {
		more, err := other.ListNodes(ctx, &sluicev1.ListNodesRequest{})
		return more.GetNodes(), err
	})
	return resp, notes, nil
}

// listedConns lists the records of each replica --cp lists in place of
// resp's, the first replica's incomplete answer to req (see fleetNodes).
// A replica keeps the records its own nodes report, so each record comes
// from one replica: asking each listed once, the one that answered first
// included, lists each once. Were none of them to answer, resp stays.
func (c *cli) listedConns(ctx context.Context, resp *sluicev1.ListConnsResponse, req *sluicev1.ListConnsRequest, listed []string) (*sluicev1.ListConnsResponse, []string, error) {
	var asked []string
	records, problems := c.connsOf(ctx, listed, req, &asked)
	if len(asked) == 0 {
		return resp, problems, nil
	}
	resp.Records = newestConns(records, req.GetLimit())
	return resp, append([]string{askedNote(asked)}, problems...), nil
}

// listedStats adds to resp, the first replica's incomplete answer to req,
// the nodes each replica --cp lists has stats of (see fleetNodes).
func (c *cli) listedStats(ctx context.Context, resp *sluicev1.GetStatsResponse, req *sluicev1.GetStatsRequest, listed []string) (*sluicev1.GetStatsResponse, []string, error) {
	key := func(n *sluicev1.NodeStats) (string, bool, time.Time) {
		return n.GetNodeId(), n.GetConnected(), n.GetReportedAt().AsTime()
	}
	notes := askListed(c, ctx, listed, &resp.Nodes, key, func(ctx context.Context, other sluicev1.ConfigServiceClient) ([]*sluicev1.NodeStats, error) {
		more, err := other.GetStats(ctx, req)
		// Not those another replica has, as this one says.
		own := slices.DeleteFunc(more.GetNodes(), func(n *sluicev1.NodeStats) bool { return n.GetReplica() != "" })
		return own, err
	})
	return resp, notes, nil
}

func cmdReplicas(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("replicas", "replicas [-o table|json]", `
List the control plane's live replicas on its etcd (sluice-cp --etcd): each
one's name, the nodes it serves, its security settings as replicas compare
them (TLS on or off; an id of the CA it checks node certificates against;
an id of its token key, never the key), and where it runs. A control plane
without etcd lists itself alone. Each setting another replica has otherwise
than the one that answered is said on stderr, with what it breaks and what
to do, and the exit status is 1: replicas that disagree split the fleet,
as a node or token set up for one is refused by the other. A setting an
older replica does not state shows "-" and is not compared.`)
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.ListReplicas(ctx, &sluicev1.ListReplicasRequest{})
	if err != nil {
		return c.rpcError("replicas", err)
	}
	if *o == "json" {
		return c.printPartial("replicas", resp, "", resp.GetDisagreements()...)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tNODES\tTLS\tCLIENT-CA\tTOKEN-KEY\tRUNS")
	for _, r := range resp.GetReplicas() {
		name := r.GetName()
		if name == resp.GetAnsweredBy() && len(resp.GetReplicas()) > 1 {
			name += " (answered)"
		}
		set := r.GetSettings()
		setting := func(k string) string {
			if v, ok := set[k]; ok {
				return v
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", name, r.GetNodes(), setting("TLS"), setting("client CA"), setting("token key"), r.GetDescription())
	}
	tw.Flush()
	return c.incomplete("replicas", "", resp.GetDisagreements()...)
}
