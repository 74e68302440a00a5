//go:build !linux

package tcpproxy

import (
	"net"
	"syscall"
	"time"
)

// idle would need the kernel's view of the sockets (TCP_INFO on Linux):
// elsewhere no session counts as idle, so a rebalance closes nothing.
func idle(client, backend *net.TCPConn, minIdle time.Duration) bool { return false }

// quietReader would need it too: no session is found quiet, and the idle
// timeout closes none.
type quietReader struct{}

func (q *quietReader) quietFor(client, backend syscall.RawConn) (time.Duration, bool) {
	return 0, false
}

// peerReset would need the kernel's view of the socket too: a reset is
// recorded as an I/O error.
func peerReset(rc syscall.RawConn) bool { return false }
