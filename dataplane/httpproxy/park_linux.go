package httpproxy

import (
	"container/heap"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker is the epoll set that parked connections wait in (see park.go),
// and the goroutine that wakes them. The epoll descriptor is itself
// waited on through the runtime's netpoller, so the goroutine sleeps
// like any other.
//
// The parked connections' deadlines are kept in a heap with one timer for
// the earliest, rather than a timer each: a timer is a few hundred bytes,
// as much as the rest of a parked connection's state.
type parker struct {
	once sync.Once
	epfd int
	err  error

	mu    sync.Mutex
	conns map[int32]*clientConn // by socket descriptor
	dls   deadlines             // the parked connections, earliest deadline first
	timer *time.Timer           // fires at dls[0].parkDl
}

var idlePark = parker{conns: make(map[int32]*clientConn)}

// errParkTaken: Drain or Close took the connection while it parked.
var errParkTaken = errors.New("httpproxy: parked connection taken")

// parkingWorks starts the parker the first time, and says whether it runs.
func parkingWorks() bool {
	idlePark.once.Do(idlePark.start)
	return idlePark.err == nil
}

func (p *parker) start() {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		p.err = err
		slog.Warn("httpproxy: no epoll set for idle connections; each keeps its goroutine", "err", err)
		return
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		p.err = err
		return
	}
	f := os.NewFile(uintptr(fd), "httpproxy-idle")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		p.err = err
		return
	}
	p.epfd = fd
	go p.run(f, raw)
}

// run wakes the connections whose sockets became readable, forever.
func (p *parker) run(f *os.File, raw syscall.RawConn) {
	// run never returns, so f is never closed here; the defer keeps f
	// reachable, or its cleanup would close the epoll set under the parker.
	defer f.Close()
	events := make([]syscall.EpollEvent, 256)
	for {
		n := 0
		err := raw.Read(func(fd uintptr) bool {
			// The set's readiness is edge-triggered for the netpoller:
			// returning false waits for a new edge, so an interrupted
			// call must be made again, not waited on.
			var err error
			for {
				if n, err = syscall.EpollWait(int(fd), events, 0); err != syscall.EINTR {
					break
				}
			}
			return n > 0
		})
		if err != nil {
			slog.Error("httpproxy: waiting on the idle connections' epoll set failed", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			cc := p.conns[ev.Fd]
			p.mu.Unlock()
			if cc != nil {
				cc.wake(uint32(ev.Pad))
			}
		}
	}
}

// add parks cc's socket as parking gen, with a timer that ends the
// connection at dl. It fails with errParkTaken when Drain or Close took cc
// meanwhile: the state is checked under p.mu, which remove takes too, so
// that a connection taken is never registered after it was cleaned up.
func (p *parker) add(cc *clientConn, gen uint32, dl time.Time, aged bool) error {
	st := parkedState(gen)
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc.state.Load() != st {
		return errParkTaken
	}
	// EPOLLONESHOT: one event, then the socket is quiet in this set until
	// parked again (EPOLL_CTL_MOD re-arms it).
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: cc.fd, Pad: int32(gen)}
	op := syscall.EPOLL_CTL_MOD
	if !cc.epolled {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := syscall.EpollCtl(p.epfd, op, int(cc.fd), &ev); err != nil {
		return err
	}
	cc.epolled = true
	cc.parkDl, cc.parkSt, cc.parkAged = dl, st, aged
	heap.Push(&p.dls, cc)
	if cc.parkIdx == 0 {
		p.armTimer()
	}
	p.conns[cc.fd] = cc
	return nil
}

// remove forgets a parked connection that was taken: it leaves the
// deadline heap, and a late event for its socket finds nothing. The socket
// stays in the epoll set, quiet (EPOLLONESHOT), until it is parked again or
// closed.
func (p *parker) remove(cc *clientConn) {
	p.mu.Lock()
	if cc.parkIdx >= 0 {
		heap.Remove(&p.dls, int(cc.parkIdx))
	}
	if p.conns[cc.fd] == cc {
		delete(p.conns, cc.fd)
	}
	p.mu.Unlock()
}

// armTimer sets the timer for the earliest deadline (p.mu held).
func (p *parker) armTimer() {
	d := time.Until(p.dls[0].parkDl)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
	} else {
		p.timer.Reset(d)
	}
}

// expire ends the parked connections whose deadline passed.
func (p *parker) expire() {
	type due struct {
		cc   *clientConn
		st   int32
		aged bool
	}
	var ended []due
	p.mu.Lock()
	now := time.Now()
	for len(p.dls) > 0 && !p.dls[0].parkDl.After(now) {
		cc := heap.Pop(&p.dls).(*clientConn)
		ended = append(ended, due{cc, cc.parkSt, cc.parkAged})
		if p.conns[cc.fd] == cc {
			delete(p.conns, cc.fd)
		}
	}
	if len(p.dls) > 0 {
		p.armTimer()
	}
	p.mu.Unlock()
	for _, d := range ended {
		d.cc.parkExpired(d.st, d.aged)
	}
}

// deadlines is a container/heap of parked connections by deadline.
type deadlines []*clientConn

func (h deadlines) Len() int           { return len(h) }
func (h deadlines) Less(i, j int) bool { return h[i].parkDl.Before(h[j].parkDl) }
func (h deadlines) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].parkIdx, h[j].parkIdx = int32(i), int32(j)
}
func (h *deadlines) Push(x any) {
	cc := x.(*clientConn)
	cc.parkIdx = int32(len(*h))
	*h = append(*h, cc)
}
func (h *deadlines) Pop() any {
	old := *h
	cc := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	cc.parkIdx = -1
	return cc
}

// parkedCount is how many connections are parked.
func parkedCount() int {
	idlePark.mu.Lock()
	defer idlePark.mu.Unlock()
	return len(idlePark.conns)
}
