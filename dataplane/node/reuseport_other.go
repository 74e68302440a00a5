//go:build !linux

package node

import "syscall"

// reusePort leaves the socket as it is: SO_REUSEPORT's sharing of a port
// differs from one system to the next.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
