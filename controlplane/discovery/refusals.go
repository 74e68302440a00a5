package discovery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// RefusalStore keeps the nodes' refusals of versions: the store, whose
// history lists them.
type RefusalStore interface {
	Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error
}

const (
	// refusalQueue is how many refusals may wait for the store. A fleet
	// that refuses a version all at once, while the store is slow, loses
	// the rest from history (each is logged, and stays in nodes).
	refusalQueue = 1024
	// refusalTimeout bounds one write of a refusal.
	refusalTimeout = 10 * time.Second
)

type refusal struct {
	version uint64
	r       *sluicev1.Refusal
}

// refusalWriter writes queued refusals to the store, from one goroutine and
// in the order they came, so that no stream waits for the store.
type refusalWriter struct {
	st  RefusalStore
	log *slog.Logger

	mu     sync.Mutex
	q      chan refusal
	closed bool // q is closed: FlushRefusals ran

	// ctx ends the writes when FlushRefusals gives up on them.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// KeepRefusals has s write to st each refusal that speaks of the snapshot
// (see fleet.Session.Nacked), so that history lists it with its version.
// A write that fails is logged and dropped. It returns s; call it before
// serving, and FlushRefusals once the streams ended.
func (s *Server) KeepRefusals(st RefusalStore) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	w := &refusalWriter{st: st, log: s.log, q: make(chan refusal, refusalQueue),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.refusals = w
	go w.run()
	return s
}

// FlushRefusals writes the refusals still waiting for KeepRefusals' store,
// until they are written or ctx ends, and stops the writer; a refusal that
// comes later is only logged. Call it after the streams ended (Close, then
// grpc.Server.Stop) and before the store is closed, so that the NACKs of a
// stop's last moments are kept in history too.
func (s *Server) FlushRefusals(ctx context.Context) {
	w := s.refusals
	if w == nil {
		return
	}
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return
	case <-ctx.Done():
	}
	w.cancel() // ends the write in progress; run drops the rest
	<-w.done
}

// refused queues node's refusal of version for KeepRefusals' store.
func (s *Server) refused(node string, version uint64, detail string) {
	if s.refusals == nil {
		return
	}
	s.refusals.add(refusal{version, &sluicev1.Refusal{Node: node, Error: detail, At: timestamppb.Now()}})
}

func (w *refusalWriter) add(r refusal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.log.Warn("history will not list a refusal: the control plane is stopping", "node", r.r.GetNode(), "version", r.version)
		return
	}
	select {
	case w.q <- r:
	default:
		w.log.Warn("history will not list a refusal: too many wait for the store", "node", r.r.GetNode(), "version", r.version)
	}
}

func (w *refusalWriter) run() {
	defer close(w.done)
	dropped := 0
	for r := range w.q {
		if w.ctx.Err() != nil {
			dropped++
			continue
		}
		ctx, cancel := context.WithTimeout(w.ctx, refusalTimeout)
		if err := w.st.Refused(ctx, r.version, r.r); err != nil {
			w.log.Warn("history will not list a refusal: the store did not keep it", "node", r.r.GetNode(), "version", r.version, "err", err)
		}
		cancel()
	}
	if dropped > 0 {
		w.log.Warn("history will not list refusals: the control plane stopped before the store kept them", "refusals", dropped)
	}
}
