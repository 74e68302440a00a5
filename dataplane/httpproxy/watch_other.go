//go:build !linux

package httpproxy

import "net"

// WatchClient watches nothing on this platform: gone is nil, and a
// request whose client closed waits on (see watch_linux.go).
func (r *Request) WatchClient() (gone <-chan struct{}, stop func()) {
	return nil, func() {}
}

// clientLeft sees nothing on this platform: a request whose client left
// waits on for its response (see watch_linux.go).
func (cc *clientConn) clientLeft(abortOnClose bool) bool { return false }

// watchAnswer watches nothing on this platform: an endpoint's early answer
// to a slow upload waits for the rest of the body (see watch_linux.go).
func (cc *clientConn) watchAnswer(net.Conn, int) {}
