// Package cmdrelay carries operators' commands between control-plane
// replicas that share one etcd. A node keeps its command stream on one
// replica (package command); a command given to another replica, such as
// sluicectl shutdown-sessions, reaches the node through the replica it is
// on:
//
//	PREFIX commands/to/REPLICA/ID   the command (protojson sluicev1.Command,
//	                                its action only)
//	PREFIX commands/results/ID      what REPLICA's nodes answered
//
// The asking replica attaches both keys to a lease it grants for the call
// and revokes once it has the results or gives up, so nothing outlives a
// call, or a replica that died during one. Each replica watches its own
// commands/to/REPLICA/ prefix, runs each command that comes on its nodes,
// and writes their results.
//
// Whether a command runs is settled in etcd, so that the caller never
// tells an operator that a command did not run when it did: the replica
// claims it (results/ID is created, "running") before it runs it, and only
// while its key is there; a caller that gives up first creates results/ID
// itself ("abandoned"), after which no replica runs it. A caller that
// gives up after the claim says the command started and its answer did
// not come.
package cmdrelay

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultWait bounds Send when Options.Wait is 0: the command package's
// own wait for the nodes' results (5 s), and time for the results to go
// through etcd.
const DefaultWait = 8 * time.Second

const retryWait = 500 * time.Millisecond

// Runner runs a command on this replica's nodes: command.Registry.
type Runner interface {
	Run(ctx context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult
}

// Options configure a Relay.
type Options struct {
	// Prefix is the etcd store's prefix; keys go under Prefix+"commands/".
	Prefix string
	// Replica names this control plane among the replicas (fleetview's
	// name for it, which NodeStatus.replica carries).
	Replica string
	// Wait bounds how long Send waits for another replica's results; 0:
	// DefaultWait.
	Wait time.Duration
	// Logger gets the relay's complaints (nil: none).
	Logger *slog.Logger
}

// Relay sends commands to other replicas and runs theirs for this one.
type Relay struct {
	client  *clientv3.Client
	local   Runner
	to      string // Prefix + "commands/to/"
	results string // Prefix + "commands/results/"
	replica string
	wait    time.Duration
	log     *slog.Logger

	ready     chan struct{} // closed once Run watches (for tests)
	readyOnce sync.Once
}

// New returns a relay that runs the commands sent to replica opts.Replica
// on local while Run runs.
func New(client *clientv3.Client, local Runner, opts Options) (*Relay, error) {
	if opts.Replica == "" {
		return nil, errors.New("cmdrelay: empty replica name")
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{
		client:  client,
		local:   local,
		to:      opts.Prefix + "commands/to/",
		results: opts.Prefix + "commands/results/",
		replica: opts.Replica,
		wait:    opts.Wait,
		log:     opts.Logger,
		ready:   make(chan struct{}),
	}, nil
}

// outcome is what goes under commands/results/ID: the replica's claim,
// then its nodes' results or why it could not run the command; or the
// caller's word that it gave up before the claim.
type outcome struct {
	Running   bool              `json:"running,omitempty"`
	Abandoned bool              `json:"abandoned,omitempty"`
	Results   []json.RawMessage `json:"results,omitempty"` // protojson sluicev1.CommandResult
	Error     string            `json:"error,omitempty"`
}

var (
	claimed   = `{"running":true}`
	abandoned = `{"abandoned":true}`
)

// callTimeout bounds each etcd call but Send's wait.
const callTimeout = 2 * time.Second

// maxError is the most of a node's error text relayed: the results of all
// of a replica's nodes go in one etcd request (1.5 MiB by default).
const maxError = 512

// Send has replica run the action of cmd on its nodes and returns their
// results, each with its NodeId. It fails when the replica does not answer
// within the relay's wait, or etcd cannot be reached; the error says
// whether the command ran there, did not, or started.
func (r *Relay) Send(parent context.Context, replica string, cmd *sluicev1.Command) ([]*sluicev1.CommandResult, error) {
	ctx, cancel := context.WithTimeout(parent, r.wait)
	defer cancel()
	raw, err := protojson.Marshal(&sluicev1.Command{Action: cmd.GetAction(), Nodes: cmd.GetNodes()})
	if err != nil {
		return nil, err
	}
	ttl := int64((r.wait+time.Second-1)/time.Second) + 5
	lease, err := r.client.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		r.client.Revoke(rctx, lease.ID)
		cancel()
	}()
	id := rand.Text()
	put, err := r.client.Put(ctx, r.inbox(replica)+id, string(raw), clientv3.WithLease(lease.ID))
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	resKey := r.results + id
	started := false
	why := fmt.Errorf("no answer within %v", r.wait)
	// From the put on: results written before the watch starts are seen.
	wch := r.client.Watch(clientv3.WithRequireLeader(ctx), resKey, clientv3.WithRev(put.Header.GetRevision()+1), clientv3.WithFilterDelete())
watch:
	for wr := range wch {
		if err := wr.Err(); err != nil {
			why = fmt.Errorf("etcd: %w", err)
			break
		}
		for _, ev := range wr.Events {
			var o outcome
			if err := json.Unmarshal(ev.Kv.Value, &o); err != nil {
				why = fmt.Errorf("a corrupt answer: %w", err)
				started = true // whatever wrote it had the key
				break watch
			}
			if o.Running {
				started = true
				continue
			}
			return o.results()
		}
	}
	if parent.Err() != nil {
		why = fmt.Errorf("gave up waiting: %w", parent.Err())
	}
	if !started {
		// Settle it: no replica runs the command once this is there.
		sctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		resp, err := r.client.Txn(sctx).If(clientv3.Compare(clientv3.CreateRevision(resKey), "=", 0)).
			Then(clientv3.OpPut(resKey, abandoned, clientv3.WithLease(lease.ID))).Commit()
		cancel()
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w, and whether it ran the command is unknown (etcd: %v)", why, err)
		case resp.Succeeded:
			return nil, fmt.Errorf("%w; the command was not run there", why)
		}
	}
	return nil, fmt.Errorf("it started the command, but %w", why)
}

// results are o's nodes' results, or the replica's reason for running none.
func (o *outcome) results() ([]*sluicev1.CommandResult, error) {
	if o.Error != "" {
		return nil, errors.New(o.Error)
	}
	out := make([]*sluicev1.CommandResult, 0, len(o.Results))
	for _, m := range o.Results {
		res := &sluicev1.CommandResult{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(m, res); err != nil {
			return nil, fmt.Errorf("a corrupt answer: %w", err)
		}
		out = append(out, res)
	}
	return out, nil
}

// Run runs the commands sent to this replica until ctx ends. Each runs in
// a goroutine of its own, as long as the command package lets it
// (command.DefaultTimeout); Run returns once they have.
func (r *Relay) Run(ctx context.Context) error {
	dir := r.inbox(r.replica)
	var next int64 // the revision to watch from; 0: now
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		if next == 0 {
			resp, err := r.client.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("command relay: cannot read etcd; trying again", "err", err, "in", retryWait)
					sleep(ctx, retryWait)
				}
				continue
			}
			next = resp.Header.GetRevision() + 1
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range r.client.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithFilterDelete(), clientv3.WithCreatedNotify()) {
			if wr.Created {
				r.readyOnce.Do(func() { close(r.ready) })
			}
			if wr.CompactRevision != 0 {
				next = wr.CompactRevision // what is left of the gap
				break
			}
			if err := wr.Err(); err != nil {
				r.log.Warn("command relay: watch ended; watching again", "err", err)
				break
			}
			for _, ev := range wr.Events {
				kv := ev.Kv
				wg.Go(func() { r.serve(ctx, kv) })
				next = kv.ModRevision + 1
			}
		}
		cancel()
		sleep(ctx, retryWait)
	}
	return ctx.Err()
}

// inbox is the prefix of the commands sent to replica; a name may hold a
// slash, which the escape keeps from making it another's prefix.
func (r *Relay) inbox(replica string) string { return r.to + url.PathEscape(replica) + "/" }

// serve claims the command in kv, if its caller still waits, runs it and
// writes its outcome under the command's lease.
func (r *Relay) serve(ctx context.Context, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	id := key[strings.LastIndexByte(key, '/')+1:]
	resKey := r.results + id
	lease := clientv3.WithLease(clientv3.LeaseID(kv.Lease))
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	claim, err := r.client.Txn(cctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "!=", 0),
		clientv3.Compare(clientv3.CreateRevision(resKey), "=", 0),
	).Then(clientv3.OpPut(resKey, claimed, lease)).Commit()
	cancel()
	if err != nil || !claim.Succeeded {
		return // the caller gave up, or etcd is away and so is the answer
	}
	var o outcome
	cmd := &sluicev1.Command{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, cmd); err != nil {
		o.Error = fmt.Sprintf("replica %s cannot read the command: %v", r.replica, err)
	} else if cmd.GetAction() == nil {
		o.Error = fmt.Sprintf("replica %s does not know the command: is it older than the replica that sent it?", r.replica)
	} else {
		for _, res := range r.local.Run(ctx, func(c *sluicev1.Command) { c.Action, c.Nodes = cmd.GetAction(), cmd.GetNodes() }) {
			if e := res.GetError(); len(e) > maxError {
				res.Error = strings.ToValidUTF8(e[:maxError], "") + "..."
			}
			m, err := protojson.Marshal(res)
			if err != nil {
				o.Error = err.Error()
				break
			}
			o.Results = append(o.Results, m)
		}
	}
	if o.Error != "" {
		o.Results = nil
	}
	raw, err := json.Marshal(o)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = r.client.Put(cctx, resKey, string(raw), lease)
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("command relay: cannot write a command's results", "id", id, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
