// Package discovery is the node's side of the snapshot stream: it subscribes
// to the control plane, hands each snapshot to the node, answers with an ACK
// or a NACK, and reconnects with backoff and jitter when the stream breaks.
// While it is away the node keeps serving its last applied snapshot.
//
// The client accepts deltas: it keeps the last snapshot it applied, and
// rebuilds the whole snapshot from it and a delta (ApplyDelta) before
// handing it to the node, which never sees a delta. A delta that cannot be
// rebuilt is NACKed like a snapshot the node refuses.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/internal/labels"
	"github.com/sluice-lb/sluice/internal/reconnect"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Applier is the node. Apply is called from the client's goroutine, one
// snapshot at a time.
type Applier interface {
	Apply(version string, snap *sluicev1.Snapshot) error
	// Version is the version applied last, "" before the first.
	Version() string
}

// Client keeps a node subscribed.
type Client struct {
	Conn    grpc.ClientConnInterface
	Node    *sluicev1.Node
	Applier Applier
	Logger  *slog.Logger

	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (defaults 200ms and 15s); each wait is drawn at random up to an
	// exponentially growing ceiling ("full jitter"), so a fleet that lost
	// its control plane does not reconnect in one wave.
	MinBackoff, MaxBackoff time.Duration

	// RetryMin and RetryMax bound the wait before the node tries again a
	// snapshot it refused (defaults 1s and 30s): the wait doubles after
	// each try that fails, until a newer snapshot comes. A cause outside
	// the snapshot may pass: a port another process still holds, a
	// certificate file not yet written.
	RetryMin, RetryMax time.Duration

	// The snapshot applied last and its version, deltas' base. Only the
	// client's goroutine touches them.
	base        *sluicev1.Snapshot
	baseVersion string

	counters Counters
	retired  atomic.Bool

	mu     sync.Mutex // guards status
	status Status
}

// Counters count the responses the client received, by form. They are
// read with Counters from any goroutine.
type Counters struct {
	Snapshots, Deltas         atomic.Uint64 // responses
	SnapshotBytes, DeltaBytes atomic.Uint64 // their encoded size
	DeltaErrors               atomic.Uint64 // deltas that could not be rebuilt
	Refused                   atomic.Uint64 // responses the node refused (NACKed), on their first try
}

// Counters returns the client's counters.
func (c *Client) Counters() *Counters { return &c.counters }

// Run subscribes until ctx ends, or Retire was called and the subscription
// ends.
func (c *Client) Run(ctx context.Context) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.starting()
	reconnect.Loop(ctx, c.MinBackoff, c.MaxBackoff, c.Logger, "snapshot", &c.retired, func(ctx context.Context) (bool, error) {
		progressed, err := c.stream(ctx)
		c.ended(err)
		return progressed, err
	})
}

// Default bounds of the wait before a refused snapshot is tried again.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = 30 * time.Second
)

// errAppliedLate ends a subscription once a snapshot the node refused
// applied on a later try: the control plane, which took the NACK, learns
// the version the node runs from the subscription that follows at once.
var errAppliedLate = errors.New("a snapshot refused before applied on a later try; subscribing again to tell the control plane")

// refused is a snapshot the node refused, which it tries again.
type refused struct {
	version string
	snap    *sluicev1.Snapshot
	err     string        // why it was refused last
	wait    time.Duration // before the next try
}

// Retire keeps the subscription open but opens no new one once it ends: the
// node drains, and a new process of the node may take the subscription
// over (see reconnect.Loop).
func (c *Client) Retire() { c.retired.Store(true) }

// stream runs one subscription. It reports whether the control plane
// took it, which resets the backoff.
func (c *Client) stream(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sluicev1.NewDiscoveryServiceClient(c.Conn).StreamSnapshots(ctx, grpc.WaitForReady(false))
	if err != nil {
		return false, err
	}
	running := c.Applier.Version()
	// Deltas need the snapshot of the version announced. The client has it
	// unless something else applied that version (or none: then the first
	// response is a whole snapshot anyway).
	deltas := running == "" || (c.base != nil && c.baseVersion == running)
	// The control plane sends headers once it has registered the node
	// (an older one, with its first response). A node that runs the
	// current version gets nothing more, maybe for days, and that stream
	// made progress all the same.
	if err := reconnect.Register(st, &sluicev1.DiscoveryRequest{Node: c.Node, VersionInfo: running, AcceptDeltas: deltas, AcceptPlacement: true}); err != nil {
		return false, err
	}
	c.subscribed()
	c.Logger.Info("subscribed to control plane", "node", c.Node.GetId(), "version", running, "deltas", deltas)
	resps, ended := make(chan *sluicev1.DiscoveryResponse), make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				ended <- err
				return
			}
			select {
			case resps <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	var again *refused
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case err := <-ended:
			return true, err
		case <-ctx.Done():
			// The reading goroutine may have given up a response it held
			// when ctx ended, without reporting an end on ended.
			return true, ctx.Err()
		case <-retry.C:
			if c.tryAgain(again) {
				return true, errAppliedLate
			}
			retry.Reset(again.wait)
		case resp := <-resps:
			if p := resp.GetPlacement(); p != nil {
				c.placed(p) // not answered, and not a version: a refused one is still tried again
				continue
			}
			retry.Stop()
			again = nil
			ack := &sluicev1.DiscoveryRequest{ResponseNonce: resp.GetNonce()}
			snap, applyErr := c.rebuild(resp)
			if applyErr == nil {
				if applyErr = c.Applier.Apply(resp.GetVersionInfo(), snap); applyErr != nil {
					again = &refused{version: resp.GetVersionInfo(), snap: snap, err: applyErr.Error(), wait: c.retryMin()}
				}
			}
			if d, ok := c.Applier.(interface{ Draining() bool }); ok && applyErr != nil && d.Draining() {
				// It refuses every version while it shuts down: nothing
				// is wrong with this one, and nothing to try again.
				c.Logger.Info("snapshot refused while draining", "version", resp.GetVersionInfo())
				ack.ErrorDetail, again = applyErr.Error(), nil
			} else if applyErr != nil {
				c.Logger.Error("snapshot refused", "version", resp.GetVersionInfo(), "delta", resp.GetDelta() != nil, "err", applyErr)
				ack.ErrorDetail = applyErr.Error()
				c.counters.Refused.Add(1)
				c.refusedVersion(resp.GetVersionInfo(), applyErr)
			} else {
				c.applied()
				c.base, c.baseVersion = snap, c.Applier.Version()
				c.Logger.Info("snapshot applied", "version", resp.GetVersionInfo(), "delta", resp.GetDelta() != nil)
			}
			ack.VersionInfo = c.Applier.Version()
			if err := st.Send(ack); err != nil {
				return true, err
			}
			if again != nil {
				c.Logger.Info("will try the refused snapshot again", "version", again.version, "in", again.wait)
				retry.Reset(again.wait)
			}
		}
	}
}

// placed records and logs what the control plane says of the node's
// group. Placed in one, the node says so at Info; in none, it says why at
// Warn, since the control plane sends it no snapshot until an operator
// changes its labels or the groups.
func (c *Client) placed(p *sluicev1.Placement) {
	was := c.setPlacement(p.GetGroup(), p.GetProblem())
	running := c.Applier.Version()
	if running == "" {
		running = "none"
	}
	switch {
	case p.GetGroup() == "":
		c.Logger.Warn("the control plane puts this node in no group, and sends it no snapshot until its labels or the groups change; the node serves the version it runs",
			"node", c.Node.GetId(), "labels", labels.Text(c.Node.GetLabels()), "problem", p.GetProblem(), "version", running)
	case was.Problem != "":
		c.Logger.Info("the control plane puts this node in a group again", "node", c.Node.GetId(), "group", p.GetGroup(), "was", was.Problem)
	case was.Group != p.GetGroup():
		c.Logger.Info("the control plane puts this node in group "+p.GetGroup(), "node", c.Node.GetId(), "group", p.GetGroup())
	}
}

// tryAgain applies r, a snapshot refused before, again, and reports
// whether it applied. If not, the next wait doubles.
func (c *Client) tryAgain(r *refused) bool {
	err := c.Applier.Apply(r.version, r.snap)
	if err == nil {
		c.applied()
		c.base, c.baseVersion = r.snap, c.Applier.Version()
		c.Logger.Info("snapshot applied on a later try", "version", r.version, "refused", r.err)
		return true
	}
	r.wait = min(2*r.wait, c.retryMax())
	c.refusedVersion(r.version, err)
	if err.Error() != r.err {
		r.err = err.Error()
		c.Logger.Error("snapshot refused again", "version", r.version, "err", err, "in", r.wait)
	} else {
		c.Logger.Debug("snapshot refused again", "version", r.version, "err", err, "in", r.wait)
	}
	return false
}

func (c *Client) retryMin() time.Duration {
	if c.RetryMin > 0 {
		return c.RetryMin
	}
	return DefaultRetryMin
}

func (c *Client) retryMax() time.Duration {
	if c.RetryMax > 0 {
		return c.RetryMax
	}
	return DefaultRetryMax
}

// rebuild returns the whole snapshot resp brings, from its delta and the
// last applied snapshot when it is a delta, and counts it.
func (c *Client) rebuild(resp *sluicev1.DiscoveryResponse) (*sluicev1.Snapshot, error) {
	d := resp.GetDelta()
	if d == nil {
		c.counters.Snapshots.Add(1)
		c.counters.SnapshotBytes.Add(uint64(proto.Size(resp)))
		return resp.GetSnapshot(), nil
	}
	c.counters.Deltas.Add(1)
	c.counters.DeltaBytes.Add(uint64(proto.Size(resp)))
	if c.base == nil || d.GetBaseVersion() != c.baseVersion || c.baseVersion != c.Applier.Version() {
		c.counters.DeltaErrors.Add(1)
		return nil, fmt.Errorf("%w: delta from version %q, node runs %q", errDeltaBase, d.GetBaseVersion(), c.Applier.Version())
	}
	snap, err := ApplyDelta(c.base, d)
	if err != nil {
		c.counters.DeltaErrors.Add(1)
		return nil, err
	}
	return snap, nil
}
