//go:build linux

package tcpproxy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Parking: a half without a goroutine. A session's halves start parked,
// and a half on its own goroutine that found nothing to read for its
// patience parks again. The half's source socket goes into one epoll set
// shared by every session of the process (beside the Go runtime's own: a
// socket may be in both), armed once (EPOLLONESHOT) for readable, peer
// closed, hang-up or error; one goroutine waits on that set through the Go
// poller (an epoll fd is itself pollable). When a parked half's socket
// wakes, that goroutine serves it inline: it reads what came, sends it on
// without waiting, and parks the half again; only what needs waiting (a
// destination that is full, more bytes than one read, TLS) or a half that
// keeps waking soon after parking gets a goroutine. A parked session, both
// halves parked, costs its sockets and a few hundred bytes of state: no
// goroutine stack, buffer or pipe.
//
// A half that goes to its own goroutine stays in the set, armed for its
// FIN, a hang-up or an error alone, edge-triggered (watch): its bytes wake
// it through the Go poller, and a read that did not fill its buffer is
// taken to have emptied the socket (copy_linux.go). The one thing the Go
// poller can miss is a FIN queued behind the last bytes, whose wake-up
// came with theirs; the set sees it, and the poller pokes the half (its
// fin, and a read deadline in the past) to read on.
//
// Closing a socket removes it from an epoll set without an event, so a
// socket closed under a parked half must be noticed otherwise. Where this
// package closes sockets (session.abort: a failing half, CloseIdle,
// MarkClosing) it wakes the parked halves itself. Others close them too:
// the endpoint (drain, shutdown-sessions, on_down) and the listener (its
// connection set). For those the poller sweeps the parked halves every
// sweepEvery while there are any, asking the runtime whether each one's
// two sockets are still open (no system call), and ends the sessions that
// lost one. Their sockets are closed at once all the same: the sweep only
// bounds how soon the other socket follows and the record is made.

// errParked is what a half's copy returns when the half parked: its
// goroutine must let it go. errNoPark is what park returns where halves
// cannot park.
var (
	errParked = errors.New("tcpproxy: half parked")
	errNoPark = errors.New("tcpproxy: halves cannot park here")
)

// sweepEvery is how often the poller looks for parked halves whose sockets
// were closed by someone else. It is a variable, read and set under
// parking.mu, so that a test can put the sweep out of the way: what must
// end a parked session at once is then not helped by a sweep that happens
// to come along.
var sweepEvery = 250 * time.Millisecond

// parking is the process's poller, started by the first half that parks.
var parking poller

type poller struct {
	once sync.Once
	epfd int

	// c runs the steps of the halves the poller's goroutine serves, and
	// serveFn is its read for their src's RawConn.Control.
	c       *copier
	serveFn func(uintptr)
	wait    bool // the last serveFn read everything there was
	// leaveFn takes a socket out of the set, for leave.
	leaveFn func(uintptr)

	mu       sync.Mutex
	err      error            // why there is no epoll set: halves do not park
	parked   map[uint64]*half // by parkID
	watched  map[uint64]*half // by watchID
	last     uint64           // the last parkID or watchID handed out
	sweeping *time.Timer      // running while parked is not empty
	// sweepArmed: sweeping is armed, or its sweep is running.
	sweepArmed bool
	// park's step for src's RawConn.Control: ctlFn arms ev for the
	// socket with ctlOp (re-arm, or add it to the set when it is not in)
	// and leaves the outcome in ctlErr. Kept here, under mu (park holds
	// it across Control), so that parking allocates nothing.
	ev     unix.EpollEvent
	ctlOp  int
	ctlErr error
	ctlFn  func(uintptr)
}

// park puts h, whose src has been idle, to sleep until src wakes it or the
// session is closed. nil: h is parked and belongs to the poller now; the
// caller must return without touching it. errNoPark: there is no epoll
// set, the half waits on its goroutine. Otherwise src is closed.
func park(h *half) error {
	p := &parking
	p.once.Do(p.start)
	h.release()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Armed again, the socket reports at once what is queued, a FIN too;
	// left on its goroutine without a set, the half asks TCP_INQ. Its
	// watch is of no more use either way.
	if h.watchID != 0 {
		delete(p.watched, h.watchID)
		h.watchID = 0
	}
	h.fin.Store(false)
	if p.err != nil {
		return errNoPark
	}
	// abort sets aborted before it closes the sockets and unparks: a half
	// parking after that must not, its src may be closed by now, without
	// an event.
	if h.s.aborted.Load() {
		return net.ErrClosed
	}
	id, err := p.arm(h, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT)
	if err != nil {
		return err
	}
	h.parkID = id
	h.parkedAt = monotonic()
	p.parked[id] = h
	if !p.sweepArmed {
		p.sweepArmed = true
		p.sweeping.Reset(sweepEvery)
	}
	return nil
}

// arm (re-)arms h's src in the set for events, under p.mu, and returns
// the key its events will carry.
func (p *poller) arm(h *half, events uint32) (uint64, error) {
	id := p.last + 1
	p.ev = unix.EpollEvent{Events: events, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	p.ctlOp = unix.EPOLL_CTL_MOD
	if !h.inSet {
		p.ctlOp = unix.EPOLL_CTL_ADD
	}
	if err := h.srcRC().Control(p.ctlFn); err != nil {
		return 0, err
	}
	if p.ctlErr != nil {
		err := os.NewSyscallError("epoll_ctl", p.ctlErr)
		p.ctlErr = nil
		return 0, err
	}
	h.inSet = true
	p.last = id
	return id, nil
}

// unpark takes h from the poller if it is parked; then the caller must run
// it (go h.run()).
func unpark(h *half) bool {
	p := &parking
	p.mu.Lock()
	defer p.mu.Unlock()
	if h.parkID == 0 {
		return false
	}
	delete(p.parked, h.parkID)
	h.parkID = 0
	return true
}

func (p *poller) start() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		p.err = os.NewSyscallError("epoll_create1", err)
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		p.err = os.NewSyscallError("fcntl", err)
		return
	}
	// A non-blocking fd goes into the Go poller, so the waiting
	// goroutine holds no thread. Clearing the deadline checks that it
	// went in: a file the Go poller did not take refuses deadlines
	// (os.ErrNoDeadline).
	f := os.NewFile(uintptr(fd), "tcpproxy-park")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		p.err = err
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		p.err = err
		return
	}
	p.epfd = fd
	p.parked = make(map[uint64]*half)
	p.watched = make(map[uint64]*half)
	p.sweeping = time.AfterFunc(time.Hour, p.sweep)
	p.sweeping.Stop()
	p.c = newCopier(nil)
	p.c.inline = true
	p.serveFn = func(fd uintptr) { p.wait = !p.c.read(fd) }
	p.ctlFn = func(fd uintptr) {
		// A socket stays in the set while it is open, disarmed after
		// its event (or until leave): re-arm it, or add it. The half
		// knows which (inSet); the other is tried when it is wrong.
		switch p.ctlErr = epollCtl(p.epfd, p.ctlOp, fd, &p.ev); {
		case p.ctlErr == unix.ENOENT && p.ctlOp == unix.EPOLL_CTL_MOD:
			p.ctlErr = epollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &p.ev)
		case p.ctlErr == unix.EEXIST && p.ctlOp == unix.EPOLL_CTL_ADD:
			p.ctlErr = epollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &p.ev)
		}
	}
	p.leaveFn = func(fd uintptr) { epollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil) }
	go p.run(f, rc)
}

// run waits for the parked sockets and wakes their halves.
func (p *poller) run(f *os.File, rc syscall.RawConn) {
	defer f.Close()
	events := make([]unix.EpollEvent, 128)
	var n int
	wait := func(uintptr) bool {
		var err error
		for {
			n, err = unix.EpollWait(p.epfd, events, 0)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			n = 0
		}
		return n > 0
	}
	for {
		if err := rc.Read(wait); err != nil {
			// Nothing closes the set; if the runtime fails it, halves
			// still parked would never wake, so they are ended.
			slog.Default().Error("tcpproxy: the poller of parked sessions failed; closing them", "err", err)
			p.mu.Lock()
			p.err = err
			var all []*half
			for _, h := range p.parked {
				all = append(all, h)
			}
			p.mu.Unlock()
			for _, h := range all {
				h.s.abort()
			}
			return
		}
		for _, ev := range events[:n] {
			p.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// wake serves the half parked as id, unless someone else took it first,
// or pokes the half watched as id.
func (p *poller) wake(id uint64) {
	p.mu.Lock()
	h := p.parked[id]
	if h != nil {
		delete(p.parked, id)
		h.parkID = 0
	} else if w := p.watched[id]; w != nil {
		// Under mu, so that the half cannot park meanwhile: a poke
		// that comes too late is forgotten, as park clears fin and
		// the half's next run sets a deadline of its own.
		w.fin.Store(true)
		w.src().SetReadDeadline(aLongTimeAgo)
	}
	p.mu.Unlock()
	if h != nil {
		p.serve(h)
	}
}

// aLongTimeAgo is a read deadline that has passed: it wakes a read.
var aLongTimeAgo = time.Unix(1, 0)

// serve moves what woke the parked half h, on the poller's goroutine, and
// parks it again; what needs waiting it hands to a goroutine of the half.
func (p *poller) serve(h *half) {
	defer func() {
		if r := recover(); r != nil {
			p.c.buf, p.c.pending = nil, nil
			h.panicked(r)
		}
	}()
	if monotonic()-h.parkedAt < h.s.srv.parkAfter {
		h.quick++
	} else {
		h.quick = 0
	}
	c := p.c
	c.h, c.burst, c.eof, c.err = h, 0, false, nil
	p.wait = false
	if err := h.srcRC().Control(p.serveFn); err != nil {
		c.err = err // src closed under the parked half
	}
	switch {
	case c.eof && c.pending == nil && !h.tlsDst():
		h.end(nil)
	case c.err != nil || c.eof || c.pending != nil && h.tlsDst():
		go h.runWith(c.handOver()) // it ends, or TLS encrypts what came
	case c.pending != nil || !p.wait: // dst full, or more to read: a burst
		p.watch(h)
		go h.runWith(c.handOver())
	case h.quick >= busyAfter: // busy: a goroutine serves it cheaper
		h.quick = 0
		p.watch(h)
		go h.run()
	default:
		if err := park(h); err != nil {
			go h.run() // closed meanwhile: the half meets it there
		}
	}
}

// watch arms h's src in the set for its FIN, a hang-up or an error alone,
// edge-triggered, for a half that goes to its own goroutine for a while;
// its bytes do not wake the set. Where that fails, the socket leaves the
// set and the half asks TCP_INQ.
func (p *poller) watch(h *half) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, err := p.arm(h, unix.EPOLLRDHUP|unix.EPOLLET)
	if err != nil {
		p.leave(h)
		return
	}
	h.watchID = id
	p.watched[id] = h
}

// unwatch takes h's src out of the set, for a watched half that ends: the
// set has nothing more to tell it, and would still be woken as its
// session closes.
func (h *half) unwatch() {
	if h.watchID == 0 {
		return
	}
	p := &parking
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watched, h.watchID)
	h.watchID = 0
	p.leave(h)
}

// leave takes h's src out of the epoll set.
func (p *poller) leave(h *half) {
	h.srcRC().Control(p.leaveFn)
	h.inSet = false
}

// epollCtl is epoll_ctl(2) as a raw system call: it never blocks, and the
// runtime's bookkeeping for one that might costs more (see copy_linux.go).
func epollCtl(epfd, op int, fd uintptr, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), fd, uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// sweep ends the sessions of parked halves whose sockets someone closed.
func (p *poller) sweep() {
	var lost []*half
	p.mu.Lock()
	for id, h := range p.parked {
		if !socketOpen(h.s.clientRC) || !socketOpen(h.s.rawRC) {
			delete(p.parked, id)
			h.parkID = 0
			lost = append(lost, h)
		}
	}
	if len(p.parked) > 0 {
		p.sweeping.Reset(sweepEvery)
	} else {
		p.sweepArmed = false
	}
	p.mu.Unlock()
	for _, h := range lost {
		h.s.abort()
		go h.run()
	}
}

// socketOpen reports whether the socket of rc is still open. It asks the
// runtime, which refuses a closed socket before any system call.
func socketOpen(rc syscall.RawConn) bool {
	return rc.Control(func(uintptr) {}) == nil
}
