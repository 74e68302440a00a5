// Package discovery is the node's side of the snapshot stream: it subscribes
// to the control plane, hands each snapshot to the node, answers with an ACK
// or a NACK, and reconnects with backoff and jitter when the stream breaks.
// While it is away the node keeps serving its last applied snapshot.
package discovery

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluice-lb/sluice/internal/reconnect"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
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
}

// Run subscribes until ctx ends.
func (c *Client) Run(ctx context.Context) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	reconnect.Loop(ctx, c.MinBackoff, c.MaxBackoff, c.Logger, "control plane", c.stream)
}

// stream runs one subscription. It reports whether the control plane
// answered at all, which resets the backoff.
func (c *Client) stream(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sluicev1.NewDiscoveryServiceClient(c.Conn).StreamSnapshots(ctx, grpc.WaitForReady(false))
	if err != nil {
		return false, err
	}
	if err := st.Send(&sluicev1.DiscoveryRequest{Node: c.Node, VersionInfo: c.Applier.Version()}); err != nil {
		return false, err
	}
	c.Logger.Info("subscribed to control plane", "node", c.Node.GetId(), "version", c.Applier.Version())
	for {
		resp, err := st.Recv()
		if err != nil {
			return received, err
		}
		received = true
		ack := &sluicev1.DiscoveryRequest{ResponseNonce: resp.GetNonce()}
		if err := c.Applier.Apply(resp.GetVersionInfo(), resp.GetSnapshot()); err != nil {
			c.Logger.Error("snapshot refused", "version", resp.GetVersionInfo(), "err", err)
			ack.ErrorDetail = err.Error()
		} else {
			c.Logger.Info("snapshot applied", "version", resp.GetVersionInfo())
		}
		ack.VersionInfo = c.Applier.Version()
		if err := st.Send(ack); err != nil {
			return received, err
		}
	}
}
