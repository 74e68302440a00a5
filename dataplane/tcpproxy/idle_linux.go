package tcpproxy

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockState is what the kernel says of one socket's traffic.
type sockState struct {
	// sinceRecv and sinceSent are the times since the socket last received
	// and last sent data (not bare ACKs), at the kernel's clock-tick
	// resolution (1-10ms).
	sinceRecv, sinceSent time.Duration
	// queued is true while a byte waits in either direction: received and
	// not yet read, written and not yet sent, or sent and not yet
	// acknowledged.
	queued bool
}

// readSock reads c's state with TCP_INFO and SIOCINQ. ok is false when it
// cannot (the socket is closed, or the kernel refuses).
func readSock(c *net.TCPConn) (st sockState, ok bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return st, false
	}
	var info unix.TCPInfo
	var inq int
	var serr error
	err = raw.Control(func(fd uintptr) {
		if _, serr = tcpInfo(fd, &info, uint32(unsafe.Sizeof(info))); serr != nil {
			return
		}
		inq, serr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	if err != nil || serr != nil {
		return st, false
	}
	st.sinceRecv = time.Duration(info.Last_data_recv) * time.Millisecond
	st.sinceSent = time.Duration(info.Last_data_sent) * time.Millisecond
	st.queued = inq > 0 || info.Unacked > 0 || info.Notsent_bytes > 0
	return st, true
}

// tcpInfo reads fd's TCP_INFO into the first size bytes of info, as a raw
// system call (it never blocks), and returns how many bytes the kernel
// filled: fewer than asked when its struct is shorter.
func tcpInfo(fd uintptr, info *unix.TCPInfo, size uint32) (uint32, error) {
	n := size
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(info)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return n, nil
}

// quietReader reads how long sockets carried no data, for the idle
// timeout's scans. A Server keeps one, used by one scan at a time, so that
// a scan allocates nothing per session.
type quietReader struct {
	fn    func(uintptr) // read, made once
	quiet time.Duration // what fn read: the shorter of the socket's two times
	ok    bool          // fn read them
}

// tcpInfoTimes is how much of struct tcp_info the reader asks for: up to
// the last of the times it needs, so the kernel copies no more.
const tcpInfoTimes = uint32(unsafe.Offsetof(unix.TCPInfo{}.Last_ack_recv))

// read is the step of a socket's RawConn.Control: the kernel's times of
// its last data received and sent (not bare ACKs or keep-alive probes),
// at its clock-tick resolution.
func (q *quietReader) read(fd uintptr) {
	var info unix.TCPInfo
	n, err := tcpInfo(fd, &info, tcpInfoTimes)
	q.ok = err == nil && n == tcpInfoTimes
	q.quiet = time.Duration(min(info.Last_data_recv, info.Last_data_sent)) * time.Millisecond
}

// quietFor is how long the session over the sockets of client and backend
// carried no data either way. ok is false when the kernel does not say (a
// socket closed).
func (q *quietReader) quietFor(client, backend syscall.RawConn) (d time.Duration, ok bool) {
	if q.fn == nil {
		q.fn = q.read
	}
	if client.Control(q.fn) != nil || !q.ok {
		return 0, false
	}
	c := q.quiet
	if backend.Control(q.fn) != nil || !q.ok {
		return 0, false
	}
	return min(c, q.quiet), true
}

// idle reports whether the session over client and backend is idle for at
// least minIdle, as CloseIdle defines it.
func idle(client, backend *net.TCPConn, minIdle time.Duration) bool {
	c, ok := readSock(client)
	if !ok {
		return false
	}
	b, ok := readSock(backend)
	if !ok {
		return false
	}
	return quiet(c, b, minIdle)
}

// quiet is idle's decision on the states of the client and backend
// sockets: neither carried data for minIdle, and nothing waits in a queue
// either way. Who spoke last is the session's own record (lastMoved): the
// kernel keeps its times in clock ticks (1-10ms), where a request and the
// answer before it, or a first request and the connect, compare equal.
func quiet(c, b sockState, minIdle time.Duration) bool {
	if c.queued || b.queued {
		return false
	}
	return min(c.sinceRecv, c.sinceSent, b.sinceRecv, b.sinceSent) >= minIdle
}

// peerReset reports whether the peer of rc's socket reset the connection:
// the kernel closed the socket (state CLOSE) while it is still open here.
// One raw TCP_INFO read of the state alone.
func peerReset(rc syscall.RawConn) bool {
	var info unix.TCPInfo
	closed := false
	rc.Control(func(fd uintptr) {
		n, err := tcpInfo(fd, &info, uint32(unsafe.Sizeof(info.State)))
		closed = err == nil && n > 0 && info.State == unix.BPF_TCP_CLOSE
	})
	return closed
}
