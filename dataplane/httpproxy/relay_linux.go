package httpproxy

import (
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
)

// pipesShort reports whether the kernel cut a new pipe short within the
// last second (splice.Short): splicing, by spliceResponse or by net's
// splice, would then be slower than copying, so bodies are copied.
func pipesShort() bool { return splice.Short() }

// spliceResponse moves up to n bytes of a response body from the
// endpoint connection bc to the client through a pooled pipe, with raw
// splice calls (package splice): each piece read from the endpoint is
// sent on at once, and the wait for either socket is the netpoller's,
// under the deadlines set on it. It returns what reached the client, and
// says which side an error came from. ok is false when it cannot splice
// (no raw socket on either side, or no pipe to be had): nothing moved,
// and the caller copies, or uses net's splice if pipes are not short.
//
// net's own splice (TCPConn.ReadFrom) makes its calls as ordinary system
// calls: a splice of a large piece takes longer than a sysmon tick, so
// at GOMAXPROCS=1 the proxy's P moved to another thread on most of them,
// and the body waited for the thread switches.
func (cc *clientConn) spliceResponse(bc net.Conn, n int64) (moved int64, err error, clientSide, ok bool) {
	x := cc.x
	if cc.raw == nil || x.epRaw == nil || bc != x.epConn {
		return 0, nil, false, false
	}
	p := splice.Get()
	if p == nil {
		return 0, nil, false, false
	}
	defer splice.Put(p)
	var serr error // an error of a splice call, and whose
	var eof bool
	push := func(fd uintptr) bool { // pipe → client; false: client full
		for p.Data > 0 {
			m, e := splice.Move(p.R, int(fd), p.Data)
			switch e {
			case nil:
				p.Data -= m
				moved += int64(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				serr, clientSide = e, true
				return true
			}
		}
		return true
	}
	pushNow := func(fd uintptr) { push(fd) }
	// pull runs with the pipe empty, and returns once it holds what the
	// client could not take.
	pull := func(fd uintptr) bool { // endpoint → pipe, and on; false: wait for the endpoint
		for moved < n && serr == nil {
			m, e := splice.Move(int(fd), p.W, int(min(int64(p.Size), n-moved)))
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			case e != nil:
				serr = e
				return true
			case m == 0:
				eof = true
				return true
			}
			p.Data += m
			if err := cc.raw.Control(pushNow); err != nil {
				serr, clientSide = err, true
			}
			if p.Data > 0 {
				return true // the client is full: wait for it
			}
		}
		return true
	}
	for moved < n {
		if p.Data == 0 {
			if err := x.epRaw.Read(pull); err != nil {
				return moved, err, false, true
			}
		}
		if serr != nil {
			return moved, serr, clientSide, true
		}
		if p.Data > 0 {
			if err := cc.raw.Write(push); err != nil {
				return moved, err, true, true
			}
			if serr != nil {
				return moved, serr, clientSide, true
			}
			continue
		}
		if eof {
			break
		}
	}
	return moved, nil, false, true
}

// spliceRequest moves up to n bytes of a request body from the client to
// the endpoint connection bc through a pooled pipe, with raw splice calls
// as spliceResponse does the other way. The wait for the client is under
// its read deadline; the wait for the endpoint to take more is in
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
	if cc.raw == nil || x.epRaw == nil || bc != x.epConn {
		return 0, nil, false, false
	}
	p := splice.Get()
	if p == nil {
		return 0, nil, false, false
	}
	defer splice.Put(p)
	cc.mayReadClient()
	cc.armRead(cc.srv.cfg.Load().IdleTimeout, true)
	var serr error // an error of a splice call, and whose

	// push: pipe → endpoint; false when it is full.
	push := func(fd uintptr) bool {
		for p.Data > 0 {
			m, e := splice.Move(p.R, int(fd), p.Data)
			switch e {
			case nil:
				p.Data -= m
				x.epOut += uint64(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				serr, clientSide = e, false
				return true
			}
		}
		return true
	}
	pushNow := func(fd uintptr) { push(fd) }
	// pull: client → pipe, and on; false to wait for the client. It runs
	// with the pipe empty, and returns once it holds what the endpoint
	// could not take.
	pull := func(fd uintptr) bool {
		for in < n && serr == nil {
			m, e := splice.Move(int(fd), p.W, int(min(int64(p.Size), n-in)))
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			case e != nil:
				serr, clientSide = e, true
				return true
			case m == 0:
				serr, clientSide = io.ErrUnexpectedEOF, true
				return true
			}
			p.Data += m
			in += int64(m)
			if err := x.epRaw.Control(pushNow); err != nil {
				serr, clientSide = err, false
			}
			if p.Data > 0 {
				return true // the endpoint is full: wait for it
			}
		}
		return true
	}
	// Once the endpoint is full, after it took all it was given, its
	// slice starts afresh: a stall is then told after one slice rather
	// than two (bodyStalled).
	armed := false
	for {
		if serr != nil {
			return in, serr, clientSide, true
		}
		if p.Data > 0 {
			if !armed {
				now := time.Now()
				x.hard = now.Add(cc.srv.cfg.Load().ResponseTimeout)
				cc.armEndpoint(bc, now)
				x.stallAt, x.stallOut = now, x.epOut
				armed = true
			}
			err := x.epRaw.Write(push)
			if err == nil {
				continue
			}
			if !isTimeout(err) {
				return in, err, false, true
			}
			if e := cc.bodyStalled(bc); e != nil {
				return in, stalledError{e}, false, true
			}
			continue
		}
		if in == n {
			return in, nil, false, true
		}
		if err := cc.raw.Read(pull); err != nil {
			return in, err, true, true
		}
		armed = false
	}
}
