//go:build !linux

package upstream

import "net"

// sendQueueEmpty cannot tell without Linux's SIOCOUTQ: the node runs on
// Linux, and this only keeps the package building elsewhere.
func sendQueueEmpty(*net.TCPConn) bool { return false }
