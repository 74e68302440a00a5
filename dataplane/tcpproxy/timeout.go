package tcpproxy

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// The idle timeout (Config.IdleTimeout) closes a session that carried no
// byte either way for that long, as CLIENT_TIMEOUT.
//
// A session has no deadline of its own: its halves are mostly parked,
// with no goroutine and no timer, and their bytes never reach user space.
// One timer per Server scans its live sessions instead and asks the
// kernel how long each socket carried no data (quietReader: TCP_INFO, two
// system calls per session). Each scan closes the sessions quiet for the
// timeout and sets the next one for when the quietest of the others would
// reach it, or a whole timeout later when none would sooner: a session
// that starts or carries a byte after a scan cannot reach it before that.
// So a session is closed within a scan's spacing of its time. The spacing
// is at least a sixteenth of the timeout, which bounds what scans cost
// with many sessions, and how late one may close (an hour's timeout:
// within 3m45s).
//
// The kernel's times are those of data, not of bare ACKs or keep-alive
// probes: a session whose receiver stopped reading, its window closed,
// carries no data and times out too. Where the kernel does not tell
// (not Linux), no session is found quiet and none is closed.

// idleTimeouts is a Server's schedule of idle scans.
type idleTimeouts struct {
	timer *time.Timer  // runs Server.scanIdle
	armed atomic.Int64 // the timeout the schedule follows, a time.Duration
	scan  sync.Mutex   // one scan at a time
	q     quietReader  // the scan's; guarded by scan
}

// minScanSpacing is how close two scans may follow each other at the
// least, for short timeouts (tests).
const minScanSpacing = 5 * time.Millisecond

// scanBatch is how many sessions a scan looks at before it lets other
// goroutines run: about a third of a millisecond's work.
const scanBatch = 256

// scanSpacing is the least time between two scans under timeout d.
func scanSpacing(d time.Duration) time.Duration { return max(d/16, minScanSpacing) }

// rearmIdle starts the scans under timeout d (0: none) when d is not the
// timeout they follow already. An apply that keeps the timeout leaves the
// schedule as it is.
func (s *Server) rearmIdle(d time.Duration) {
	if time.Duration(s.idle.armed.Swap(int64(d))) == d || d <= 0 {
		return // a scan that finds no timeout stops
	}
	s.idle.timer.Reset(scanSpacing(d))
}

// scanIdle closes the sessions quiet for the idle timeout and sets the
// next scan.
func (s *Server) scanIdle() {
	s.idle.scan.Lock()
	defer s.idle.scan.Unlock()
	d := s.cfg.Load().IdleTimeout
	if d <= 0 || s.closing.Load() {
		return
	}
	s.sessions.forgetRetired()
	next := d
	for i, ss := range s.sessions.all() {
		if i%scanBatch == scanBatch-1 {
			// A node at GOMAXPROCS=1 serves its connections in the
			// meantime: a scan of 100k sessions takes a tenth of a
			// second.
			runtime.Gosched()
		}
		if ss.closedFor.Load() != 0 {
			continue
		}
		quiet, ok := s.idle.q.quietFor(ss.clientRC, ss.rawRC)
		switch {
		case !ok: // closed under the scan, or not Linux
		case quiet >= d:
			ss.closeFor(sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT)
		default:
			next = min(next, d-quiet)
		}
	}
	if s.closing.Load() {
		return
	}
	if cur := s.cfg.Load().IdleTimeout; cur != d { // an apply changed it meanwhile
		if cur <= 0 {
			return
		}
		d, next = cur, 0
	}
	s.idle.timer.Reset(max(next, scanSpacing(d)))
}
