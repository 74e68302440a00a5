// Package stats sends the node's per-connection records to the control
// plane in batches, and its view of its endpoints (health, counters) when
// it changes and every few seconds. Recording never blocks traffic: the
// queue is bounded, and what does not fit is dropped and counted.
package stats

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
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

// EndpointsEvery is how often the endpoints' view is sent when nothing but
// its counters changed: every second, for the control plane's one-second
// history. A change of health or configuration goes out with the next
// batch, within DefaultInterval.
const EndpointsEvery = time.Second

// Endpoints is where the reporter reads the node's view of its endpoints
// (*node.Node). Its methods are called from Run's goroutine.
type Endpoints interface {
	// StatusChanges grows whenever EndpointStats would show something new
	// other than counters; a new configuration version is such a change.
	StatusChanges() uint64
	// Version is the configuration version running: it changes only once
	// the configuration it names is the one requests are sent with.
	Version() string
	EndpointStats() []*sluicev1.EndpointStats
}

// DrainingTimeout bounds how long Draining waits for the control plane to
// confirm that it learnt the node is draining.
const DrainingTimeout = time.Second

// reconnectWait is about how long Run waits before reopening a broken
// stream: reconnectDelay draws each wait at random from half of it to
// one and a half times it, so that a fleet whose control plane went away
// does not come back in one wave.
const reconnectWait = time.Second

func reconnectDelay() time.Duration { return reconnectWait/2 + rand.N(reconnectWait) }

// errReopen ends a stream that was closed on purpose, to be reopened at once.
var errReopen = errors.New("stats: stream closed to confirm a report")

// Reporter queues connection records and streams them to the control plane.
type Reporter struct {
	queue    chan *sluicev1.ConnRecord
	interval time.Duration // between batches; DefaultInterval but in tests
	drainFor time.Duration // Draining's wait; DrainingTimeout but in tests
	eps      Endpoints     // nil: none reported
	epsDone  atomic.Bool   // EndpointsDone was called: no view goes out
	instance string        // Node.instance, sent on each stream's first report
	epsEvery time.Duration // EndpointsEvery but in tests
	dropped  atomic.Uint64 // since the last report that got through
	total    atomic.Uint64 // ever dropped
	sent     atomic.Uint64
	log      *slog.Logger

	// pending is the batch being gathered, kept across streams: a batch
	// whose stream broke goes out on the next one rather than being lost,
	// since nothing overflowed. Only Run's goroutine touches it.
	pending []*sluicev1.ConnRecord

	// flushes carries Flush's requests to the stream; flushing holds
	// those taken and not yet confirmed, across streams (Run's goroutine
	// only).
	flushes  chan chan struct{}
	flushing []chan struct{}

	running  atomic.Int32  // Run calls in progress
	up       atomic.Bool   // a stream is open, or reopening on purpose
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
		drainFor: DrainingTimeout,
		epsEvery: EndpointsEvery,
		log:      log,
		wake:     make(chan struct{}, 1),
		told:     make(chan struct{}),
		flushes:  make(chan chan struct{}),
	}
}

// ReportEndpoints makes every stream report the endpoints of src: in its
// first message, then whenever src.StatusChanges moved since the last one
// sent, and at least every EndpointsEvery. Call it before Run.
func (r *Reporter) ReportEndpoints(src Endpoints) { r.eps = src }

// EndpointsDone stops the reports of the endpoints' view for good. The
// node calls it before it closes its clusters on the way out: their view
// would then be empty, and the control plane would show it for the
// stopped node in place of the last one. It is safe to call from any
// goroutine.
func (r *Reporter) EndpointsDone() { r.epsDone.Store(true) }

// SetInstance makes every stream name the process it reports for (the
// Node.instance its discovery stream sends), so that the control plane
// tells its draining from a restarted node's. Call it before Run.
func (r *Reporter) SetInstance(id string) { r.instance = id }

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
	t := time.NewTimer(r.drainFor)
	defer t.Stop()
	select {
	case <-r.told:
	case <-t.C:
		r.log.Warn("control plane did not confirm that the node is draining", "waited", r.drainFor)
	}
}

// errNoStream is Flush's error when no stream to the control plane is
// open.
var errNoStream = errors.New("no stream to the control plane is open")

// Flush sends every record queued so far at once, and returns once the
// control plane confirmed them (the stream is closed to get its summary,
// then reopened). The node calls it as it exits, after its last
// connections ended, so that their records (those closed at the end of
// the drain grace: listener_closed) and the last batch still gathering
// are not lost with the process.
//
// It fails when ctx ends first, and at once when Run is not running or
// no stream is open (the control plane away), rather than wait for one.
func (r *Reporter) Flush(ctx context.Context) error {
	if r.running.Load() == 0 || !r.up.Load() {
		return errNoStream
	}
	done := make(chan struct{})
	select {
	case r.flushes <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
		r.up.Store(false)
		r.log.Debug("stats stream ended", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectDelay()):
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
	// The control plane learns every endpoint from the first report of a
	// stream: it may have restarted, or forgotten this node.
	var eps endpointsSent
	draining := r.draining.Load()
	first := &sluicev1.StatsReport{NodeId: nodeID, Instance: r.instance, Draining: draining}
	changes, withEps := eps.attach(r, first, true)
	// Up before the first report goes out: once the control plane has
	// it, a Flush must find the stream open (Run marks it down again if
	// this Send fails).
	r.up.Store(true)
	if err := st.Send(first); err != nil {
		return sendError(st, err)
	}
	if withEps {
		eps.sent(changes)
	}
	if draining && !r.confirmed() {
		return r.confirm(st, true)
	}
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	if r.pending == nil {
		r.pending = make([]*sluicev1.ConnRecord, 0, DefaultBatch)
	}
	for {
		// A flush taken by a stream that broke goes out on this one at
		// once.
		if len(r.flushing) > 0 {
			goto report
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rec := <-r.queue:
			r.pending = append(r.pending, rec)
			if len(r.pending) < DefaultBatch {
				continue
			}
		case <-tick.C:
			if !eps.due(r) && len(r.pending) == 0 && r.dropped.Load() == 0 && !r.draining.Load() {
				continue
			}
		case <-r.wake:
			if r.confirmed() {
				continue
			}
		case done := <-r.flushes:
			r.flushing = append(r.flushing, done)
		}
	report:
		flush := len(r.flushing) > 0
		if flush {
			r.pending = drain(r.queue, r.pending)
		}
		rep := &sluicev1.StatsReport{}
		// A flush comes as the node exits, its listeners and clusters
		// closed: their view then would be empty, not the last one (and
		// EndpointsDone was called before they closed).
		var changes uint64
		var withEps bool
		if !flush {
			changes, withEps = eps.attach(r, rep, false)
		}
		draining := r.draining.Load()
		dropped := r.dropped.Swap(0)
		batch := r.pending
		rep.Records, rep.Dropped, rep.Draining = batch, dropped, draining
		if err := st.Send(rep); err != nil {
			// Not sent: the batch stays pending for the next stream,
			// and the drop count for its next report.
			r.dropped.Add(dropped)
			return sendError(st, err)
		}
		if withEps {
			eps.sent(changes)
		}
		r.sent.Add(uint64(len(batch)))
		r.pending = make([]*sluicev1.ConnRecord, 0, DefaultBatch)
		if flush || draining && !r.confirmed() {
			return r.confirm(st, draining)
		}
	}
}

// drain appends to pending every record waiting in queue.
func drain(queue chan *sluicev1.ConnRecord, pending []*sluicev1.ConnRecord) []*sluicev1.ConnRecord {
	for {
		select {
		case rec := <-queue:
			pending = append(pending, rec)
		default:
			return pending
		}
	}
}

// sendError is why a Send on st failed: io.EOF means the control plane
// ended the stream, and its status (a refused certificate, a replica
// shutting down) comes from CloseAndRecv.
func sendError(st grpc.ClientStreamingClient[sluicev1.StatsReport, sluicev1.ReportSummary], err error) error {
	if err == io.EOF {
		if _, cause := st.CloseAndRecv(); cause != nil {
			return cause
		}
	}
	return err
}

// endpointsSent is what one stream told the control plane of the
// endpoints: the StatusChanges value and the time of the last view sent.
type endpointsSent struct {
	changes uint64
	at      time.Time // zero before the first: then a view is due
}

// reportsEndpoints reports whether views of the endpoints go out: there is
// a source, and EndpointsDone was not called.
func (r *Reporter) reportsEndpoints() bool { return r.eps != nil && !r.epsDone.Load() }

// due reports whether a view of the endpoints should go out now.
func (e *endpointsSent) due(r *Reporter) bool {
	if !r.reportsEndpoints() {
		return false
	}
	return r.eps.StatusChanges() != e.changes || refreshDue(time.Since(e.at), r.epsEvery, r.interval)
}

// refreshDue reports whether a view sent since ago is refreshed at this
// tick of the reporter's ticker, which ticks every interval: once every is
// less than half an interval away. The view went out a little after a
// tick, so on the tick every later, since falls a little short of every;
// waiting for all of it would put the refreshes an interval further apart
// than every (1.25 s with the defaults).
func refreshDue(since, every, interval time.Duration) bool {
	return since >= every-interval/2
}

// attach adds the endpoints' view to rep if it is due (or always, with
// force), and then says so and returns the StatusChanges value the view
// shows, for sent. The value is read before the view, so a change made
// while the view is taken goes out again with the next report. So is the
// version: every request counted after a view that names a version was
// sent with that version or a later one, which a canary's error rate
// counts on.
func (e *endpointsSent) attach(r *Reporter, rep *sluicev1.StatsReport, force bool) (changes uint64, ok bool) {
	if !r.reportsEndpoints() || !force && !e.due(r) {
		return 0, false
	}
	changes = r.eps.StatusChanges()
	version := r.eps.Version()
	rep.Endpoints = &sluicev1.EndpointReport{Endpoints: r.eps.EndpointStats(), Version: version}
	return changes, true
}

// sent records that a report with a view attached went out; changes is
// what attach returned.
func (e *endpointsSent) sent(changes uint64) {
	e.changes, e.at = changes, time.Now()
}

// confirm half-closes a stream whose last report said draining (then
// draining is true), or was sent for Flush, and waits for the control
// plane's summary: it comes once every report of the stream was handled,
// which Send alone does not tell.
func (r *Reporter) confirm(st grpc.ClientStreamingClient[sluicev1.StatsReport, sluicev1.ReportSummary], draining bool) error {
	if _, err := st.CloseAndRecv(); err != nil {
		return err
	}
	if draining {
		r.tellOnce.Do(func() { close(r.told) })
		r.log.Debug("control plane knows the node is draining")
	}
	for _, done := range r.flushing {
		close(done)
	}
	r.flushing = nil
	return errReopen
}
