//go:build !linux

package httpproxy

import "net"

// spliceResponse splices with raw system calls on Linux only; elsewhere
// net's splice or a copy moves the body.
func (cc *clientConn) spliceResponse(net.Conn, int64) (int64, error, bool, bool) {
	return 0, nil, false, false
}

// spliceRequest: see spliceResponse; the caller copies.
func (cc *clientConn) spliceRequest(net.Conn, int64) (int64, error, bool, bool) {
	return 0, nil, false, false
}

// pipeRun holds a spliced body's state on Linux.
type pipeRun struct{}

// pipesShort is false: there are no pipes of the package's own to run short.
func pipesShort() bool { return false }

// splicePays is true: net's ReadFrom moves a large body as it can
// (splice.Mode has no effect off Linux).
func splicePays(*net.TCPConn) bool { return true }
