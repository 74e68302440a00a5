//go:build !linux

package tcpproxy

import (
	"net"
	"time"
)

// idle would need the kernel's view of the sockets (TCP_INFO on Linux):
// elsewhere no session counts as idle, so a rebalance closes nothing.
func idle(client, backend *net.TCPConn, minIdle time.Duration) bool { return false }
