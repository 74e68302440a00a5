//go:build !linux

package httpproxy

// WatchClient watches nothing on this platform: gone is nil, and a
// request whose client closed waits on (see watch_linux.go).
func (r *Request) WatchClient() (gone <-chan struct{}, stop func()) {
	return nil, func() {}
}
