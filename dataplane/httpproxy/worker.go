package httpproxy

import (
	"log/slog"
	"runtime/debug"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Workers run the busy phases of client connections that cannot park
// (clientConn.serve): TLS ones, those served with ServeConn or
// ServeConnFrom, and all where there is no epoll.
//
// A goroutine's stack grows to the deepest call it ever made and shrinks
// only at a garbage collection, which a proxy that does not allocate rarely
// triggers. If a connection's own goroutine ran its exchanges, every idle
// keep-alive connection would keep the 8 KiB stack of the exchange code
// (dialing, splicing, parsing); instead, a connection hands its busy phases
// to a worker and waits with a minimal stack. Workers are as many as the
// connections busy at once and are reused; the handoff costs two goroutine
// switches per busy phase.
type worker struct {
	cc   *clientConn
	wake chan struct{}
	done chan bool
}

// maxIdleWorkers bounds the parked workers kept for reuse; a worker finding
// the pool full ends.
const maxIdleWorkers = 64

var idleWorkers = make(chan *worker, maxIdleWorkers)

// runBusy runs cc.busy on a worker and waits for it.
func runBusy(cc *clientConn) bool {
	var w *worker
	select {
	case w = <-idleWorkers:
	default:
		w = &worker{wake: make(chan struct{}), done: make(chan bool)}
		go w.run()
	}
	w.cc = cc
	w.wake <- struct{}{}
	return <-w.done
}

func (w *worker) run() {
	for range w.wake {
		keep := w.cc.busySafe()
		w.cc = nil
		w.done <- keep
		select {
		case idleWorkers <- w:
		default:
			return
		}
	}
}

// busySafe runs the connection's busy phase. A panic there is a bug, but
// one client must not take the node down with it: like net/http, the panic
// is logged with its stack and only this connection ends.
func (cc *clientConn) busySafe() (keep bool) {
	defer func() {
		if p := recover(); p != nil {
			cc.panicked(p)
			keep = false
		}
	}()
	return cc.busy()
}

// panicked logs a panic serving cc, with its stack, and ends cc as an I/O
// error.
func (cc *clientConn) panicked(p any) {
	slog.Error("httpproxy: panic serving a connection; closing it", "listener", cc.info.Listener, "client", cc.c.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
	cc.reason = sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
	if cc.x != nil {
		// The endpoint connection is in a state nobody knows: close it,
		// and give its endpoint the request back.
		cc.endpointDone(cc.x.epConn, false)
	}
}
