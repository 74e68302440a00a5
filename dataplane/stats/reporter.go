// Package stats sends the node's per-connection records to the control
// plane in batches. Recording never blocks traffic: the queue is bounded,
// and what does not fit is dropped and counted.
package stats

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
)

// Defaults of a Reporter.
const (
	DefaultQueue    = 8192
	DefaultBatch    = 512
	DefaultInterval = 250 * time.Millisecond
)

// Reporter queues connection records and streams them to the control plane.
type Reporter struct {
	queue   chan *sluicev1.ConnRecord
	dropped atomic.Uint64 // since the last report that got through
	total   atomic.Uint64 // ever dropped
	sent    atomic.Uint64
	log     *slog.Logger
}

// NewReporter returns a reporter whose queue holds size records.
func NewReporter(size int, log *slog.Logger) *Reporter {
	if size <= 0 {
		size = DefaultQueue
	}
	if log == nil {
		log = slog.Default()
	}
	return &Reporter{queue: make(chan *sluicev1.ConnRecord, size), log: log}
}

// Record queues the record of a connection that ended. It never blocks.
func (r *Reporter) Record(ci *conntrack.ConnInfo) {
	select {
	case r.queue <- ci.Record():
	default:
		r.dropped.Add(1)
		r.total.Add(1)
	}
}

// Dropped is how many records were dropped since the reporter started.
func (r *Reporter) Dropped() uint64 { return r.total.Load() }

// Sent is how many records reached the control plane.
func (r *Reporter) Sent() uint64 { return r.sent.Load() }

// Run streams batches until ctx ends, reopening the stream when it breaks.
func (r *Reporter) Run(ctx context.Context, conn grpc.ClientConnInterface, nodeID string) {
	for ctx.Err() == nil {
		err := r.stream(ctx, conn, nodeID)
		if ctx.Err() != nil {
			return
		}
		r.log.Debug("stats stream ended", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Reporter) stream(ctx context.Context, conn grpc.ClientConnInterface, nodeID string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sluicev1.NewStatsServiceClient(conn).Report(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&sluicev1.StatsReport{NodeId: nodeID}); err != nil {
		return err
	}
	tick := time.NewTicker(DefaultInterval)
	defer tick.Stop()
	batch := make([]*sluicev1.ConnRecord, 0, DefaultBatch)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rec := <-r.queue:
			batch = append(batch, rec)
			if len(batch) < DefaultBatch {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 && r.dropped.Load() == 0 {
				continue
			}
		}
		dropped := r.dropped.Swap(0)
		if err := st.Send(&sluicev1.StatsReport{Records: batch, Dropped: dropped}); err != nil {
			// The batch is lost with the stream; count it.
			r.dropped.Add(dropped + uint64(len(batch)))
			r.total.Add(uint64(len(batch)))
			return err
		}
		r.sent.Add(uint64(len(batch)))
		batch = make([]*sluicev1.ConnRecord, 0, DefaultBatch)
	}
}
