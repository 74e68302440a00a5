package discovery

import (
	"context"
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

// KeepRefusals has s write to st each refusal that speaks of the snapshot
// (see fleet.Session.Nacked), so that history lists it with its version.
// One goroutine writes them in the order they came, so no stream waits for
// the store; a write that fails is logged and dropped. It returns s; call
// it before serving. Close stops the writer.
func (s *Server) KeepRefusals(st RefusalStore) *Server {
	s.refusals = make(chan refusal, refusalQueue)
	go s.writeRefusals(st)
	return s
}

// refused queues node's refusal of version for KeepRefusals' store.
func (s *Server) refused(node string, version uint64, detail string) {
	if s.refusals == nil {
		return
	}
	r := refusal{version, &sluicev1.Refusal{Node: node, Error: detail, At: timestamppb.Now()}}
	select {
	case s.refusals <- r:
	default:
		s.log.Warn("history will not list a refusal: too many wait for the store", "node", node, "version", version)
	}
}

func (s *Server) writeRefusals(st RefusalStore) {
	for {
		select {
		case <-s.closed:
			return
		case r := <-s.refusals:
			ctx, cancel := context.WithTimeout(context.Background(), refusalTimeout)
			if err := st.Refused(ctx, r.version, r.r); err != nil {
				s.log.Warn("history will not list a refusal: the store did not keep it", "node", r.r.GetNode(), "version", r.version, "err", err)
			}
			cancel()
		}
	}
}
