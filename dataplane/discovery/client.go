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
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

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

	// The snapshot applied last and its version, deltas' base. Only the
	// client's goroutine touches them.
	base        *sluicev1.Snapshot
	baseVersion string

	counters Counters
	retired  atomic.Bool
}

// Counters count the responses the client received, by form. They are
// read with Counters from any goroutine.
type Counters struct {
	Snapshots, Deltas         atomic.Uint64 // responses
	SnapshotBytes, DeltaBytes atomic.Uint64 // their encoded size
	DeltaErrors               atomic.Uint64 // deltas that could not be rebuilt
}

// Counters returns the client's counters.
func (c *Client) Counters() *Counters { return &c.counters }

// Run subscribes until ctx ends, or Retire was called and the subscription
// ends.
func (c *Client) Run(ctx context.Context) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	reconnect.Loop(ctx, c.MinBackoff, c.MaxBackoff, c.Logger, "control plane", &c.retired, c.stream)
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
	if err := reconnect.Register(st, &sluicev1.DiscoveryRequest{Node: c.Node, VersionInfo: running, AcceptDeltas: deltas}); err != nil {
		return false, err
	}
	c.Logger.Info("subscribed to control plane", "node", c.Node.GetId(), "version", running, "deltas", deltas)
	for {
		resp, err := st.Recv()
		if err != nil {
			return true, err
		}
		ack := &sluicev1.DiscoveryRequest{ResponseNonce: resp.GetNonce()}
		snap, applyErr := c.rebuild(resp)
		if applyErr == nil {
			applyErr = c.Applier.Apply(resp.GetVersionInfo(), snap)
		}
		if applyErr != nil {
			c.Logger.Error("snapshot refused", "version", resp.GetVersionInfo(), "delta", resp.GetDelta() != nil, "err", applyErr)
			ack.ErrorDetail = applyErr.Error()
		} else {
			c.base, c.baseVersion = snap, c.Applier.Version()
			c.Logger.Info("snapshot applied", "version", resp.GetVersionInfo(), "delta", resp.GetDelta() != nil)
		}
		ack.VersionInfo = c.Applier.Version()
		if err := st.Send(ack); err != nil {
			return true, err
		}
	}
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
