// Package leader runs singleton work of the control plane (pruning old
// versions, a staged rollout) on exactly one replica at a time.
//
// An Elector's Run campaigns and, while this replica is the leader, runs the
// work with a context that ends when leadership is lost. With the embedded
// store there is one control plane, which is always the leader ([Always]);
// with etcd, replicas elect one through the etcd concurrency package
// ([Etcd]): the leader holds a key attached to its lease, so when it dies or
// loses etcd, another takes over once the lease expires (TTL).
//
// Leadership is a lease, not a lock: the work of a leader that was cut off
// may still be running for a moment while the next one starts. Work must be
// safe under that overlap (idempotent, or guarded by etcd transactions, as
// the store's Put is).
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sluice-lb/sluice/controlplane/internal/lease"
)

// Elector runs work while leader.
type Elector interface {
	// Run campaigns until ctx ends. Each time this replica becomes the
	// leader it calls fn with a context that ends when leadership is lost
	// or ctx ends, and waits for fn. When fn returns while leadership
	// holds and ctx is live, the work is done: Run resigns and returns nil.
	// Otherwise it campaigns again. Run returns ctx's error once ctx ends.
	Run(ctx context.Context, fn func(ctx context.Context)) error
}

// Always is the Elector of a control plane that is alone (the embedded
// store): it is the leader from the start.
type Always struct{}

// Run implements Elector.
func (Always) Run(ctx context.Context, fn func(ctx context.Context)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fn(ctx)
	return nil
}

// DefaultTTL is the lease of an etcd leader when EtcdOptions.TTL is 0: how
// long its work is without a leader after the leader dies.
const DefaultTTL = 5 * time.Second

// retryWait is how long Etcd waits after failing to reach etcd.
const retryWait = time.Second

// Etcd elects a leader among the replicas that use the same client prefix
// and name.
type Etcd struct {
	client *clientv3.Client
	key    string
	id     string
	ttl    time.Duration
	log    *slog.Logger
}

// EtcdOptions configure an etcd election.
type EtcdOptions struct {
	// Prefix is the etcd store's prefix; the election's key is
	// Prefix + "leader/" + the election's name.
	Prefix string
	// Name names the work ("prune", "rollout"): elections of different
	// names are independent.
	Name string
	// ID says who campaigns (the replica's name); the leader's key holds it.
	ID string
	// TTL of the leader's lease, rounded up to whole seconds; 0:
	// DefaultTTL.
	TTL time.Duration
	// Logger is told when this replica becomes and stops being the
	// leader (nil: nobody).
	Logger *slog.Logger
}

// NewEtcd returns an election on client, which the caller keeps open while
// Run runs.
func NewEtcd(client *clientv3.Client, opts EtcdOptions) *Etcd {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Etcd{
		client: client,
		key:    opts.Prefix + "leader/" + opts.Name,
		id:     opts.ID,
		ttl:    opts.TTL,
		log:    opts.Logger.With("election", opts.Name),
	}
}

// Run implements Elector.
func (e *Etcd) Run(ctx context.Context, fn func(ctx context.Context)) error {
	for ctx.Err() == nil {
		done, err := e.term(ctx, fn)
		if done {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			e.log.Warn("leader election: cannot reach etcd; trying again", "err", err, "in", retryWait)
			select {
			case <-ctx.Done():
			case <-time.After(retryWait):
			}
		}
	}
	return ctx.Err()
}

// term is one lease: campaign, lead, and give up the lease. done reports
// that fn finished its work while leader.
func (e *Etcd) term(ctx context.Context, fn func(ctx context.Context)) (done bool, err error) {
	ttl := int((e.ttl + time.Second - 1) / time.Second)
	session, err := concurrency.NewSession(e.client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("leader: session: %w", err)
	}
	// Revoke the lease so that the next leader need not wait for it to
	// expire.
	defer lease.End(e.client, session)
	election := concurrency.NewElection(session, e.key)
	// Campaign returns when this replica leads, or with an error when
	// ctx ends or the session is lost.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := election.Campaign(cctx, e.id); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			return false, errors.New("leader: lease lost while campaigning")
		}
		return false, err
	}
	e.log.Info("leading", "id", e.id)
	fn(cctx)
	lost := cctx.Err() != nil
	if lost {
		if ctx.Err() == nil {
			e.log.Warn("no longer leading: lease lost", "id", e.id)
		}
		return false, nil
	}
	e.log.Info("work done; resigning", "id", e.id)
	return true, nil
}

// Leader returns the id of the current leader of the election, or "" when
// there is none.
func (e *Etcd) Leader(ctx context.Context) (string, error) {
	resp, err := e.client.Get(ctx, e.key+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

var (
	_ Elector = Always{}
	_ Elector = (*Etcd)(nil)
)
