// Package stats sends the node's per-connection records to the control
// plane in batches. Recording never blocks traffic: the queue is bounded,
// and what does not fit is dropped and counted.
package stats

import (
	"context"
	"errors"
	"log/slog"
	"sync"
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

// DrainingTimeout bounds how long Draining waits for the control plane to
// confirm that it learnt the node is draining.
const DrainingTimeout = time.Second

// reconnectWait is how long Run waits before reopening a broken stream.
const reconnectWait = time.Second

// errReopen ends a stream that was closed on purpose, to be reopened at once.
var errReopen = errors.New("stats: stream closed to confirm a report")

// Reporter queues connection records and streams them to the control plane.
type Reporter struct {
	queue    chan *sluicev1.ConnRecord
	interval time.Duration // between batches; DefaultInterval but in tests
	dropped  atomic.Uint64 // since the last report that got through
	total    atomic.Uint64 // ever dropped
	sent     atomic.Uint64
	log      *slog.Logger

	running  atomic.Int32  // Run calls in progress
	draining atomic.Bool   // Draining was called
	wake     chan struct{} // cap 1: Draining asks Run to report now
	told     chan struct{} // closed once the control plane confirmed draining
	tellOnce sync.Once
}

// NewReporter returns a reporter whose queue holds size records.
func NewReporter(size int, log *slog.Logger) *Reporter {
	if size <= 0 {
		size = DefaultQueue
	}
	if log == nil {
		log = slog.Default()
	}
	return &Reporter{
		queue:    make(chan *sluicev1.ConnRecord, size),
		interval: DefaultInterval,
		log:      log,
		wake:     make(chan struct{}, 1),
		told:     make(chan struct{}),
	}
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

// Draining tells the control plane that the node began to drain (SIGTERM):
// it accepts no new connections, finishes what it has, then goes away.
//
// From then on every report carries draining=true, and a report goes out
// every DefaultInterval even with nothing in it, so that a control plane
// that restarted, or that saw the node's discovery stream reconnect, learns
// it again within an interval. The first such report is sent at once, with
// whatever records are queued, without waiting for the next batch.
//
// Draining returns once the control plane confirmed that report (the stats
// stream is closed to get its summary, then reopened), so cancelling Run's
// context or closing its connection right afterwards loses nothing. It waits
// at most DrainingTimeout, when the control plane cannot be reached, and
// returns at once when Run is not running (the next Run reports draining on
// its first message). Calling it again only waits for the same confirmation.
// It is safe to call from any goroutine.
func (r *Reporter) Draining() {
	r.draining.Store(true)
	if r.running.Load() == 0 {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(DrainingTimeout)
	defer t.Stop()
	select {
	case <-r.told:
	case <-t.C:
		r.log.Warn("control plane did not confirm that the node is draining", "waited", DrainingTimeout)
	}
}

// confirmed reports whether the control plane confirmed draining.
func (r *Reporter) confirmed() bool {
	select {
	case <-r.told:
		return true
	default:
		return false
	}
}

// Run streams batches until ctx ends, reopening the stream when it breaks.
func (r *Reporter) Run(ctx context.Context, conn grpc.ClientConnInterface, nodeID string) {
	r.running.Add(1)
	defer r.running.Add(-1)
	for ctx.Err() == nil {
		err := r.stream(ctx, conn, nodeID)
		if ctx.Err() != nil {
			return
		}
		if err == errReopen {
			continue
		}
		r.log.Debug("stats stream ended", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectWait):
		case <-r.wake: // draining: try now rather than after the wait
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
	draining := r.draining.Load()
	if err := st.Send(&sluicev1.StatsReport{NodeId: nodeID, Draining: draining}); err != nil {
		return err
	}
	if draining && !r.confirmed() {
		return r.confirm(st)
	}
	tick := time.NewTicker(r.interval)
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
			if len(batch) == 0 && r.dropped.Load() == 0 && !r.draining.Load() {
				continue
			}
		case <-r.wake:
			if r.confirmed() {
				continue
			}
		}
		draining := r.draining.Load()
		dropped := r.dropped.Swap(0)
		if err := st.Send(&sluicev1.StatsReport{Records: batch, Dropped: dropped, Draining: draining}); err != nil {
			// The batch is lost with the stream; count it.
			r.dropped.Add(dropped + uint64(len(batch)))
			r.total.Add(uint64(len(batch)))
			return err
		}
		r.sent.Add(uint64(len(batch)))
		batch = make([]*sluicev1.ConnRecord, 0, DefaultBatch)
		if draining && !r.confirmed() {
			return r.confirm(st)
		}
	}
}

// confirm half-closes a stream whose last report said draining, and waits
// for the control plane's summary: it comes once every report of the stream
// was handled, which Send alone does not tell.
func (r *Reporter) confirm(st grpc.ClientStreamingClient[sluicev1.StatsReport, sluicev1.ReportSummary]) error {
	if _, err := st.CloseAndRecv(); err != nil {
		return err
	}
	r.tellOnce.Do(func() { close(r.told) })
	r.log.Debug("control plane knows the node is draining")
	return errReopen
}
