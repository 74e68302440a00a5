//go:build !linux

package httpproxy

// WatchClient watches nothing on this platform: gone is nil, and a
// request whose client closed waits on (see watch_linux.go).
func (r *Request) WatchClient() (gone <-chan struct{}, stop func()) {
	return nil, func() {}
}

// clientLeft sees nothing on this platform: a request whose client left
// waits on for its response (see watch_linux.go).
func (cc *clientConn) clientLeft(abortOnClose bool) bool { return false }
