// Package stats receives what dataplane nodes observed, over
// sluice.v1.StatsService: it keeps the most recent per-connection records in
// a bounded ring for operators (sluicectl conns), and each node's latest
// view of its endpoints (sluicectl stats).
//
// Each node holds one Report stream; gRPC runs each stream's handler on its
// own goroutine, and the handler adds records to the shared Ring and
// replaces the node's endpoint View under short locks, and tells Nodes (the
// fleet registry) when the node says it drains. Readers (the config API,
// the dashboard) call List and Counters from any goroutine. Nothing here
// persists: the ring is a window on recent traffic, not an archive.
package stats

import (
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultRingSize is how many records a Ring keeps when created with size 0.
const DefaultRingSize = 10000

// DefaultListLimit is how many records List returns for a limit of 0.
const DefaultListLimit = 100

// Ring keeps the last N connection records, overwriting the oldest. Records
// are stored and returned as given: they must not be modified after Add, and
// what List returns is read-only.
type Ring struct {
	mu   sync.Mutex
	buf  []*sluicev1.ConnRecord
	next int // where the next record goes
	full bool
}

// NewRing returns a ring of size records (0: DefaultRingSize).
func NewRing(size int) *Ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &Ring{buf: make([]*sluicev1.ConnRecord, size)}
}

// Add appends records, oldest first.
func (r *Ring) Add(recs []*sluicev1.ConnRecord) {
	if len(recs) > len(r.buf) {
		recs = recs[len(recs)-len(r.buf):]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		r.buf[r.next] = rec
		r.next++
		if r.next == len(r.buf) {
			r.next = 0
			r.full = true
		}
	}
}

// Filter selects records; an empty field matches all.
type Filter struct {
	NodeID, Cluster, Endpoint, Listener string
	// Reasons keeps records that closed for one of these reasons, or
	// with a failed request that failed for one (ConnRecord.failures).
	Reasons []sluicev1.CloseReason
	// MinDuration keeps records of connections that lived at least this
	// long.
	MinDuration time.Duration
	// Nodes, when not nil, keeps records of these nodes only.
	Nodes map[string]bool
}

func (f Filter) match(rec *sluicev1.ConnRecord) bool {
	return (f.NodeID == "" || rec.GetNodeId() == f.NodeID) &&
		(f.Nodes == nil || f.Nodes[rec.GetNodeId()]) &&
		(f.Cluster == "" || rec.GetCluster() == f.Cluster) &&
		(f.Endpoint == "" || rec.GetEndpoint() == f.Endpoint) &&
		(f.Listener == "" || rec.GetListener() == f.Listener) &&
		(len(f.Reasons) == 0 || slices.Contains(f.Reasons, rec.GetCloseReason()) ||
			slices.ContainsFunc(rec.GetFailures(), func(r sluicev1.CloseReason) bool { return slices.Contains(f.Reasons, r) })) &&
		(f.MinDuration <= 0 || rec.GetDuration().AsDuration() >= f.MinDuration)
}

// List returns up to limit records matching f, newest first (limit 0:
// DefaultListLimit).
func (r *Ring) List(f Filter, limit int) []*sluicev1.ConnRecord {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]*sluicev1.ConnRecord, 0, min(limit, n))
	for i := 1; i <= n && len(out) < limit; i++ {
		rec := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		if f.match(rec) {
			out = append(out, rec)
		}
	}
	return out
}

// Counters are totals since the control plane started.
type Counters struct {
	// Received counts records received from all nodes.
	Received uint64
	// Dropped sums what nodes reported dropping from their own full queues.
	Dropped uint64
}

// Nodes is told what a node says of itself on its stats stream.
// *fleet.Registry implements it. It is called from stream goroutines and
// must not block.
type Nodes interface {
	// Draining records that node began to drain, as instance (Node.instance)
	// said, and reports whether that changed what is known of it (false:
	// already known, not connected, or another instance).
	Draining(node, instance string) bool
	// Replaced reports whether instance is an old process of node that a
	// newer one replaced.
	Replaced(node, instance string) bool
	// Group is the node group node is in ("" when none).
	Group(node string) string
	// Seen records that node, as instance, was heard from now. A stream
	// calls it at most once per seenEvery.
	Seen(node, instance string)
}

// seenEvery is how often a node's stats stream, which reports every 250 ms,
// tells Nodes the node was seen: often enough for last_seen, rarely enough
// that 10,000 nodes do not contend for the registry's lock.
const seenEvery = time.Second

// Observer is told every endpoint view a node reports and when the
// node's stats stream ends (*history.Recorder, which keeps the dashboard's
// charts). It is called from stream goroutines and must not block.
type Observer interface {
	Observe(node, group string, at time.Time, eps []*sluicev1.EndpointStats)
	Forget(node string, at time.Time)
}

// Server implements sluicev1.StatsServiceServer, feeding a Ring.
type Server struct {
	sluicev1.UnimplementedStatsServiceServer

	ring     *Ring
	views    *Views
	nodes    Nodes    // nil: nobody to tell
	observer Observer // nil: nobody to tell
	log      *slog.Logger
	received atomic.Uint64
	dropped  atomic.Uint64
}

var _ sluicev1.StatsServiceServer = (*Server)(nil)

// NewServer returns a server that keeps records in ring, tells nodes (nil:
// nobody) which nodes drain, and logs to log (nil: no logging).
func NewServer(ring *Ring, nodes Nodes, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ring: ring, views: NewViews(), nodes: nodes, log: log}
}

// WithObserver makes the server tell o every endpoint view and every end
// of a node's stream. It returns s; call it before serving.
func (s *Server) WithObserver(o Observer) *Server {
	s.observer = o
	return s
}

// Ring returns the ring the server feeds.
func (s *Server) Ring() *Ring { return s.ring }

// Views returns the nodes' endpoint views the server keeps.
func (s *Server) Views() *Views { return s.views }

// Counters returns the totals so far.
func (s *Server) Counters() Counters {
	return Counters{Received: s.received.Load(), Dropped: s.dropped.Load()}
}

// replaced reports whether instance, which said it drains, is an old
// process of node beside the one that replaced it (see Nodes.Replaced).
// Its connection records count; its endpoint counters, which run from its
// own start, must not be taken for the node's, nor its stream's end for
// the node's. Only a draining stream asks: the registry's lock is not
// taken for every report of 10k nodes.
func (s *Server) replaced(node, instance string, draining bool) bool {
	return draining && s.nodes != nil && s.nodes.Replaced(node, instance)
}

// Report implements sluicev1.StatsServiceServer. The first message names the
// node; every record of the stream is stamped with that id, whatever the
// node wrote in it, a report with endpoints replaces the node's View
// (unless an old process of the node sent it, see replaced), and every
// report saying draining is passed on to Nodes (a draining node repeats it,
// so that a node whose discovery stream reconnected shows draining again).
// The summary, sent once every report was handled, counts the stream's
// records.
func (s *Server) Report(stream grpc.ClientStreamingServer[sluicev1.StatsReport, sluicev1.ReportSummary]) error {
	var (
		node, instance  string
		total           uint64
		draining, ended bool
		seen            time.Time // when Nodes was last told
	)
	end := func() { // the node's stream ended: before the summary, if any
		if !ended && node != "" && s.observer != nil && !s.replaced(node, instance, draining) {
			s.observer.Forget(node, time.Now())
		}
		ended = true
	}
	defer end()
	for {
		rep, err := stream.Recv()
		if err == io.EOF {
			end()
			return stream.SendAndClose(&sluicev1.ReportSummary{Records: total})
		}
		if err != nil {
			return err
		}
		if err := rep.Validate(); err != nil {
			return status.Errorf(codes.InvalidArgument, "stats: %v", err)
		}
		if node == "" {
			if node = rep.GetNodeId(); node == "" {
				return status.Error(codes.InvalidArgument, "stats: the first report must carry node_id")
			}
			instance = rep.GetInstance()
		}
		recs := rep.GetRecords()
		for _, rec := range recs {
			rec.NodeId = node
		}
		s.ring.Add(recs)
		total += uint64(len(recs))
		s.received.Add(uint64(len(recs)))
		if d := rep.GetDropped(); d > 0 {
			s.dropped.Add(d)
			s.log.Debug("node dropped stats records", "node", node, "dropped", d)
		}
		draining = draining || rep.GetDraining()
		if eps := rep.GetEndpoints(); eps != nil && !s.replaced(node, instance, draining) {
			view := s.views.Put(node, eps)
			if s.observer != nil {
				group := ""
				if s.nodes != nil {
					group = s.nodes.Group(node)
				}
				s.observer.Observe(node, group, view.ReportedAt, view.Endpoints)
			}
		}
		if rep.GetDraining() && s.nodes != nil && s.nodes.Draining(node, instance) {
			s.log.Info("node is draining", "node", node)
		}
		if now := time.Now(); s.nodes != nil && now.Sub(seen) >= seenEvery {
			s.nodes.Seen(node, instance)
			seen = now
		}
	}
}
