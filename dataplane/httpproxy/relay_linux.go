package httpproxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
)

// pipesShort reports whether the kernel cut a new pipe short within the
// last second (splice.Short): splicing, by spliceResponse or by net's
// splice, would then be slower than copying, so bodies are copied.
func pipesShort() bool { return splice.Short() }

// splicePays reports whether splicing the bytes read from src pays: not
// from a peer on this host (splice.Pays); those are copied.
func splicePays(src *net.TCPConn) bool { return splice.Pays(src) }

// pipeRun is one move of up to n bytes from the socket under src to the
// socket under dst through a pooled pipe, with raw splice calls (package
// splice): each piece read from src is sent on at once. A piece is what
// the pipe holds (1 MiB), but where dst paces its sends (tcpseg.Paced:
// BBR), as many whole segments of dst as fit in a big buffer, as a copied
// body's reads are: over loopback, pieces of up to 1 MiB went out as
// bursts that BBR spaced out by timers, at about a fifth more CPU per MiB,
// and one of 64 KiB would end in a short segment. Its push and pull run
// inside the RawConns' Read, Write and Control, so every wait is the
// netpoller's, under the deadlines set on the sockets; the caller decides
// when to wait for which side. spliceResponse and spliceRequest are its
// two directions. The exchange holds one, with the functions the RawConns
// call bound once, so that a run allocates nothing.
type pipeRun struct {
	p        *splice.Pipe
	src, dst syscall.RawConn
	n        int64
	in, out  int64   // read from src, sent to dst
	sent     *uint64 // if not nil, counts what dst took as it goes
	// mss is where dst's segment size is kept between runs (the client
	// connection's, or the exchange's for its endpoint connection);
	// askMSS has the next push ask it, after a piece that filled its
	// room, since it grows with the peer's window.
	mss     *uint16
	askMSS  bool
	paced   bool  // dst paces its sends: asked at the start of each run
	err     error // a splice call's error (or dst's Control's)
	dstSide bool  // err is dst's
	eof     bool  // src ended before n

	pushFn, pullFn func(uintptr) bool // push and pull, for Write and Read
	pushNext       func(uintptr)      // push, for Control
	askPaced       func(uintptr)      // asks paced, for dst's Control
}

// startPipeRun returns a run from src to dst of up to n bytes, or nil
// when it cannot splice (no raw socket on either side, bc not the
// exchange's endpoint connection, or no pipe to be had). The caller
// ends it with end.
func (cc *clientConn) startPipeRun(bc net.Conn, src, dst syscall.RawConn, mss *uint16, n int64) *pipeRun {
	if cc.raw == nil || cc.x.epRaw == nil || bc != cc.x.epConn {
		return nil
	}
	p := splice.Get()
	if p == nil {
		return nil
	}
	r := &cc.x.pipe
	if r.pushNext == nil { // a new exchange
		r.pushFn, r.pullFn = r.push, r.pull
		r.pushNext = func(fd uintptr) { r.push(fd) }
		r.askPaced = func(fd uintptr) { r.paced = tcpseg.Paced(int(fd)) }
	}
	r.p, r.src, r.dst, r.mss, r.n = p, src, dst, mss, n
	r.in, r.out, r.sent, r.err, r.dstSide, r.eof, r.askMSS, r.paced = 0, 0, nil, nil, false, false, false, false
	dst.Control(r.askPaced) // an error here is the first push's to tell
	return r
}

// end gives the pipe back (splice.Put closes one that still holds bytes),
// and lets go of the sockets.
func (r *pipeRun) end() {
	splice.Put(r.p)
	r.p, r.src, r.dst, r.sent, r.mss, r.err = nil, nil, nil, nil, nil, nil
}

// push moves what the pipe holds to dst (fd); false when dst is full.
func (r *pipeRun) push(fd uintptr) bool {
	if r.askMSS {
		r.askMSS = false
		*r.mss = tcpseg.MSS(int(fd))
	}
	for r.p.Data > 0 {
		m, e := splice.Move(r.p.R, int(fd), r.p.Data)
		switch e {
		case nil:
			r.p.Data -= m
			r.out += int64(m)
			if r.sent != nil {
				*r.sent += uint64(m)
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.err, r.dstSide = e, true
			return true
		}
	}
	return true
}

// pull moves from src (fd) into the pipe, and on to dst at once; false
// to wait for src. It runs with the pipe empty, and returns once the
// pipe holds what dst could not take, src ended, or n bytes were read.
func (r *pipeRun) pull(fd uintptr) bool {
	for r.in < r.n && r.err == nil {
		room := r.p.Size
		if r.paced {
			room = tcpseg.Fit(min(bigBufSize, r.p.Size), int(*r.mss))
		}
		m, e := splice.Move(int(fd), r.p.W, int(min(int64(room), r.n-r.in)))
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false
		case e != nil:
			r.err = e
			return true
		case m == 0:
			r.eof = true
			return true
		}
		r.p.Data += m
		r.in += int64(m)
		if m == room {
			r.askMSS = r.paced
			fullRead(m)
		}
		if err := r.dst.Control(r.pushNext); err != nil {
			r.err, r.dstSide = err, true
		}
		if r.p.Data > 0 {
			return true // dst is full: wait for it
		}
	}
	return true
}

// spliceResponse moves up to n bytes of a response body from the
// endpoint connection bc to the client (a pipeRun). It returns what
// reached the client, and says which side an error came from. ok is
// false when it cannot splice: nothing moved, and the caller copies, or
// uses net's splice if pipes are not short.
//
// net's own splice (TCPConn.ReadFrom) makes its calls as ordinary system
// calls: a splice of a large piece takes longer than a sysmon tick, so
// at GOMAXPROCS=1 the proxy's P moved to another thread on most of them,
// and the body waited for the thread switches.
func (cc *clientConn) spliceResponse(bc net.Conn, n int64) (moved int64, err error, clientSide, ok bool) {
	x := cc.x
	r := cc.startPipeRun(bc, x.epRaw, cc.raw, &cc.mss, n)
	if r == nil {
		return 0, nil, false, false
	}
	defer r.end()
	push, pull := r.pushFn, r.pullFn
	for r.out < n {
		if r.p.Data == 0 {
			if err := r.src.Read(pull); err != nil {
				return r.out, err, false, true
			}
		}
		if r.err != nil {
			return r.out, r.err, r.dstSide, true
		}
		if r.p.Data > 0 {
			if err := r.dst.Write(push); err != nil {
				return r.out, err, true, true
			}
			continue
		}
		if r.eof {
			break
		}
	}
	return r.out, nil, false, true
}

// spliceRequest moves up to n bytes of a request body from the client to
// the endpoint connection bc (a pipeRun). The wait for the client is
// under its read deadline; the wait for the endpoint to take more is in
// armEndpoint's slices, and a slice that ends leaves what the pipe holds
// where it is (net's splice drops it when a write deadline fires, which is
// why it had the endpoint's side wait the whole ResponseTimeout):
// bodyStalled decides whether to wait on, as it does for the copied body.
// It returns what it read from the client (x.epOut counts what reached
// the endpoint, which is less only after an error), and which side an
// error came from (io.ErrUnexpectedEOF: the client closed before n
// bytes). ok is false when it cannot splice: nothing moved, and the
// caller copies.
func (cc *clientConn) spliceRequest(bc net.Conn, n int64) (in int64, err error, clientSide, ok bool) {
	x := cc.x
	r := cc.startPipeRun(bc, cc.raw, x.epRaw, &x.epMSS, n)
	if r == nil {
		return 0, nil, false, false
	}
	defer r.end()
	r.sent = &x.epOut
	cc.mayReadClient()
	if cc.armBodyRead(true) {
		return 0, os.ErrDeadlineExceeded, true, true
	}
	push, pull := r.pushFn, r.pullFn
	// Once the endpoint is full, after it took all it was given, its
	// slice starts afresh: a stall is then told after one slice rather
	// than two (bodyStalled).
	armed := false
	for {
		switch {
		case r.err != nil:
			return r.in, r.err, !r.dstSide, true
		case r.eof:
			return r.in, io.ErrUnexpectedEOF, true, true
		}
		if r.p.Data > 0 {
			if !armed {
				now := time.Now()
				x.hard = now.Add(cc.srv.cfg.Load().ResponseTimeout)
				cc.armEndpoint(bc, now)
				x.stallAt, x.stallOut = now, x.epOut
				armed = true
			}
			err := r.dst.Write(push)
			if err == nil {
				continue
			}
			if !isTimeout(err) {
				return r.in, err, false, true
			}
			if e := cc.bodyStalled(bc); e != nil {
				return r.in, stalledError{e}, false, true
			}
			continue
		}
		if r.in == n {
			return r.in, nil, false, true
		}
		if err := r.src.Read(pull); err != nil {
			if !cc.answerWatchDue(err) {
				return r.in, err, true, true
			}
			if cc.armBodyRead(true) {
				return r.in, os.ErrDeadlineExceeded, true, true
			}
			continue
		}
		armed = false
	}
}
