package tcpproxy

import (
	"slices"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// registry holds a Server's live sessions, one list per endpoint, so that
// the accept path takes only the lock of the endpoint it connected to (one
// more to the endpoint's own, which dialing takes anyway) and the node can
// count and close one endpoint's sessions without touching the others.
type registry struct {
	lists sync.Map // *upstream.Endpoint -> *sessionList
}

// sessionList is the live sessions of one endpoint on one Server, in the
// order they reached the endpoint: oldest first.
type sessionList struct {
	mu         sync.Mutex
	head, tail *session
	n          int
	// dead is set when the list, empty, was removed from the registry
	// because its endpoint was retired; a session that found it in the
	// map a moment before must look again.
	dead bool
}

// add registers ss under ep.
func (r *registry) add(ep *upstream.Endpoint, ss *session) *sessionList {
	for {
		v, ok := r.lists.Load(ep)
		if !ok {
			v, _ = r.lists.LoadOrStore(ep, &sessionList{})
		}
		l := v.(*sessionList)
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			continue
		}
		ss.prev = l.tail
		if l.tail != nil {
			l.tail.next = ss
		} else {
			l.head = ss
		}
		l.tail = ss
		l.n++
		l.mu.Unlock()
		return l
	}
}

// remove unregisters ss from l, the list add returned. The list of a
// retired endpoint (which never takes a session again) is dropped with its
// last session, so endpoints that come and go do not leave lists behind.
func (r *registry) remove(ep *upstream.Endpoint, l *sessionList, ss *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ss.prev != nil {
		ss.prev.next = ss.next
	} else {
		l.head = ss.next
	}
	if ss.next != nil {
		ss.next.prev = ss.prev
	} else {
		l.tail = ss.prev
	}
	ss.prev, ss.next = nil, nil
	l.n--
	r.dropIfRetired(ep, l)
}

// dropIfRetired drops l, ep's list, from the registry when it is empty and
// ep retired (it never takes a session again). The caller holds l.mu.
func (r *registry) dropIfRetired(ep *upstream.Endpoint, l *sessionList) {
	if l.n == 0 && ep.Draining() {
		l.dead = true
		r.lists.CompareAndDelete(ep, l)
	}
}

// forgetRetired drops the empty lists of retired endpoints. remove drops
// the list of an endpoint that is retired while it has sessions, with the
// last one; the list of one retired after its sessions ended stays until
// this finds it (the idle timeout's scans call it), so that the registry
// does not keep every endpoint it ever served.
func (r *registry) forgetRetired() {
	r.lists.Range(func(k, v any) bool {
		l := v.(*sessionList)
		l.mu.Lock()
		r.dropIfRetired(k.(*upstream.Endpoint), l)
		l.mu.Unlock()
		return true
	})
}

// appendAll appends the sessions of l to dst, oldest first, and returns
// the extended slice.
func (l *sessionList) appendAll(dst []*session) []*session {
	l.mu.Lock()
	defer l.mu.Unlock()
	dst = slices.Grow(dst, l.n)
	for ss := l.head; ss != nil; ss = ss.next {
		dst = append(dst, ss)
	}
	return dst
}

// list returns ep's list, or nil when ep has no session.
func (r *registry) list(ep *upstream.Endpoint) *sessionList {
	v, ok := r.lists.Load(ep)
	if !ok {
		return nil
	}
	return v.(*sessionList)
}

// Sessions is the number of live sessions of this server (listener) with
// endpoint ep.
func (s *Server) Sessions(ep *upstream.Endpoint) int {
	l := s.sessions.list(ep)
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// CloseIdle closes up to n of this server's sessions with endpoint ep,
// oldest first, among those that are idle: neither side carried a byte for
// minIdle, nothing is queued either way, and the endpoint spoke last (the
// client's last message was answered) or neither side spoke yet, so that
// no exchange is cut. Each ends with reason CLOSE_REASON_REBALANCED. It
// returns how many it closed.
//
// Idleness is read from the kernel (TCP_INFO), since the bytes of a
// session never reach user space. Where that is not possible (not Linux),
// no session counts as idle and CloseIdle closes nothing.
//
// A byte that reaches the proxy between the check and the close finds the
// session closed, as with any idle timeout: rebalancing is for clients that
// reconnect and retry an unanswered message.
func (s *Server) CloseIdle(ep *upstream.Endpoint, n int, minIdle time.Duration) int {
	l := s.sessions.list(ep)
	if l == nil || n <= 0 {
		return 0
	}
	// Look at the sessions outside the lock: each look is two system calls
	// per socket, and sessions keep starting and ending meanwhile.
	candidates := l.appendAll(nil)
	closed := 0
	for _, ss := range candidates {
		if closed == n {
			break
		}
		if ss.closedFor.Load() != 0 || ss.lastMoved.Load() == movedUp || !idle(ss.client, ss.raw, minIdle) {
			continue
		}
		if ss.closeFor(sluicev1.CloseReason_CLOSE_REASON_REBALANCED) {
			closed++
		}
	}
	return closed
}

// settleList holds the sessions whose bytes moved since the last settle
// scan, so that the scan looks at those alone: idle sessions, however
// many, cost it nothing, and a server whose sessions are all idle has no
// scan to run.
type settleList struct {
	mu    sync.Mutex
	due   []*session
	spare []*session // the slice the last scan went through, for reuse
	// timer runs the scan (Server.settleAll) meter.SettleEvery after the
	// first session went on the list since the last scan, until stop.
	timer   *time.Timer
	stopped bool
}

// init makes the timer that runs scan, stopped.
func (l *settleList) init(scan func()) {
	l.mu.Lock()
	l.timer = time.AfterFunc(time.Hour, scan)
	l.timer.Stop()
	l.mu.Unlock()
}

// stop ends the scans: the sessions still live settle as they finish.
func (l *settleList) stop() {
	l.mu.Lock()
	l.stopped = true
	l.timer.Stop()
	l.mu.Unlock()
}

// add puts ss on the list (session.moved, once until the next scan), and
// has the scan run within meter.SettleEvery if it is the first there.
func (l *settleList) add(ss *session) {
	l.mu.Lock()
	l.due = append(l.due, ss)
	if len(l.due) == 1 && !l.stopped {
		l.timer.Reset(meter.SettleEvery)
	}
	l.mu.Unlock()
}

// settleAll counts in the meters what the sessions that moved bytes since
// the last time moved, so that a long session's bytes show as they move.
// A session that ended since is let go: its end counted what was left.
func (s *Server) settleAll() {
	l := &s.settle
	l.mu.Lock()
	due := l.due
	l.due, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for i, ss := range due {
		// Cleared first: bytes sent from here on put it on the list again
		// (and set the next scan).
		ss.unsettled.Store(false)
		ss.settle()
		due[i] = nil
	}
	l.mu.Lock()
	l.spare = due[:0]
	l.mu.Unlock()
}

// all returns every live session of the registry.
func (r *registry) all() []*session {
	var all []*session
	r.lists.Range(func(_, v any) bool {
		all = v.(*sessionList).appendAll(all)
		return true
	})
	return all
}

// closeAll ends every live session of the registry.
func (r *registry) closeAll() {
	for _, ss := range r.all() {
		ss.abort()
	}
}
