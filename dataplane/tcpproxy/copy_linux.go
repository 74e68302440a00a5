//go:build linux

package tcpproxy

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/internal/splice"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
)

// How a half moves bytes on Linux.
//
// Small exchanges (requests, answers, heartbeats) go through a pooled
// buffer: one recv(2) and one send(2) each, which is what splice(2) would
// cost too (socket to pipe, pipe to socket) without the pipe. A read that
// did not fill the buffer emptied the socket, so the half waits for the
// next bytes without the read that would only say EAGAIN, as HAProxy does.
// What such a read cannot tell is a FIN (or an error) queued behind the
// bytes, whose wake-up came with theirs: the Go poller would not wake the
// half for it again. The poller's epoll set tells it instead (see watch in
// park_linux.go): a parked half's socket, armed again, reports a FIN
// queued at once, and a socket whose half runs on its own goroutine stays
// armed for the FIN alone, which the poller then tells the half. A half
// the set does not watch (one ending, or where there is no set) reads with
// recvmsg(2) and TCP_INQ, the bytes still queued after the read, which
// counts a FIN as a byte. The buffer is taken when bytes are there to read
// and given back as soon as they went on: a half that waits holds none.
//
// A burst larger than the buffer (a read that leaves at least a buffer's
// worth queued) switches the half to splice(2) through a pooled pipe, where
// the bytes never enter user space, if splicing pays (splice.Pays: by
// default, for bytes from a peer on another host); it goes back to the
// buffer when a burst ends small, and gives the pipe back when it parks.
// Other bursts are copied through the buffer. Once a read has filled the
// buffer, each read of a copied burst takes as many whole segments of dst
// as fit (tcpseg): over loopback a 64 KiB send is a full segment and a
// short one, which under BBR cost the node twice the CPU per MiB. A
// spliced burst takes what the pipe holds at a time, but one buffer's
// worth of whole segments where dst paces its sends (tcpseg.Paced: BBR):
// a splice of up to 1 MiB went out as a burst that BBR spaced out by
// timers, at about a fifth more CPU per MiB.
//
// The system calls are raw: on non-blocking sockets they never block, and
// the runtime's bookkeeping for a call that might (entering and leaving a
// system call, which wakes the sysmon thread and lets it hand the P to
// another thread while a loopback send runs the receiver's stack) costs
// more than the call itself on a busy single-P node.
//
// A half starts parked (park_linux.go): the poller serves its bytes while
// they come in small exchanges now and then. One that keeps the poller
// busy gets a goroutine of its own, which waits for bytes in the Go poller
// and moves them without the re-arming a parked half costs; it parks again
// once its read deadline finds it idle.

// parkAfter is how long a half on its own goroutine first waits for bytes
// before it parks again (Server.parkAfter, which tests change).
const parkAfter = 20 * time.Millisecond

// maxPatience bounds how long a half that has been busy waits before it
// parks: its wait doubles from parkAfter each time the deadline finds it
// busy, so a busy half is not woken every parkAfter to look.
const maxPatience = 2 * time.Second

// busyAfter is how many times in a row a parked half is woken within
// parkAfter of parking before it gets a goroutine.
const busyAfter = 3

// onFullRead, if set, is told the size of each read that filled its room,
// and whether it was spliced: tests see by it what the reads of a burst
// took.
var onFullRead atomic.Pointer[func(n int, spliced bool)]

// spliceAt is the burst that switches a half to splice: what a read left
// queued behind the buffer it filled.
const spliceAt = copyBufSize

// halfState is what a half keeps between its runs on Linux.
type halfState struct {
	// patience is how long the half waits on its goroutine before it
	// parks, from parkAfter up to maxPatience.
	patience time.Duration
	pipe     *splice.Pipe // while the half splices
	// parkID is the half's key in the poller while parked, 0 otherwise;
	// guarded by parking.mu.
	parkID   uint64
	parkedAt time.Duration // when it last parked, on monotonic
	// watchID is the half's key in the poller while it runs on its
	// goroutine with src armed in the set for a FIN (watch), 0
	// otherwise; guarded by parking.mu, and set or cleared only before
	// the half runs or by whoever runs it.
	watchID uint64
	// fin: the set saw src's FIN, a hang-up or an error while the half
	// was watched; the half reads on until it meets it, never waiting.
	fin atomic.Bool
	// inSet: src is in the poller's epoll set (parked, watched, or
	// disarmed since its wake-up); set by park and watch, cleared by
	// leave, under parking.mu or by whoever runs the half.
	inSet bool
	// mss is dst's maximum segment size, which sizes the reads of a
	// burst, copied or spliced (tcpseg.Fit): asked again after each
	// read that filled its room, since it grows with the peer's window
	// early in a connection; small exchanges never ask. 0: not asked.
	mss   uint16
	moved uint32 // reads that brought bytes: a deadline that finds it changed finds the half busy
	quick uint8  // wake-ups in a row that came soon after parking
	// inq: src reports TCP_INQ, asked for by the half's first read that
	// the poller's set does not watch (inqAsked); most halves never do.
	inq, inqAsked bool
	// splices: a burst from src is spliced (splice.Pays); otherwise it
	// is copied through the buffer as small exchanges are.
	splices bool
	// paced: dst paces what it sends (tcpseg.Paced), so a splice takes
	// whole segments, not the pipe; asked with mss, after a copied read,
	// by a half that may splice.
	paced bool
}

// monotonic is the time since the process started, from the monotonic
// clock: what parkedAt holds, in 8 bytes rather than a time.Time's 24.
func monotonic() time.Duration { return time.Since(epoch) }

var epoch = time.Now()

// init prepares a half before its first run.
func (h *half) init() {
	h.patience = h.s.srv.parkAfter
	if h.tlsSrc() {
		return
	}
	h.splices = splice.Pays(h.src())
}

// begin starts a new session's half: parked, but for one that reads TLS,
// which needs a goroutine, and for when halves cannot park.
func (h *half) begin() {
	if !h.tlsSrc() {
		switch err := park(h); err {
		case nil:
			return
		case errNoPark:
		default:
			h.end(err)
			return
		}
	}
	go h.run()
}

// release gives back what the half holds between bursts.
func (h *half) release() {
	if h.pipe != nil {
		splice.Put(h.pipe)
		h.pipe = nil
	}
}

// run moves the half's bytes on the calling goroutine until src's EOF, an
// error, or the half parks.
func (h *half) run() { h.runWith(nil) }

// runWith is run taking over c, the state a poller's serve left (bytes to
// send, an EOF), if not nil.
func (h *half) runWith(c *copier) {
	defer h.recoverPanic()
	err := h.copy(c)
	if err == errParked {
		return
	}
	h.end(err)
}

// copy moves bytes from src to dst until src's EOF (nil), an error, or
// the half parks (errParked); c, if not nil, holds what to do first.
func (h *half) copy(c *copier) error {
	if h.tlsSrc() {
		// Reading TLS records needs the connection's own buffer; such a
		// half keeps its goroutine.
		return h.pump(h.dst(), h.s.backend)
	}
	if c == nil {
		c = newCopier(h)
	}
	seen := h.moved
	h.src().SetReadDeadline(time.Now().Add(h.patience))
	for {
		// What the last read left, or what serve handed over.
		switch {
		case c.err != nil:
			return c.err
		case c.pending != nil: // dst was full: wait until it takes the rest
			if err := c.flush(); err != nil {
				return err
			}
			continue
		case h.pipe != nil && h.pipe.Data > 0:
			if err := h.dstRC().Write(c.sendWaitFn); err != nil {
				return err
			}
			continue
		case c.eof:
			return nil
		}
		err := h.srcRC().Read(c.readFn)
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if h.fin.Load() { // the poller's poke: src's FIN is queued
			h.src().SetReadDeadline(time.Now().Add(h.patience))
			continue
		}
		if h.moved != seen { // busy since the deadline was set
			seen = h.moved
			h.patience = min(2*h.patience, maxPatience)
			h.src().SetReadDeadline(time.Now().Add(h.patience))
			continue
		}
		h.patience = h.s.srv.parkAfter
		switch err := park(h); err {
		case nil:
			return errParked
		case errNoPark:
			h.src().SetReadDeadline(time.Time{})
		default:
			return err
		}
	}
}

// copier moves a half's bytes: its steps are handed to the sockets'
// RawConns, and what a step leaves (bytes dst did not take yet, an EOF,
// an error) is for the caller to deal with.
type copier struct {
	h                  *half
	readFn, sendWaitFn func(uintptr) bool
	sendFn             func(uintptr)
	// inline: the poller runs the steps for a parked half; a read never
	// leaves more for a second one, and never starts splicing.
	inline bool

	buf     *copyBuf // holds pending
	pending []byte   // read from src, not yet sent
	full    bool     // pending filled the read: dst's MSS is asked before it goes
	burst   int      // bytes read since the half last waited
	eof     bool
	err     error
}

func newCopier(h *half) *copier {
	c := &copier{h: h}
	c.readFn, c.sendFn, c.sendWaitFn = c.read, c.send, c.sendWait
	return c
}

// handOver returns a copier for h's goroutine with what c left, and
// resets c.
func (c *copier) handOver() *copier {
	n := newCopier(c.h)
	n.buf, n.pending, n.full, n.eof, n.err = c.buf, c.pending, c.full, c.eof, c.err
	c.buf, c.pending, c.full, c.burst, c.eof, c.err = nil, nil, false, 0, false, nil
	return n
}

// read is the step of src's RawConn: it moves bytes until src has no more
// (false: wait for some) or the caller must act (true): EOF, an error,
// bytes dst cannot take right now, or, inline, more to read.
func (c *copier) read(fd uintptr) bool {
	h := c.h
	for {
		if h.pipe != nil {
			room := h.pipe.Size
			if h.paced {
				room = tcpseg.Fit(min(copyBufSize, room), int(h.mss))
			}
			n, err := splice.Move(int(fd), h.pipe.W, room)
			switch {
			case err == unix.EAGAIN:
				if c.burst < spliceAt { // the bulk is over
					h.release()
				}
				c.burst = 0
				return false
			case err != nil:
				c.err = err
				return true
			case n == 0:
				c.eof = true
				return true
			}
			h.moved++
			c.burst += n
			h.pipe.Data = n
			c.fullRead(n == room, n, true)
			if err := h.dstRC().Control(c.sendFn); err != nil {
				c.err = err
			}
			if c.err != nil || h.pipe.Data > 0 {
				return true
			}
			continue
		}
		buf := getCopyBuf()
		p := buf[:tcpseg.Fit(len(buf), int(h.mss))]
		n, more, err := c.recv(int(fd), p)
		switch {
		case err == unix.EAGAIN:
			putCopyBuf(buf)
			c.burst = 0
			return false
		case err != nil:
			putCopyBuf(buf)
			c.err = err
			return true
		case n == 0:
			putCopyBuf(buf)
			c.eof = true
			return true
		}
		h.moved++
		c.burst += n
		c.buf, c.pending = buf, buf[:n]
		c.fullRead(n == len(p), n, false)
		if h.tlsDst() { // encrypting needs the TLS connection's Write
			return true
		}
		if !c.inline && more == 0 && c.burst == n {
			// A message that came alone goes out after the reads of its
			// round. Waiting here, not after returning, saves the read
			// that would find src empty.
			pace.Batch()
		}
		if err := h.dstRC().Control(c.sendFn); err != nil {
			c.err = err
		}
		if c.err != nil || c.pending != nil {
			return true
		}
		switch {
		case more == 0: // read it all, and no FIN: wait for more
			c.burst = 0
			return false
		case c.inline:
			return true
		case h.splices && (more >= spliceAt || more < 0 && n == len(p)):
			h.pipe = splice.Get() // nil (no pipe to be had) keeps the buffer
		}
	}
}

// fullRead notes a read of n bytes, spliced or copied, which filled its
// room if full: the send of its bytes asks dst's segment size again.
func (c *copier) fullRead(full bool, n int, spliced bool) {
	if c.full = full; full {
		if f := onFullRead.Load(); f != nil {
			(*f)(n, spliced)
		}
	}
}

// send is the step of dst's RawConn.Control: it sends what it can of the
// pending bytes (or of the pipe) without waiting. It gives the buffer back
// once all went.
func (c *copier) send(fd uintptr) {
	h := c.h
	if c.full {
		// A burst, whose next read takes whole segments of dst.
		c.full = false
		h.mss = tcpseg.MSS(int(fd))
		if h.splices && h.pipe == nil {
			// A half takes a pipe only after a copied read that filled
			// its room: it knows then how to size its splices.
			h.paced = tcpseg.Paced(int(fd))
		}
	}
	if p := h.pipe; p != nil && p.Data > 0 {
		for p.Data > 0 {
			n, err := splice.Move(p.R, int(fd), p.Data)
			if err == unix.EAGAIN {
				return
			}
			if err != nil {
				c.err = err
				return
			}
			p.Data -= n
			h.sent(int64(n))
		}
		return
	}
	for len(c.pending) > 0 {
		n, err := sendRaw(int(fd), c.pending)
		if err == unix.EAGAIN {
			return
		}
		if err != nil {
			c.err = err
			return
		}
		c.pending = c.pending[n:]
		h.sent(int64(n))
	}
	putCopyBuf(c.buf)
	c.buf, c.pending = nil, nil
}

// sendWait is the step of dst's RawConn.Write: send until nothing is
// pending (true) or dst is full (false: wait until it has room).
func (c *copier) sendWait(fd uintptr) bool {
	c.send(fd)
	return c.err != nil || c.pending == nil && (c.h.pipe == nil || c.h.pipe.Data == 0)
}

// flush sends the pending bytes, waiting for dst as long as it takes.
func (c *copier) flush() error {
	h := c.h
	if h.tlsDst() {
		n, err := h.s.backend.Write(c.pending)
		h.sent(int64(n))
		c.drop()
		return err
	}
	if err := h.dstRC().Write(c.sendWaitFn); err != nil {
		c.drop()
		return err
	}
	return nil
}

// drop gives back the buffer of bytes that will not be sent.
func (c *copier) drop() {
	if c.buf != nil {
		putCopyBuf(c.buf)
	}
	c.buf, c.pending = nil, nil
}

// recv reads src's socket fd into p. more is what is still queued after
// the read: 0 when none is, -1 when some may be. A short read emptied the
// socket but for a FIN or an error queued behind its bytes, which the
// poller's set reports: for a parked half when park arms the socket again,
// for a watched one by its fin. Any other half asks TCP_INQ.
func (c *copier) recv(fd int, p []byte) (n, more int, err error) {
	h := c.h
	if !c.inline && h.watchID == 0 {
		if !h.inqAsked {
			// Once per half, and only here: a setsockopt per socket
			// of every session cost more than these rare reads save.
			h.inqAsked = true
			h.inq = unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_INQ, 1) == nil
		}
		return recvInq(fd, p, h.inq)
	}
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, -1, e
	}
	n, more = int(r), -1
	if n < len(p) && !h.fin.Load() {
		more = 0
	}
	return n, more, nil
}

// recvInq reads fd into p. more is what TCP_INQ says is still queued
// after the read (a FIN counts as 1), or -1 when inq is false (the socket
// does not report it) or the kernel said nothing.
func recvInq(fd int, p []byte, inq bool) (n, more int, err error) {
	if !inq {
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != 0 {
			return 0, -1, e
		}
		return int(r), -1, nil
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	var oob [3]uint64 // a cmsghdr and its int, aligned
	msg := unix.Msghdr{Iov: &iov, Control: (*byte)(unsafe.Pointer(&oob[0]))}
	msg.SetIovlen(1)
	msg.SetControllen(int(unsafe.Sizeof(oob)))
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, -1, e
	}
	more = -1
	if int(msg.Controllen) >= unix.CmsgLen(4) { // uint32 on 32-bit platforms
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level == unix.SOL_TCP && h.Type == unix.TCP_CM_INQ {
			more = int(*(*int32)(unsafe.Add(unsafe.Pointer(&oob[0]), unix.CmsgLen(0))))
		}
	}
	return int(r), more, nil
}

// sendRaw writes p to the socket fd; MSG_NOSIGNAL: a peer that went away
// is an EPIPE, not a signal.
func sendRaw(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
